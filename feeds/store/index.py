"""The article index: one SQLite file in the state folder, shared by every worker.

The index lives on disk rather than in memory, so a worker's memory and its start-up do not
grow with the archive: a warm start opens the file, and documents ask for the few rows they
show. It replaces a pickle, which would have run code planted by anyone able to write to the
state folder; what is read back is checked field by field (:mod:`feeds.store.rows`), and a file
that is not ours (corrupt, foreign, a symlink) is never written: the index then lives in memory.

Who does what (see docs/development.md, "Threads, processes and locks"):

* one writer per worker (the live thread, or the start-up before it runs) uses the write
  connection: :meth:`IndexStore.apply`, the bulk load, :meth:`data_version`;
* any thread reads through :meth:`IndexStore.read`, on a connection of its own in a read
  transaction, so a reader never waits for the writer (WAL) and sees each batch whole or not;
* workers sharing the file queue for writes on a lock file of ours (``.write``), build it one at
  a time (``.lock``) and check it against the files one at a time (``.check``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

from ..articles import Meta
from ..config import SiteConfig
from ..errors import Problem
from ..records import Record
from . import writes
from .positions import Positions
from .queries import Reader
from .rows import Decoder, Malformed, encode, is_article_path
from .schema import APPLICATION_ID, INDEX_NAMES, NAMES, TABLE_NAMES, format_version, layout
from .sqlite import LockFile, Pool, StoreError, Unusable, connect, failure, private_folder, transaction

log = logging.getLogger(__name__)
T = TypeVar("T")
A = TypeVar("A")
CACHE_KIB = 16 * 1024  # SQLite's page cache per connection: the OS keeps the rest
ANALYSIS_LIMIT = 1000  # rows of each index looked at for the planner's statistics
STAMPS_BATCH = 10_000  # rows per read when every file is compared with its row
_VISIBLE = tuple(i for i, name in enumerate(NAMES) if name not in ("retry", "problems"))
KEEP_NOTE = "keeping the last good version until the file reads again"


def config_key(config: SiteConfig) -> str:
    """What stored metadata depends on besides the code: another key, another index."""
    try:
        package = version("feeds")
    except PackageNotFoundError:  # pragma: no cover
        package = "0"
    what = (
        package,
        format_version(),
        config.url,
        config.timezone,
        config.author,
        config.max_article_bytes,
        str(config.articles_dir),
    )
    return hashlib.sha256(repr(what).encode()).hexdigest()


def site_key(config: SiteConfig) -> str:
    """The articles folder and what metadata depends on in the config: one site's indexes."""
    what = repr(
        (str(config.articles_dir), config.url, config.timezone, config.author, config.max_article_bytes)
    )
    return hashlib.sha256(what.encode()).hexdigest()[:12]


def index_name(config: SiteConfig) -> str:
    """The index file's name: one per site and version of the code, so that a new version builds
    its index beside the one the running version reads, never over it."""
    return f"index-{site_key(config)}-{config_key(config)[:12]}.sqlite"


def predecessor(state_dir: Path, config: SiteConfig) -> Path | None:
    """The newest complete index of this site made by another version of the code that this
    code can read (the same :func:`~feeds.store.schema.layout`): what an upgrade serves while
    its own index is built. Files are only looked at through a read-only connection."""
    ours = index_name(config)
    found: list[tuple[float, Path]] = []
    for path in state_dir.glob(f"index-{site_key(config)}-*.sqlite"):
        if path.name == ours or not _plain_file(path):
            continue
        info = _info(path)
        if info.get("layout") == layout() and info.get("complete") == "1":
            found.append((max(_mtime(path), _mtime(path.with_name(path.name + "-wal"))), path))
    return max(found)[1] if found else None


def remove_superseded(state_dir: Path, config: SiteConfig) -> list[Path]:
    """Delete this site's indexes made by other versions that no process has open any more.

    Only files this program made and marked (``uses``: every process holding it open holds its
    ``.use`` lock, shared) are deleted, and only while that lock can be taken exclusively; an
    index of a version before that mark is left for the operator (said once in the log)."""
    removed: list[Path] = []
    ours = index_name(config)
    for path in state_dir.glob(f"index-{site_key(config)}*.sqlite"):
        if path.name == ours or not _plain_file(path):
            continue
        if _info(path).get("uses") != "1":
            log.info("index %s was made by an earlier version of feeds; delete it by hand when no "
                     "server of that version runs", path)  # fmt: skip
            continue
        with (
            LockFile(_beside(path, "use")).hold(wait=False) as free,
            LockFile(_beside(path, "lock")).hold(wait=False) as unbuilt,
        ):
            if not (free and unbuilt):
                continue
            for suffix in ("-wal", "-shm", ""):
                _unlink_plain(path.with_name(path.name + suffix))
            removed.append(path)
        for name in ("lock", "check", "write", "use"):
            _unlink_plain(_beside(path, name))
    if removed:
        names = ", ".join(p.name for p in removed)
        log.info("deleted %d index file(s) of earlier versions: %s", len(removed), names)
    return removed


