"""The file-system edge of articles: which files are articles, and reading them.

Everything here touches the disk; the parsing it feeds (``parse_meta``) does not.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISREG

from .articles import SUFFIXES, SourceFile

log = logging.getLogger(__name__)


def iter_sources(root: Path) -> Iterator[str]:
    """Article files under ``root`` as POSIX paths relative to it, sorted, skipping names that
    start with '.' or '_'."""
    top = str(root)
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        base = os.path.relpath(folder, top).replace(os.sep, "/")
        base = "" if base == "." else base + "/"
        for name in sorted(files):
            if not name.startswith((".", "_")) and name.lower().endswith(SUFFIXES):
                yield base + name


_IMAGE = re.compile(rb"^image:[ \t]*['\"]?([^'\"\n#]+?)['\"]?[ \t]*$", re.MULTILINE)


def read_source(root: Path, rel: str) -> SourceFile:
    """Read ``rel`` (relative to ``root``), with what parsing needs to know of the disk."""
    path = os.path.join(root, rel)
    with open(path, "rb") as fh:
        stat = os.fstat(fh.fileno())
        if not S_ISREG(stat.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
        data = fh.read()
    sizes: dict[str, int] = {}
    image = _IMAGE.search(data, 0, 4096)
    if image:
        name = image.group(1).decode("utf-8", "replace").strip()
        candidate = (root / name).resolve()
        if candidate.is_relative_to(root.resolve()) and candidate.is_file():
            sizes[name] = candidate.stat().st_size
    return SourceFile(rel, data, stat.st_mtime, sizes, stat.st_mtime_ns)
