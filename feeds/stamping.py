"""``feeds check --stamp-dates``: writing ``first_seen`` into the newsroom's own files.

It is the one place the program changes an article, so it keeps three promises:

* **No writer loses a byte.** A file open for writing is left alone (a Linux read lease is
  refused while any other program has it open for writing). The lease is held from before the
  read until the new version has taken the old one's name, so a program that opens the file for
  writing meanwhile waits in ``open()``; seeing its lease break pending afterwards, the swap is
  undone and that program writes into the very file it opened. Names are swapped atomically
  (``renameat2(RENAME_EXCHANGE)``), never overwritten, so a version another program renamed
  into place at the same instant is given its name back, not deleted.
* **Nothing outside the article is written.** Every folder is opened without following symbolic
  links, starting from the opened articles folder, and the file, the temporary copy and the swap
  are all relative to the opened folder: a folder swapped for a symlink midway is refused, and
  can never redirect a write.
* **No article gets worse.** The stamped bytes are parsed again with the real parser and must
  give the same article, field by field, with ``first_seen`` added; otherwise the file is left
  as it was and the operator is told why.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import signal
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path

from . import renames
from .articles import DateSource, Meta, SourceFile, Stamp, with_first_seen
from .config import SiteConfig
from .parsing import parse_meta, stamped

log = logging.getLogger(__name__)

Pause = Callable[[str], None]
"""Called at ``"read"`` and ``"replacing"`` (just before the swap): lets tests race a rewrite."""

MAX_SYMLINKS = 8
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_UNCOMPARED = {"version", "digest", "body_start"}  # differ with any change of the bytes
_NUMBER = re.compile(r"\d+")


class NotWritten(Exception):
    """Why a file was left exactly as it was (shown after its path)."""


def _no_pause(stage: str) -> None:
    pass


def stamp_dates(
    site: SiteConfig, articles: Iterable[Meta], pause: Pause = _no_pause
) -> Iterator[tuple[str, str | None]]:
    """(path, None) for each dateless article stamped, (path, reason) for each left alone."""
    for meta in articles:
        if meta.dated_by is not DateSource.SEEN:
            continue
        try:
            stamp_file(site, meta, pause)
        except NotWritten as exc:
            yield meta.path, str(exc)
        except OSError as exc:
            yield meta.path, exc.strerror or str(exc)
        else:
            yield meta.path, None


def stamp_file(site: SiteConfig, meta: Meta, pause: Pause = _no_pause) -> None:
    """Write ``first_seen: <meta.published>`` into the file ``meta`` was read from.

    Raises :class:`NotWritten` (or OSError) when it did not, and then the file is unchanged.
    """

    def transform(data: bytes) -> bytes:
        return stamped_article(site, SourceFile(meta.path, data, meta.version), meta.published)

    rewrite(site.articles_dir, meta.path, meta.version, transform, pause)
    log.info("first_seen written into %s", meta.path)


def stamped_article(site: SiteConfig, source: SourceFile, seen: datetime) -> bytes:
    """The file's bytes with ``first_seen``, checked by parsing them again.

    Raises :class:`NotWritten` unless the stamped file parses to the same article (every field,
    the body, no new problem) dated ``seen`` by ``first_seen``.
    """
    before, body, problems = parse_meta(source, site)
    if before is None or before.dated_by is not DateSource.SEEN:
        raise NotWritten("it is no longer an article without a date")
    when = seen.astimezone(site.tz).isoformat()
    data = stamped(source.data, when)
    after, body_after, problems_after = parse_meta(replace(source, data=data), site)
    if after is None:
        why = problems_after[0].message if problems_after else "unreadable"
        raise NotWritten(f"adding 'first_seen: {when}' would leave it out ({why}); add the line by hand")
    expected = replace(with_first_seen(before, seen), dated_by=DateSource.FIRST_SEEN)
    changed = [
        f.name
        for f in fields(Meta)
        if f.name not in _UNCOMPARED and getattr(after, f.name) != getattr(expected, f.name)
    ]
    if body_after != body:
        changed.append("body")
    known = {(p.severity, _NUMBER.sub("#", p.message)) for p in problems}
    if any((p.severity, _NUMBER.sub("#", p.message)) not in known for p in problems_after):
        changed.append("problems")
    if changed:
        raise NotWritten(
            f"adding 'first_seen: {when}' would change its {', '.join(changed)}; add the line by hand"
        )
    return data


def rewrite(
    root: Path,
    rel: str,
    expected: Stamp,
    transform: Callable[[bytes], bytes],
    pause: Pause = _no_pause,
) -> None:
    """Replace the file ``rel`` under ``root`` by ``transform(its bytes)``, atomically.

    Only if it is still the version ``expected``, a regular file with a write bit, the only name
    of its data, and no other program has it open for writing. The new file keeps the old one's
    permissions and owner; a symlinked article is written at its target (inside ``root``).
    Raises :class:`NotWritten` (or OSError) when the file was left as it was.
    """
    with ExitStack() as opened:  # closing the descriptors also gives up the leases

        def keep(fd: int) -> int:
            opened.callback(os.close, fd)
            return fd

        top = keep(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        parts, folder = _locate(keep, top, root, rel)
        name = parts[-1]
        try:
            old = keep(os.open(name, _FILE, dir_fd=folder))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NotWritten("it was replaced by a symbolic link; not followed") from None
            raise
        st = os.fstat(old)
        _check_replaceable(st, os.fstat(folder), expected)
        _lease(old, "open for writing by another program; run again once it is closed")
        data = _read_at_most(old, expected.size + 1)
        if Stamp(len(data), os.fstat(old).st_mtime_ns) != expected:
            raise NotWritten("it changed since it was read")
        new_data = transform(data)
        pause("read")
        tmp, new = _write_copy(keep, folder, new_data, st)
        at_tmp: tuple[int, int] | None = _ident(os.fstat(new))  # None: keep both files
        try:
            _check_in_place(keep, top, parts, folder, _ident(st))
            pause("replacing")
            _exchange(folder, tmp, name)
            at_tmp = None
            racing = _race(keep, top, parts, folder, tmp, _ident(st), old, _ident(os.fstat(new)))
            if racing is None:
                at_tmp = _ident(st)
            else:
                _exchange(folder, tmp, name)
                if _lease_broken(new):  # and one waits to write the stamped copy: keep it too
                    copy = "/".join((*parts[:-1], tmp))
                    raise NotWritten(f"{racing}; left as it was, and the stamped copy kept as {copy}")
                at_tmp = _ident(os.fstat(new))
                raise NotWritten(f"{racing}; left as it was")
        finally:
            if at_tmp is not None:
                _unlink_if(folder, tmp, at_tmp)
        os.fsync(folder)


def _locate(keep: Callable[[int], int], top: int, root: Path, rel: str) -> tuple[tuple[str, ...], int]:
    """The path of the file under ``root`` with symlinked files resolved, and its open folder."""
    parts, folder = _walk(keep, top, (), rel)
    for _ in range(MAX_SYMLINKS):
        name = parts[-1]
        if not stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            return parts, folder
        target = os.readlink(name, dir_fd=folder)
        if target.startswith("/"):
            target = _under_root(top, root, target)
            parts, folder = _walk(keep, top, (), target)
        else:
            parts, folder = _walk(keep, top, parts[:-1], target)
    raise NotWritten(f"more than {MAX_SYMLINKS} symbolic links in a row; not followed")


def _walk(
    keep: Callable[[int], int], top: int, base: tuple[str, ...], rel: str
) -> tuple[tuple[str, ...], int]:
    """Open each folder of ``base + rel`` from ``top`` without following symlinks.

    ``..`` goes back to the folder it came from (never above ``top``): what the kernel would do,
    since no folder passed on the way is a symlink.
    """
    names = [*base, *(p for p in rel.split("/") if p not in ("", "."))]
    if not names or names[-1] == "..":
        raise NotWritten("not a file name")
    path: list[tuple[str, int]] = []
    for part in names[:-1]:
        if part == "..":
            if not path:
                raise NotWritten("a symbolic link to a file outside the articles folder; not followed")
            path.pop()
            continue
        try:
            path.append((part, keep(os.open(part, _FOLDER, dir_fd=path[-1][1] if path else top))))
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotWritten(
                    f"'{part}' on its path is a symbolic link or not a folder; not followed"
                ) from None
            raise
    return (*(p for p, _ in path), names[-1]), path[-1][1] if path else top


def _under_root(top: int, root: Path, target: str) -> str:
    """An absolute symlink target as a path under the articles folder (or refused)."""
    try:
        real = os.readlink(f"/proc/self/fd/{top}")
    except OSError:
        real = os.path.realpath(root)
    for prefix in (real, os.path.abspath(root)):
        if target.startswith(prefix.rstrip("/") + "/"):
            return target[len(prefix.rstrip("/")) + 1 :]
    raise NotWritten("a symbolic link to a file outside the articles folder; not followed")


def _check_replaceable(st: os.stat_result, folder: os.stat_result, expected: Stamp) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise NotWritten("not a regular file")
    if Stamp(st.st_size, st.st_mtime_ns) != expected:
        raise NotWritten("it changed since it was read")
    if not st.st_mode & 0o222:
        raise NotWritten(f"read-only (mode {stat.S_IMODE(st.st_mode):04o}); left as it is")
    if not folder.st_mode & 0o222:
        raise NotWritten(f"its folder is read-only (mode {stat.S_IMODE(folder.st_mode):04o}); left as it is")
    if st.st_nlink != 1:
        raise NotWritten(f"it has {st.st_nlink} hard links, which a new copy would separate")
    if os.geteuid() not in (0, st.st_uid):
        raise NotWritten(f"owned by another user (uid {st.st_uid}); run as that user")


def _lease(fd: int, refused: str) -> None:
    """Take a read lease: refused while anyone else has the file open for writing.

    While it is held, another program's open() for writing waits (at most the kernel's
    lease-break-time, 45 s by default) and marks the lease as breaking. The kernel tells the
    holder with a signal; SIGURG is ignored unless handled, where SIGIO would end the process.
    """
    if not hasattr(fcntl, "F_SETLEASE"):
        raise NotWritten("cannot tell whether another program is writing it (file leases are Linux only)")
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            raise NotWritten(refused) from None
        raise NotWritten(
            f"cannot tell whether another program is writing it (no file lease: {exc.strerror})"
        ) from None


def _lease_broken(fd: int) -> bool:
    """Whether another program opened the file for writing since the lease was taken."""
    return bool(fcntl.fcntl(fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_copy(keep: Callable[[int], int], folder: int, data: bytes, st: os.stat_result) -> tuple[str, int]:
    """A hidden file in ``folder`` holding ``data``, with the owner and mode of ``st``; leased."""
    tmp = f".feeds-stamp-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder
    )
    made = os.fstat(fd)
    try:
        try:
            if (made.st_uid, made.st_gid) != (st.st_uid, st.st_gid):
                os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        new = keep(os.open(tmp, _FILE, dir_fd=folder))
        if _ident(os.fstat(new)) != _ident(made):
            raise NotWritten("its temporary copy was replaced; left as it was")
        _lease(new, "its temporary copy was opened by another program; left as it was")
    except BaseException as exc:
        _unlink_if(folder, tmp, _ident(made))
        if isinstance(exc, PermissionError):
            raise NotWritten(f"cannot give the new copy its owner or mode ({exc.strerror})") from None
        raise
    return tmp, new


def _check_in_place(
    keep: Callable[[int], int], top: int, parts: tuple[str, ...], folder: int, file: tuple[int, int]
) -> None:
    """Whether the path still leads, folder by folder, to ``folder`` and in it to ``file``."""
    _, again = _walk(keep, top, (), "/".join(parts))
    if _ident(os.fstat(again)) != _ident(os.fstat(folder)):
        raise NotWritten("a folder on its path was moved while being stamped")
    if _ident(os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)) != file:
        raise NotWritten("it was replaced by another program while being stamped")


def _race(
    keep: Callable[[int], int],
    top: int,
    parts: tuple[str, ...],
    folder: int,
    tmp: str,
    old: tuple[int, int],
    old_fd: int,
    new: tuple[int, int],
) -> str | None:
    """What another program did during the swap that it must be undone for, if anything."""
    if _ident(os.stat(tmp, dir_fd=folder, follow_symlinks=False)) != old:
        return "it was replaced by another program while being stamped"  # its file goes back
    if _lease_broken(old_fd):
        return "opened for writing by another program while being stamped"  # it waits in open()
    try:
        _check_in_place(keep, top, parts, folder, new)
    except NotWritten as exc:
        return str(exc)
    return None


def _exchange(folder: int, a: str, b: str) -> None:
    """Swap the names ``a`` and ``b`` in ``folder`` in one step (Linux 3.15+, most file systems)."""
    if not renames.exchange(a, b, dir_fd=folder):
        raise NotWritten("this system or its file system cannot swap two files in one step (renameat2)")


def _unlink_if(folder: int, name: str, ident: tuple[int, int]) -> None:
    """Remove ``name`` if it still is the file ``ident`` (one this module made or replaced)."""
    try:
        if _ident(os.stat(name, dir_fd=folder, follow_symlinks=False)) == ident:
            os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino
