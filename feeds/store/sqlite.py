"""SQLite as the store uses it: opening files safely, transactions, lock files, and failures.

Both files of the state folder (the article index and the ledger) are opened here and nowhere
else, with the same rules: a state file that is a symbolic link is refused (it would make us
write wherever it points), views and triggers of a planted file run nothing, and every failure
is turned into a :class:`StoreError` whose message tells the operator what happened and where.
A full disk and a read-only folder are :class:`Unwritable`: the callers keep serving and say so.

An index that cannot live in the state folder lives "in memory": in a private file in
``/dev/shm`` (RAM on Linux) or the temporary folder, so that it works exactly like the file it
stands in for (WAL, one writer, readers on their own connections that never wait for it).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# SQLite's primary result codes (sqlite3.h) that say the file cannot take a write right now.
_UNWRITABLE = {
    8: "the state folder is read-only",  # SQLITE_READONLY
    10: "the state folder cannot be written (I/O error)",  # SQLITE_IOERR
    13: "the disk of the state folder is full",  # SQLITE_FULL
    14: "a state file cannot be opened",  # SQLITE_CANTOPEN
}
_FOREIGN = {11: "it is corrupt", 26: "it is not an SQLite database"}  # SQLITE_CORRUPT, SQLITE_NOTADB
_MEMORY_HOMES = ("/dev/shm",)


class StoreError(Exception):
    """A state file could not be used; ``str()`` is a sentence for the operator."""


class Unusable(StoreError):
    """The file is not ours, or may not be opened (corrupt, foreign, a symlink): left alone."""


class Unwritable(StoreError):
    """The file cannot take writes right now (disk full, read-only folder, I/O error)."""


def failure(exc: BaseException, path: Path | None, doing: str) -> StoreError:
    """The store error for ``exc``, which happened while ``doing`` something with ``path``."""
    where = str(path) if path is not None else "the index in memory"
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        if code in _UNWRITABLE:
            return Unwritable(f"{_UNWRITABLE[code]}: {doing} {where} failed ({exc})")
        if code in _FOREIGN:
            return Unusable(f"{where}: {_FOREIGN[code]} ({exc})")
        return StoreError(f"{doing} {where} failed: {exc}")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return Unwritable(f"the disk of the state folder is full: {doing} {where} failed")
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return Unwritable(f"the state folder is read-only: {doing} {where} failed ({exc.strerror})")
        if exc.errno == errno.ELOOP:
            return Unusable(f"{where} is a symbolic link; state files must be regular files")
        return StoreError(f"{doing} {where} failed: {exc.strerror or exc}")
    return StoreError(f"{doing} {where} failed: {exc}")


def refuse_links(path: Path) -> None:
    """Unusable if ``path`` or its journal files are symbolic links (SQLite would follow them)."""
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if candidate.is_symlink():
            raise Unusable(
                f"{candidate} is a symbolic link; state files must be regular files in the state "
                "folder (remove the link and feeds makes the file again)"
            )


def connect(path: Path, *, cache_kib: int = 0, timeout: float = 60.0) -> sqlite3.Connection:
    """A connection to ``path`` as every user of the store makes it (workers, parser processes)."""
    refuse_links(path)
    try:
        db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise failure(exc, path, "opening") from None
    try:
        # Views and triggers in a planted file must not call functions with side effects.
        db.execute("PRAGMA trusted_schema = OFF")
        # A commit need not wait for the disk: WAL keeps the file consistent anyway.
        db.execute("PRAGMA synchronous = NORMAL")
        if cache_kib:
            db.execute(f"PRAGMA cache_size = -{cache_kib}")
        _check_opened(db, path)
    except BaseException as exc:
        db.close()
        if isinstance(exc, sqlite3.Error | OSError):
            raise failure(exc, path, "opening") from None
        raise
    return db


def _check_opened(db: sqlite3.Connection, path: Path) -> None:
    """The file SQLite opened is the one in the state folder (no link swapped in meanwhile)."""
    opened = next((row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main"), "")
    if opened and os.path.realpath(opened) != os.path.realpath(path.parent / path.name):
        raise Unusable(f"{path} was replaced by a link while being opened; not used")
    refuse_links(path)


@contextmanager
def transaction(db: sqlite3.Connection, path: Path | None, doing: str) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed whole, or rolled back and raised as a StoreError."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise failure(exc, path, doing) from None
    try:
        yield db
        db.execute("COMMIT")
    except BaseException as exc:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolled back by itself (a full disk does that)
        if isinstance(exc, sqlite3.Error | OSError):
            raise failure(exc, path, doing) from None
        raise


def open_state_file(
    path: Path, schema: tuple[str, ...], application_id: int, what: str
) -> sqlite3.Connection:
    """Open (and on first use set up) a small state file shared by all workers: the ledger, the
    audience file. Switching a new file to WAL needs it to itself, and SQLite answers "database
    is locked" at once instead of waiting, so the set-up runs under a lock file beside it. A file
    that is not ours (another application id, or tables we did not make) is left untouched."""
    tables = {
        statement.split()[5] for statement in schema if statement.startswith("CREATE TABLE IF NOT EXISTS")
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with LockFile(path.with_name(path.name + ".lock")).hold():
        db = connect(path, timeout=10)
        try:
            app = db.execute("PRAGMA application_id").fetchone()[0]
            if app != application_id:
                found = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if app != 0 or not found <= tables:
                    raise Unusable(f"{path} is not {what}; left untouched")
                db.execute(f"PRAGMA application_id = {application_id}")  # empty, or ours from before
            db.execute("PRAGMA journal_mode=WAL")
            for statement in schema:
                db.execute(statement)
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.Error):
                raise failure(exc, path, "setting up") from None
            raise
    return db


class LockFile:
    """An ``flock`` on a file beside a state file, shared by the processes of one state folder.

    Opened with O_NOFOLLOW: a lock file planted as a symbolic link is refused, never followed.
    A folder where no lock file can be made has no one to share with: the lock is then taken
    at once (``held`` says which).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _open(self) -> int | None:
        """The lock file's descriptor; None where no lock file can be made (no one to share with)."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Unusable(f"{self.path} is a symbolic link; lock files must be regular files") from None
            return None

    @staticmethod
    def _locked(fd: int, operation: int) -> int | None:
        """``fd`` once ``flock(operation)`` succeeded; closed and None if it did not."""
        try:
            fcntl.flock(fd, operation)
        except OSError:
            os.close(fd)
            return None
        return fd

    @contextmanager
    def hold(self, wait: bool = True) -> Iterator[bool]:
        """Taken (True), or busy and not waited for (False)."""
        fd = self._open()
        if fd is None:
            yield True
            return
        fd = self._locked(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        if fd is None:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # for every copy of the descriptor (a forked child's)
            os.close(fd)

    def take(self) -> tuple[bool, int | None]:
        """Try to hold the lock alone until the returned descriptor is closed: (taken, fd).
        Where no lock file can be made there is no one to share with: (True, None)."""
        fd = self._open()
        if fd is None:
            return True, None
        fd = self._locked(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd is not None, fd

    def share(self) -> int | None:
        """Hold the lock shared until the returned descriptor is closed (None: no lock file can
        be made here, so there is no one to share with). Waits while someone holds it alone."""
        fd = self._open()
        return None if fd is None else self._locked(fd, fcntl.LOCK_SH)


class Pool:
    """Reader connections of one process to one file: taken for one read, then given back.

    A connection is never carried across ``fork``: a child (a worker forked from a preloaded
    app) opens its own, and the parent's are left alone, never closed from the child.
    """

    def __init__(self, path: Path, cache_kib: int) -> None:
        self._path = path
        self._cache_kib = cache_kib
        self._free: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # held for a list operation only
        self._pid = os.getpid()
        self._orphans: list[sqlite3.Connection] = []  # a parent's connections, kept unclosed

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection in a read transaction: every query in the block sees one snapshot."""
        db = self._take()
        broken = False
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            broken = True
            raise failure(exc, self._path, "reading") from None
        finally:
            if broken:
                db.close()
            else:
                self._give(db)

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            if self._pid != os.getpid():
                self._orphans += self._free
                self._free, self._pid = [], os.getpid()
            if self._free:
                return self._free.pop()
        return connect(self._path, cache_kib=self._cache_kib)

    def _give(self, db: sqlite3.Connection) -> None:
        with self._lock:
            if self._pid == os.getpid() and len(self._free) < 64:
                self._free.append(db)
                return
        if self._pid == os.getpid():
            db.close()

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        if self._pid == os.getpid():
            for db in free:
                db.close()


def private_folder(owner: object) -> Path:
    """A folder only this process uses, removed when ``owner`` is collected or the process exits.

    RAM (``/dev/shm``) where there is one, so an index "in memory" survives a full disk.
    """
    for home in _MEMORY_HOMES:
        if os.path.isdir(home) and os.access(home, os.W_OK):
            try:
                folder = Path(tempfile.mkdtemp(prefix="feeds-", dir=home))
                break
            except OSError:
                continue
    else:
        folder = Path(tempfile.mkdtemp(prefix="feeds-"))
    weakref.finalize(owner, _remove_private, folder, os.getpid())
    return folder


def _remove_private(folder: Path, pid: int) -> None:
    if os.getpid() == pid:  # a forked child must not remove its parent's folder
        shutil.rmtree(folder, ignore_errors=True)
