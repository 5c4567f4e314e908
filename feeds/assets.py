"""Files served as they are: ``static/`` beside config.yaml at ``/static/``, and the pictures
beside the articles at ``/media/`` (:mod:`feeds.pictures`).

``site.icon`` and ``site.logo`` name files such as ``/static/icon.png``; something has to serve
them, and ``feeds serve`` or a lone app server is often all there is. The folder is read with
the same rules as articles (regular files inside it only, never a pipe or a symlink out, a size
limit, nothing starting with '.' or '_'), and only types that cannot run script on the site's
origin are served: no HTML, no SVG, and ``nosniff`` so that no browser guesses another type.

Assets are served raw, so one more rule applies here: a file with more than one hard link is
refused. A hard link to a file outside the folder looks like any file inside it (no path says
where else it lives), and following the rules above would serve it.

Pictures beside the articles follow the same rules (:data:`MEDIA`), with two more: only picture
types, and a file's first bytes decide its type (a file named ``x.png`` holding HTML is refused).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .config import SiteConfig
from .documents import Document, make_document
from .errors import NotFound
from .pictures import MAX_BYTES as PICTURE_BYTES
from .pictures import NAMES, sniff
from .pictures import TYPES as PICTURE_TYPES
from .sources import probe, read_file, scan

FOLDER = "static"
MAX_BYTES = 5 * 1024 * 1024
MAX_AGE = 24 * 60 * 60
TYPES = {
    **PICTURE_TYPES,
    ".ico": "image/vnd.microsoft.icon",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
KEPT = 256  # assets kept in memory (an icon, a logo, a stylesheet: a site has a handful)
KEPT_BYTES = 64 * 1024 * 1024  # and at most this many bytes of them (pictures are many, and large)

log = logging.getLogger(__name__)
# One version of a file. Size and mtime alone miss a rewrite that keeps both (rsync --inplace
# with --times, a copy with preserved dates); the change time moves on every write, utime and
# link, and device and inode tell a file renamed over the old one.
Version = tuple[int, int, int, int, int]


def _version(st: os.stat_result) -> Version:
    return (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Folder:
    """A folder whose files are served as they are: where it is, what it may serve, how long.

    ``sniff``: the media type from a file's first bytes, None for a file that is no such thing
    (then refused); without it the suffix decides.
    """

    label: str  # how the log names it
    locate: Callable[[SiteConfig], Path]
    types: Mapping[str, str]
    max_bytes: int
    noun: str  # one of its files, for the log
    sniff: Callable[[bytes], str | None] | None = None
    expected: str = ""  # what sniff accepts, for the log

    def type_of(self, rel: str, data: bytes) -> str | None:
        if self.sniff is not None:
            return self.sniff(data[:64])
        return self.types[os.path.splitext(rel)[1].lower()]


STATIC = Folder("static", lambda site: site.path.parent / FOLDER, TYPES, MAX_BYTES, "static file")
MEDIA = Folder(
    "articles",
    lambda site: site.articles_dir,
    PICTURE_TYPES,
    PICTURE_BYTES,
    "picture",
    sniff,
    f"{NAMES} picture",
)


def _refusal(st: os.stat_result, folder: Folder = STATIC) -> str | None:
    """Why a file that passed the article rules is still not served raw, or None."""
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        return (
            f"has {st.st_nlink} hard links, so it may be a file from outside {folder.label}/; "
            "not served (copy it into the folder instead of linking it)"
        )
    if st.st_size > folder.max_bytes:
        return f"{st.st_size} bytes, over the {folder.max_bytes} bytes a {folder.noun} may have; not served"
    return None


def folder_of(site: SiteConfig) -> Path:
    return STATIC.locate(site)


def listed(site: SiteConfig, folder: Folder = STATIC) -> Iterator[str]:
    """Relative paths of the files of ``folder`` a static export copies."""
    root = folder.locate(site)
    for item in scan(root, suffixes=tuple(folder.types)):
        if item.refusal is not None:
            continue
        try:
            st = os.stat(root / item.rel)
        except OSError:  # gone since the listing
            continue
        refusal = _refusal(st, folder)
        if refusal is None and folder.sniff is not None:
            refusal = probe(root, item.rel).refusal
        if refusal is not None:
            log.warning("%s/%s: %s", folder.label, item.rel, refusal)
            continue
        yield item.rel


class Assets:
    """Files of one :class:`Folder` read on demand and kept while unchanged (one ``stat`` per
    request).

    A refusal is kept as well (as None), so a refused file costs one ``stat`` and one log line
    per version, however often it is asked for.
    """

    def __init__(self, folder: Folder = STATIC) -> None:
        self.folder = folder
        self._kept: dict[str, tuple[Version, Document | None]] = {}
        self._kept_bytes = 0
        self._lock = threading.Lock()

    def get(self, site: SiteConfig, rel: str) -> Document:
        folder = self.folder
        suffix = os.path.splitext(rel)[1].lower()
        parts = rel.split("/")
        if suffix not in folder.types or any(not p or p.startswith((".", "_")) for p in parts):
            raise NotFound(f"no file {rel}")
        root = folder.locate(site)
        try:
            st = os.stat(root / rel)
        except (OSError, ValueError):
            raise NotFound(f"no file {rel}") from None
        version = _version(st)
        kept = self._kept.get(rel)
        if kept is not None and kept[0] == version:
            if kept[1] is None:
                raise NotFound(f"no file {rel}")
            return kept[1]
        refusal = _refusal(st, folder)
        if refusal is not None:
            log.warning("%s/%s: %s", folder.label, rel, refusal)
            self._keep(rel, version, None)
            raise NotFound(f"no file {rel}")
        try:
            data, read = read_file(root, rel, folder.max_bytes)  # as articles are, minus parsing
            after = os.stat(root / rel)
        except (OSError, ValueError):  # a pipe, a symlink out, too large, gone: never served
            raise NotFound(f"no file {rel}") from None
        if _refusal(after, folder) is not None:  # linked while it was read: refused at the next request
            raise NotFound(f"no file {rel}")
        media_type = folder.type_of(rel, data)
        if media_type is None:
            log.warning(
                "%s/%s: its first bytes are not a %s file; not served", folder.label, rel, folder.expected
            )
            self._keep(rel, version, None)
            raise NotFound(f"no file {rel}")
        # The file's time is all an asset has; a copy on another machine differs only there.
        modified = datetime.fromtimestamp(read.st_mtime_ns // 1_000_000_000, UTC)
        doc = dataclasses.replace(make_document(data, media_type, modified, MAX_AGE), nosniff=True)
        if _version(after) == version:  # otherwise it changed while read: served, read again next time
            self._keep(rel, version, doc)
        return doc

    def _keep(self, rel: str, version: Version, doc: Document | None) -> None:
        size = len(doc.body) if doc is not None else 0
        with self._lock:
            if len(self._kept) >= KEPT or self._kept_bytes + size > KEPT_BYTES:
                self._kept.clear()
                self._kept_bytes = 0
            old = self._kept.get(rel)
            self._kept_bytes += size - (len(old[1].body) if old is not None and old[1] is not None else 0)
            self._kept[rel] = (version, doc)