def _beside(path: Path, name: str) -> Path:
    return path.with_name(f"{path.name}.{name}")


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _unlink_plain(path: Path) -> None:
    if _plain_file(path):
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not delete %s: %s", path, exc)


def _info(path: Path) -> dict[str, str]:
    """An index's ``info`` table read through a read-only connection; {} if it is not ours."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except (sqlite3.Error, ValueError, OSError):
        return {}
    try:
        if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            return {}
        return {str(k): str(v) for k, v in db.execute("SELECT key, value FROM info")}
    except sqlite3.Error:
        return {}
    finally:
        db.close()


@dataclass(frozen=True)
class Applied:
    """What one batch changed: paths whose entry readers see differently, and any write at all."""

    visible: tuple[str, ...]
    wrote: bool


class IndexStore:
    """One index file, or a private one standing in for it "in memory"."""

    def __init__(self, path: Path | None, *, given: Mapping[str, Meta] | None = None) -> None:
        """Open ``path`` (None: a private file); :class:`StoreError` if it cannot be used."""
        self.path = path  # None: private, shared with nobody
        self.file = path if path is not None else private_folder(self) / "index.sqlite"
        # Held shared while open, before the file is: an index of an earlier version is deleted
        # only once nobody holds it (remove_superseded).
        self._use = LockFile(_beside(self.file, "use")).share() if path is not None else None
        try:
            self._db = connect(self.file, cache_kib=CACHE_KIB)
        except BaseException:
            self._release_use()
            raise
        self._pid = os.getpid()
        try:
            self._check_ours()
            self._db.execute("PRAGMA journal_mode = WAL")  # only ever on our own (or an empty) file
        except (sqlite3.Error, StoreError) as exc:
            self._db.close()
            self._release_use()
            raise failure(exc, self.file, "opening") from None
        self._pool = Pool(self.file, CACHE_KIB)
        self._decoder = Decoder()
        self._positions = Positions()  # where archive pages begin, per state of the index
        self._given = dict(given or {})
        self._suspects: set[str] = set()
        self._suspects_lock = threading.Lock()  # held for a set operation only
        self._holding = False  # the writer holds the write lock (see writing())
        self._locks = {
            name: LockFile(self.file.with_name(f"{self.file.name}.{name}"))
            for name in ("lock", "check", "write")
        }

    @classmethod
    def open(cls, path: Path | None) -> tuple[IndexStore, str | None]:
        """The index at ``path``, or a private one if that file cannot be used, and why."""
        if path is None:
            return cls(None), None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return cls(path), None
        except (OSError, StoreError) as exc:
            reason = str(failure(exc, path, "opening"))
            log.warning(
                "index not usable, kept in memory instead: %s (delete the file to let feeds rebuild it)",
                reason,
            )
            return cls(None), reason

    @property
    def db(self) -> sqlite3.Connection:
        """The writer's connection: a worker forked from a preloaded app opens its own."""
        if self._pid != os.getpid():
            self._db, self._pid = connect(self.file, cache_kib=CACHE_KIB), os.getpid()  # the parent's stays
        return self._db

    def _check_ours(self) -> None:
        app = self._db.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app not in (0, APPLICATION_ID) or (app == 0 and tables):
            raise Unusable(f"{self.file} is not a feeds index; left untouched")

    # -- locks shared with the other workers ----------------------------------------------------

    def exclusive(self) -> AbstractContextManager[bool]:
        """Of workers starting together, one builds the index while the others wait."""
        return self._locks["lock"].hold(wait=True)

    def first_to_check(self) -> AbstractContextManager[bool]:
        """True for one process at a time: it compares the files with the index for all."""
        return self._locks["check"].hold(wait=False)

    def waiting_to_check(self) -> AbstractContextManager[bool]:
        """The check lock, waited for: taken once no other process is checking."""
        return self._locks["check"].hold(wait=True)

    # -- building -----------------------------------------------------------------------------

    def ready(self, key: str) -> bool:
        """True if the file holds a complete index made for ``key`` by this code."""
        try:
            db = self.db
            app = db.execute("PRAGMA application_id").fetchone()[0]
            fmt = db.execute("PRAGMA user_version").fetchone()[0]
            names = {row[0]: row[1] for row in db.execute("SELECT name, type FROM sqlite_master")}
            info = dict(db.execute("SELECT key, value FROM info").fetchall()) if "info" in names else {}
        except sqlite3.Error:
            return False
        return (
            app == APPLICATION_ID
            and fmt == format_version()
            and TABLE_NAMES <= names.keys()
            and INDEX_NAMES <= names.keys()
            and info.get("config") == key
            and info.get("complete") == "1"
        )

    def serves(self) -> bool:
        """True if the file holds a complete index this code can read (any version's parsing)."""
        return self.info("complete") == "1" and self.info("layout") == layout()

    def info(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row and isinstance(row[0], str) else None

    def set_info(self, key: str, value: str) -> None:
        with self.writing(), transaction(self.db, self.file, "writing to") as db:
            db.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, value))

    def reset(self, key: str) -> None:
        """Empty the index for a bulk load under ``key`` (our own file only)."""
        with transaction(self.db, self.file, "resetting") as db:
            self._check_ours()
            writes.reset(db, key, format_version())
        self._positions.clear()

    def insert(self, rows: Iterable[tuple[str, Record]]) -> None:
        """Bulk load: rows of files nothing derived yet depends on (see :meth:`finish`)."""
        with transaction(self.db, self.file, "loading") as db:
            writes.insert(db, rows)

    @staticmethod
    def append(file: Path, rows: Iterable[tuple[str, Record]]) -> None:
        """Bulk load from a parser process: rows written into the file being built."""
        db = connect(file, cache_kib=CACHE_KIB)
        try:
            with transaction(db, file, "loading") as tx:
                writes.insert(tx, rows)
        finally:
            db.close()

    def finish(self, first_seen: writes.FirstSeen) -> None:
        """After a bulk load: date articles without a date, derive the tables, mark it complete."""
        # The sorts of the indexes built here outgrow the page cache at a million articles;
        # SQLite then merges their runs on a thread per core (a fifth of the time, measured).
        self.db.execute(f"PRAGMA threads = {min(os.cpu_count() or 1, 8)}")
        try:
            with transaction(self.db, self.file, "loading") as db:
                writes.finish(db, first_seen)
        finally:
            self.db.execute("PRAGMA threads = 0")
        try:
            # Statistics from a sample of each index (SQLite's advice for large databases): the
            # planner's choices stand on the same proportions, a hundredth of the time at a million.
            self.db.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
            self.db.execute("ANALYZE")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a bulk load logs as much as the index
        except sqlite3.Error as exc:
            log.warning("index: %s", failure(exc, self.file, "tidying up"))

    def set_teasers(self, found: Iterable[tuple[str, int, str | None, int]]) -> None:
        """After a bulk load: the summaries' digests of (path, body digest, summary given in front
        matter, summary digest), for rows whose body and given summary are still those (nothing
        derived depends on them)."""
        with transaction(self.db, self.file, "loading") as db:
            db.executemany(
                "UPDATE files SET teaser = ? WHERE path = ? AND body_digest = ? AND summary IS ? "
                "AND teaser = 0",
                [(teaser, rel, body, summary) for rel, body, summary, teaser in found],
            )

    @classmethod
    def of(cls, config: SiteConfig, metas: Iterable[Meta]) -> IndexStore:
        """A private index of articles already in memory (tests, tools); no files are read."""
        given = {m.path: m for m in metas}
        store = cls(None, given=given)
        store.reset(config_key(config))
        store.insert((m.path, Record(m, m.version)) for m in given.values())
        store.finish(lambda ids: {})
        return store

    # -- changes ------------------------------------------------------------------------------

    def apply(self, batch: Mapping[str, Record | None]) -> Applied:
        """Take in files as just read (None: gone), in one transaction: seen whole or not at all.

        A file that stops parsing or cannot be read for a moment keeps its last good version
        until a complete one is read, so readers never see a truncated or missing entry. Every
        worker takes in the same change: the first writes it, the others find the row already as
        they would write it and leave it. Raises :class:`StoreError` (nothing written).
        """
        visible: list[str] = []
        wrote = False
        with self.writing(), transaction(self.db, self.file, "writing to") as db:
            for rel, given in sorted(batch.items()):
                record = given if is_article_path(rel) else None
                with self._suspects_lock:
                    self._suspects.discard(rel)
                self._given.pop(rel, None)
                old = writes.stored(db, rel)
                if record is None:
                    if old is not None:
                        writes.put(db, rel, None)
                        visible.append(rel)
                        wrote = True
                    continue
                if record.meta is None and record.retry:
                    kept = self._last_good(old)
                    if kept is not None:
                        note = Problem(rel, None, KEEP_NOTE)
                        record = Record(kept.meta, kept.stamp, (*record.problems, note), retry=True)
                new = encode(rel, record)
                if new == old:
                    continue
                writes.put(db, rel, record)
                wrote = True
                if old is None or tuple(old[i] for i in _VISIBLE) != tuple(new[i] for i in _VISIBLE):
                    visible.append(rel)
            if wrote:
                writes.prune_journal(db)
        return Applied(tuple(visible), wrote)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """The write lock shared with the other workers (``.write``), held by this process's
        writer across reading files and writing them, so that one worker reads a version for all."""
        if self._holding:
            yield
            return
        with self._locks["write"].hold():
            self._holding = True
            try:
                yield
            finally:
                self._holding = False

    def versions(self, paths: Iterable[str]) -> dict[str, tuple[int, int, bool]]:
        """(size, mtime_ns, whether it is to be read again) of the rows of ``paths``, as stored."""
        rows = self.db.execute(
            "SELECT path, size, mtime_ns, retry FROM files WHERE path IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(set(paths))),),
        ).fetchall()
        return {
            rel: (size, mtime, bool(retry))
            for rel, size, mtime, retry in rows
            if isinstance(rel, str) and type(size) is int and type(mtime) is int
        }

    def teasers(self, paths: Iterable[str]) -> dict[str, tuple[int, str | None, int]]:
        """(body digest, summary given in front matter, summary digest) of the rows of ``paths``
        that have them, as stored (a summary digest of 0 is unknown)."""
        rows = self.db.execute(
            "SELECT path, body_digest, summary, teaser FROM files WHERE id IS NOT NULL "
            "AND path IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(set(paths))),),
        ).fetchall()
        return {
            rel: (body, summary, teaser)
            for rel, body, summary, teaser in rows
            if isinstance(rel, str)
            and type(body) is int
            and type(teaser) is int
            and (summary is None or isinstance(summary, str))
        }

    def _last_good(self, old: tuple[object, ...] | None) -> Record | None:
        if old is None:
            return None
        try:
            record = self._decoder.record(dict(zip(NAMES, old, strict=True)))
        except Malformed:
            return None
        return record if record.meta is not None else None

    def data_version(self) -> int:
        """Moves when another process commits to the file (not for this connection's own writes)."""
        try:
            return int(self.db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return 0

    def suspect(self, rel: str) -> None:
        """A reader found ``rel``'s row malformed or its file unreadable: the writer reads it again."""
        with self._suspects_lock:
            if len(self._suspects) < 100_000:
                self._suspects.add(rel)

    def take_suspects(self) -> list[str]:
        with self._suspects_lock:
            found, self._suspects = sorted(self._suspects), set()
        return found

    # -- reading ------------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Reader]:
        """A reader over one snapshot of the index; raises :class:`StoreError` if it fails."""
        with self._pool.reading() as db:
            db.row_factory = sqlite3.Row
            yield Reader(db, self._decoder, self._given, self.suspect, self._positions)

    def stamps(self, validate: bool = True) -> Iterator[tuple[str, int, int, bool]]:
        """Every file's (path, size, mtime_ns, has metadata) by path; size -1 asks for a read
        (with ``validate``, also of every row that would not decode: see :meth:`Reader.stamps`).

        Read in batches, so a million rows never sit in memory at once.
        """
        after = ""
        while True:
            with self.read() as reader:
                rows = reader.stamps(after, STAMPS_BATCH, validate)
            with self._suspects_lock:
                suspects = set(self._suspects)
            for path, size, mtime_ns, has_meta in rows:
                yield (path, -1 if path in suspects else size, mtime_ns, has_meta)
            if len(rows) < STAMPS_BATCH:
                return
            after = rows[-1][0]

    def batches(self, read: Callable[[Reader, A | None], tuple[list[T], A | None]]) -> Iterator[T]:
        """Items of a keyset walk, one read transaction per batch (the walk may be a million long)."""
        after: A | None = None
        while True:
            with self.read() as reader:
                items, after = read(reader, after)
            yield from items
            if after is None:
                return

    # -- standing in ------------------------------------------------------------------------

    def to_private(self) -> IndexStore:
        """A private copy of this index, to go on with while the state folder takes no writes."""
        copy = IndexStore(None, given=self._given)
        try:
            self.db.backup(copy.db)
        except sqlite3.Error as exc:
            copy.close()
            raise failure(exc, self.file, "copying") from None
        return copy

    def close(self) -> None:
        self._pool.close()
        if self._pid == os.getpid():
            self._db.close()
            self._release_use()

    def _release_use(self) -> None:
        if self._use is not None:
            os.close(self._use)
            self._use = None
