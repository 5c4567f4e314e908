"""The site's own pictures and styles: ``static/`` beside config.yaml, served at ``/static/``.

``site.icon`` and ``site.logo`` name files such as ``/static/icon.png``; something has to serve
them, and ``feeds serve`` or a lone app server is often all there is. The folder is read with
the same rules as articles (regular files inside it only, never a pipe or a symlink out, a size
limit, nothing starting with '.' or '_'), and only types that cannot run script on the site's
origin are served: no HTML, no SVG, and ``nosniff`` so that no browser guesses another type.

Assets are served raw, so one more rule applies here: a file with more than one hard link is
refused. A hard link to a file outside the folder looks like any file inside it (no path says
where else it lives), and following the rules above would serve it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

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

log = logging.getLogger(__name__)
# One version of a file. Size and mtime alone miss a rewrite that keeps both (rsync --inplace
# with --times, a copy with preserved dates); the change time moves on every write, utime and
# link, and device and inode tell a file renamed over the old one.
Version = tuple[int, int, int, int, int]


def _version(st: os.stat_result) -> Version:
    return (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_size, st.st_mtime_ns)


def _refusal(st: os.stat_result) -> str | None:
    """Why a file that passed the article rules is still not served raw, or None."""
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        return (
            f"has {st.st_nlink} hard links, so it may be a file from outside static/; "
            "not served (copy it into the folder instead of linking it)"
        )
    if st.st_size > MAX_BYTES:
        return f"{st.st_size} bytes, over the {MAX_BYTES} bytes a static file may have; not served"
    return None


def folder_of(site: SiteConfig) -> Path:
    return site.path.parent / FOLDER


def listed(site: SiteConfig) -> Iterator[str]:
    """Relative paths of the assets a static export copies."""
    folder = folder_of(site)
    for item in scan(folder, suffixes=tuple(TYPES)):
        if item.refusal is not None:
            continue
        try:
            st = os.stat(folder / item.rel)
        except OSError:  # gone since the listing
            continue
        refusal = _refusal(st)
        if refusal is not None:
            log.warning("static/%s: %s", item.rel, refusal)
            continue
        yield item.rel


class Assets:
    """Assets read on demand and kept while their file is unchanged (one ``stat`` per request).

    A refusal is kept as well (as None), so a refused file costs one ``stat`` and one log line
    per version, however often it is asked for.
    """

    def __init__(self) -> None:
        self._kept: dict[str, tuple[Version, Document | None]] = {}
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
        version = _version(st)
        kept = self._kept.get(rel)
        if kept is not None and kept[0] == version:
            if kept[1] is None:
                raise NotFound(f"no asset {rel}")
            return kept[1]
        refusal = _refusal(st)
        if refusal is not None:
            log.warning("static/%s: %s", rel, refusal)
            self._keep(rel, version, None)
            raise NotFound(f"no asset {rel}")
        try:
            source = read_source(folder, rel, MAX_BYTES)
            after = os.stat(folder / rel)
        except (OSError, ValueError):  # a pipe, a symlink out, too large, gone: never served
            raise NotFound(f"no asset {rel}") from None
        if _refusal(after) is not None:  # linked while it was read: refused at the next request
            raise NotFound(f"no asset {rel}")
        # The file's time is all an asset has; a copy on another machine differs only there.
        modified = datetime.fromtimestamp(source.stamp.mtime_ns // 1_000_000_000, UTC)
        doc = dataclasses.replace(make_document(source.data, TYPES[suffix], modified, MAX_AGE), nosniff=True)
        if _version(after) == version:  # otherwise it changed while read: served, read again next time
            self._keep(rel, version, doc)
        return doc

    def _keep(self, rel: str, version: Version, doc: Document | None) -> None:
        with self._lock:
            if len(self._kept) >= KEPT:
                self._kept.clear()
            self._kept[rel] = (version, doc)
