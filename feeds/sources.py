"""The file-system edge of articles: which files are articles, and reading them safely.

Everything here touches the disk; the parsing it feeds (``parse_meta``) does not. Article stores
arrive by rsync and git, which carry symlinks, and anyone who can write into the folder can
plant a named pipe or a huge file. So a file is only read when it is a regular file whose real
path lies inside the articles folder and whose size is within the configured limit; the type is
checked before opening (opening a FIFO blocks, opening a device can have side effects) and again
on the open descriptor, and reads never block.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .articles import SUFFIXES, SourceFile, Stamp
from .pictures import (
    BYTE_MARKS,
    MAX_PICTURES,
    NAMES,
    SNIFF_BYTES,
    Picture,
    body_references,
    is_url,
    resolve,
    sniff,
)
from .pictures import MAX_BYTES as MAX_PICTURE_BYTES

_IMAGE = re.compile(rb"^image:[ \t]*['\"]?([^'\"\n#]+?)['\"]?[ \t]*$", re.MULTILINE)
_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}


class Refused(OSError):
    """The path is not something we read as an article (its type, location or size)."""


@dataclass(frozen=True)
class Listed:
    """A candidate article found by :func:`scan`; ``refusal`` says why it will not be read."""

    rel: str
    refusal: str | None = None


def scan(root: Path, under: str = "", suffixes: tuple[str, ...] = SUFFIXES) -> Iterator[Listed]:
    """Article files under ``root`` (or its sub-folder ``under``), sorted, nothing opened.

    Names starting with '.' or '_' are skipped. Symlinked folders are not followed (their files
    would be listed twice, or come from outside); symlinked files are listed, and refused when
    their target is outside ``root`` or not a regular file.
    """
    top = os.path.join(root, under) if under else str(root)
    real_root = os.path.realpath(root)
    prefix = under.rstrip("/") + "/" if under else ""
    yield from _scan(top, prefix, real_root, suffixes)


def _scan(folder: str, prefix: str, real_root: str, suffixes: tuple[str, ...]) -> Iterator[Listed]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith((".", "_")):
            continue
        rel = prefix + entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _scan(entry.path, rel + "/", real_root, suffixes)
                continue
            if not entry.name.lower().endswith(suffixes):
                continue
            if entry.is_symlink():
                yield Listed(rel, _symlink_refusal(entry.path, real_root))
            elif entry.is_file(follow_symlinks=False):
                yield Listed(rel)
            else:
                yield Listed(rel, _kind(entry.stat(follow_symlinks=False).st_mode))
        except OSError:
            continue  # vanished while listing


def _symlink_refusal(path: str, real_root: str) -> str | None:
    target = os.path.realpath(path)
    if not _inside(target, real_root):
        return "a symlink to a file outside the articles folder"
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return "a broken symlink"
    return None if stat.S_ISREG(mode) else "a symlink to " + _kind(mode)


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _real(root: str) -> str:
    """The articles folder's real path now: a release symlink may have been switched since."""
    return os.path.realpath(root)


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip("/") + "/")


def _within_root(real: str, root: str) -> bool:
    """Whether the real path ``real`` lies inside the folder ``root`` as it resolves now.

    A real path passes through no symlink, so one that starts with ``root`` as written proves
    ``root`` a real folder and ``real`` inside it, without resolving ``root`` (a ``realpath``
    per file was a twentieth of a cold start); otherwise ``root`` is resolved (a release symlink).
    """
    if root.startswith("/") and real.startswith(root.rstrip("/") + "/"):
        return True
    return _inside(real, _real(root))


def read_source(root: Path, rel: str, max_bytes: int) -> SourceFile:
    """Read ``rel`` (relative to ``root``) if it is a regular file inside ``root``.

    Raises :class:`Refused` for anything else (a pipe, a device, a symlink out of the folder,
    a file over ``max_bytes``), FileNotFoundError if it is gone, OSError if it cannot be read.
    The pictures the article names are looked at too (:func:`probe`), never read.
    """
    data, st = read_file(root, rel, max_bytes)
    return SourceFile(rel, data, Stamp(len(data), st.st_mtime_ns), _pictures(root, rel, data))


