"""Topic names compare by slug: ``Ukraine-Krieg``, ``ukraine krieg`` and ``ukraine-krieg`` are one."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from slugify import slugify

# German readers expect "Übersee" -> "uebersee", not "ubersee".
_REPLACEMENTS = [["Ä", "Ae"], ["Ö", "Oe"], ["Ü", "Ue"], ["ä", "ae"], ["ö", "oe"], ["ü", "ue"]]


@lru_cache(maxsize=65536)
def slug(name: str) -> str:
    """A URL-safe, lowercase ASCII slug; never empty, so every topic can have a feed URL.

    Names with nothing transliterable (emoji, symbols) get a short stable hash instead.
    """
    result = slugify(name, replacements=_REPLACEMENTS, max_length=80, word_boundary=True)
    if not result:
        digest = hashlib.sha256(name.strip().casefold().encode("utf-8")).hexdigest()[:10]
        result = f"topic-{digest}"
    return result
