"""The site's own pictures and styles: ``static/`` beside config.yaml, served at ``/static/``.

``site.icon`` and ``site.logo`` name files such as ``/static/icon.png``; something has to serve
them, and ``feeds serve`` or a lone app server is often all there is. The folder is read with
the same rules as articles (regular files inside it only, never a pipe or a symlink out, a size
limit, nothing starting with '.' or '_'), and only types that cannot run script on the site's
origin are served: no HTML, no SVG.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .articles import Stamp
from .config import SiteConfig
from .documents import Document, make_document
from .errors import NotFound
from .sources import read_source, scan

FOLDER = "static"
MAX_BYTES = 5 * 1024 * 1024
MAX_AGE = 24 * 60 * 60
TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
KEPT = 256  # assets kept in memory (an icon, a logo, a stylesheet: a site has a handful)


def folder_of(site: SiteConfig) -> Path:
    return site.path.parent / FOLDER


def listed(site: SiteConfig) -> Iterator[str]:
    """Relative paths of the assets a static export copies."""
    for item in scan(folder_of(site), suffixes=tuple(TYPES)):
        if item.refusal is None:
            yield item.rel


class Assets:
    """Assets read on demand and kept while their file is unchanged (one ``stat`` per request)."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[Stamp, Document]] = {}
        self._lock = threading.Lock()

    def get(self, site: SiteConfig, rel: str) -> Document:
        suffix = os.path.splitext(rel)[1].lower()
        parts = rel.split("/")
        if suffix not in TYPES or any(not p or p.startswith((".", "_")) for p in parts):
            raise NotFound(f"no asset {rel}")
        folder = folder_of(site)
        try:
            st = os.stat(folder / rel)
        except (OSError, ValueError):
            raise NotFound(f"no asset {rel}") from None
        kept = self._kept.get(rel)
        if kept is not None and kept[0] == Stamp(st.st_size, st.st_mtime_ns):
            return kept[1]
        try:
            source = read_source(folder, rel, MAX_BYTES)
        except (OSError, ValueError):  # a pipe, a symlink out, too large, gone: never served
            raise NotFound(f"no asset {rel}") from None
        # The file's time is all an asset has; a copy on another machine differs only there.
        modified = datetime.fromtimestamp(source.stamp.mtime_ns // 1_000_000_000, UTC)
        doc = make_document(source.data, TYPES[suffix], modified, MAX_AGE)
        with self._lock:
            if len(self._kept) >= KEPT:
                self._kept.clear()
            self._kept[rel] = (source.stamp, doc)
        return doc