def read_file(root: Path, rel: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The bytes of ``rel`` by the same rules, and what ``fstat`` said of the file read (for
    files served as they are: :mod:`feeds.assets`)."""
    fd, st = _open_inside(root, rel, max_bytes)
    try:
        data = _read_at_most(fd, max_bytes + 1, st.st_size)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise Refused(errno.EFBIG, _too_large(len(data), max_bytes), rel)
    return data, st


def _open_inside(root: Path, rel: str, max_bytes: int) -> tuple[int, os.stat_result]:
    """A descriptor of ``rel`` opened without blocking, once it proved a regular file inside ``root``."""
    path = os.path.join(root, rel)
    before = os.stat(path)  # follows symlinks: the target's type decides
    if not stat.S_ISREG(before.st_mode):
        raise Refused(errno.EINVAL, f"{_kind(before.st_mode)}, not a regular file; not read", rel)
    if before.st_size > max_bytes:
        raise Refused(errno.EFBIG, _too_large(before.st_size, max_bytes), rel)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(st.st_mode):
            raise Refused(errno.EAGAIN, "replaced while being opened; not read", rel)
        if not _within_root(_real_path(fd, path), str(root)):
            raise Refused(errno.EACCES, "a symlink to a file outside the articles folder; not read", rel)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def prefetch(root: Path, rels: Iterable[str]) -> None:
    """Ask the kernel to start reading these files (``posix_fadvise(WILLNEED)``), so that a cold
    start's reads overlap its parsing. Nothing is read here; what is not a regular file is
    never opened, and a file that changed meanwhile is read later by the usual rules."""
    for rel in rels:
        if rel.startswith("/") or ".." in rel.split("/"):
            continue  # names come from scan(): never outside the folder
        path = os.path.join(root, rel)
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def probe(root: Path, rel: str) -> Picture:
    """What the picture file ``rel`` under ``root`` is: its size, and its type from its first bytes.

    The rules of serving it (:mod:`feeds.assets`), checked without reading more than
    :data:`~feeds.pictures.SNIFF_BYTES`: a regular file inside the folder, one hard link, within
    the size limit, and bytes that are a picture.
    """
    try:
        st = os.stat(os.path.join(root, rel))
        refusal = picture_refusal(st)
        if refusal is not None:
            return Picture(refusal=refusal)
        fd, st = _open_inside(root, rel, MAX_PICTURE_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return Picture(refusal="no such file")
    except Refused as exc:
        return Picture(refusal=(exc.strerror or "refused").replace("not read", "never served"))
    except (OSError, ValueError) as exc:
        return Picture(refusal=f"cannot be looked at: {getattr(exc, 'strerror', None) or exc}")
    try:
        head = os.read(fd, SNIFF_BYTES)
    except OSError as exc:
        return Picture(refusal=f"cannot be read: {exc.strerror or exc}")
    finally:
        os.close(fd)
    media_type = sniff(head)
    if media_type is None:
        return Picture(refusal=f"its first bytes are not a {NAMES} picture; never served")
    return Picture(st.st_size, media_type)


def picture_refusal(st: os.stat_result) -> str | None:
    """Why a file is not served as a picture, before it is opened (see feeds.assets), or None."""
    if not stat.S_ISREG(st.st_mode):
        return f"{_kind(st.st_mode)}, not a regular file; never served"
    if st.st_nlink > 1:
        return (
            f"has {st.st_nlink} hard links, so it may be a file from outside the folder; "
            "never served (copy it instead of linking it)"
        )
    if st.st_size > MAX_PICTURE_BYTES:
        return f"{st.st_size} bytes, over the {MAX_PICTURE_BYTES} bytes a picture may have; never served"
    return None


def _too_large(size: int, max_bytes: int) -> str:
    return f"{size} bytes, over max_article_bytes ({max_bytes}); left out unread"


def _real_path(fd: int, path: str) -> str:
    """Where the open descriptor really points: one syscall on Linux, realpath elsewhere."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def _read_at_most(fd: int, limit: int, size: int = -1) -> bytes:
    """Up to ``limit`` bytes, to the end of the file. ``size``: what ``fstat`` said the file
    holds, so that an article is one read of the size it has (a read of a megabyte costs a
    megabyte's allocation whatever it gets); a file grown since reads on."""
    chunks: list[bytes] = []
    left = limit
    wanted = min(left, size + 1) if size >= 0 else min(left, 1 << 20)
    while left > 0:
        chunk = os.read(fd, wanted)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
        if len(chunk) < wanted and limit - left == size:
            break  # the end of the file as fstat saw it: another read would find nothing
        wanted = min(left, 1 << 20)
    return b"".join(chunks)


def _pictures(root: Path, rel: str, data: bytes) -> dict[str, Picture]:
    """The pictures a file names (``image:`` and body images), by path under ``root``; one
    ``stat`` and one read of a few bytes each. Most articles have none: substring tests rule
    them out before any decoding."""
    head = data.find(b"image:", 0, 4096) >= 0
    # "![", then one fast scan for "<" rules out the other three marks in most texts
    if not head and b"![" not in data and (b"<" not in data or not any(m in data for m in BYTE_MARKS[1:])):
        return {}
    references: list[str] = []
    if head and (found := _IMAGE.search(data, 0, 4096)) is not None:
        references.append(found.group(1).decode("utf-8", "replace").strip())
    if not rel.endswith(".txt"):  # a plain body is text: no picture in it is shown
        references += [ref for ref, _ in body_references(data.decode("utf-8", "replace"))]
    found_pictures: dict[str, Picture] = {}
    for reference in references[:MAX_PICTURES]:
        if is_url(reference):
            continue
        local = resolve(rel, reference)
        if local.refusal is None and local.rel not in found_pictures:
            found_pictures[local.rel] = probe(root, local.rel)
    return found_pictures
