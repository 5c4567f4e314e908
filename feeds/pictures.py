"""Pictures beside the articles: which file a reference names, and what a file's first bytes are.

A newsroom keeps its pictures next to the articles that show them (``sport/images/lauf.jpg``
beside ``sport/2025-03-23-stadtlauf.md``) and refers to them as the article's folder sees them:
``image: images/lauf.jpg``, ``![Karte](images/karte.png)``, ``<img src="images/karte.png">``.
Such a file is served at ``/media/<its path under the articles folder>`` (:data:`feeds.links.MEDIA`):
``/articles/`` already holds article pages, whose ids may be any path.

A reference is a URL path: percent-decoded once (``%2e%2e`` is ``..``), resolved against the
article's folder (or, starting with ``/``, against the articles folder itself), and refused when
it would leave the folder or names what is never served (hidden names, other types). The suffix
says a file may be a picture; its first bytes must say so too, and they decide the media type: a
file named ``x.png`` that holds HTML is never served as anything. Everything here is pure;
:mod:`feeds.sources` looks at the files and :mod:`feeds.assets` serves them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from .config import SiteConfig
from .links import MEDIA, id_path

TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
}
NAMES = "PNG, JPEG, GIF, WebP or AVIF"
MAX_BYTES = 10 * 1024 * 1024  # a newsroom's photo, not a print original
SNIFF_BYTES = 32  # enough for every signature below
MAX_PICTURES = 64  # pictures of one article looked at and reported: a body naming thousands costs no more
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Body references, as an author writes them: Markdown images and HTML <img> tags. Only for
# reporting (feeds check); what the page shows is decided on the sanitized HTML (markup.py).
_BODY = re.compile(
    r"!\[[^\]\n]*\]\(\s*<?(?P<md>[^\s)>]+)"
    r"|<img\b[^>]*?\bsrc\s*=\s*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<bare>[^\s>]+))",
    re.IGNORECASE,
)


_MARKS = ("![", "<img", "<IMG", "<Img")  # body_references looks for the first, then "<", then the others
BYTE_MARKS = tuple(mark.encode() for mark in _MARKS)


def sniff(head: bytes) -> str | None:
    """The media type a file's first bytes announce, or None if they are no picture we serve."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "image/avif"
    return None


@dataclass(frozen=True, slots=True)
class Picture:
    """What a look at one picture file found: its size and type, or why it is not shown."""

    size: int = 0
    media_type: str = ""
    refusal: str | None = None  # "no such file", "a named pipe, not a regular file", ...


@dataclass(frozen=True, slots=True)
class Local:
    """A reference that names a file under the articles folder (``rel``), or why it cannot."""

    rel: str = ""
    refusal: str | None = None


def is_url(reference: str) -> bool:
    """An absolute URL (any scheme) or a network-path reference: not a file beside the article."""
    text = reference.strip()
    return text.startswith("//") or _SCHEME.match(text) is not None


def resolve(article: str, reference: str) -> Local:
    """The file ``reference`` names, seen from the article at ``article`` (its path under the
    articles folder). Purely lexical: symlinks are the business of whoever opens the file."""
    path = unquote(reference.strip().split("#", 1)[0].split("?", 1)[0])
    if not path or "\\" in path or "\x00" in path:
        return Local(refusal="not a path to a picture")
    base = "" if path.startswith("/") else posixpath.dirname(article)
    parts: list[str] = []
    for segment in f"{base}/{path}".split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                return Local(refusal="leads out of the articles folder; never served")
            parts.pop()
            continue
        parts.append(segment)
    if not parts:
        return Local(refusal="not a path to a picture")
    if any(part.startswith((".", "_")) for part in parts):
        return Local(refusal="names a hidden file or folder ('.' or '_'), which is never served")
    if posixpath.splitext(parts[-1])[1].lower() not in TYPES:
        return Local(refusal=f"is not a picture file ({', '.join(TYPES)})")
    return Local("/".join(parts))


def media_url(site: SiteConfig, rel: str) -> str:
    """Where the picture at ``rel`` under the articles folder is served (absolute)."""
    return MEDIA.url(site, rel=id_path(rel))


def body_references(body: str) -> Iterator[tuple[str, int]]:
    """(reference, offset in ``body``) of every local picture a Markdown or HTML body shows.

    Most bodies show none: substring tests (a microsecond) rule them out before the search (tens
    of microseconds an article, on every read). A tag spelt ``<iMg`` is not reported, but its
    picture is still resolved when the body is rendered.
    """
    if "![" not in body and ("<" not in body or not any(mark in body for mark in _MARKS[1:])):
        return
    for found in _BODY.finditer(body):
        name = next(g for g in ("md", "dq", "sq", "bare") if found.group(g) is not None)
        reference = found.group(name)
        if reference.strip() and not is_url(reference):
            yield reference, found.start(name)


def described(rel: str, picture: Picture | None) -> str | None:
    """Why the picture at ``rel`` is not shown, for a problem report; None when it is fine."""
    if picture is None:
        return f"{rel}: not looked at"
    if picture.refusal is not None:
        return f"{rel}: {picture.refusal}"
    return None
