"""What the site has promised readers, kept across restarts and shared by all workers.

Two promises live here: each document's Last-Modified, which never goes backwards, and the date
each article without a ``date`` was first seen, which its place in every feed depends on. Unlike
the article index, this is state, not a cache: deleting it costs readers (dates move), so it is
kept in a small SQLite file in the state folder, and in memory when that is unusable. It also
records which version of each document was last announced (:meth:`Ledger.claim_change`), so a
change is announced by one worker only.

A document's natural Last-Modified is the newest ``updated`` among its entries. When the newest
entry is deleted or un-published the bytes change but that date moves *back*, and a reader that
sends only If-Modified-Since would keep getting 304 for a document it never saw. The ledger
remembers, per document, the ETags served and their Last-Modified, so a changed document always
gets a later date, and every process (and every restart) answers with the same one.

Every value read back is checked (a whole number of seconds within the years a feed can carry);
a forged or damaged row is ignored with one log line and never reaches a reader. A write that
fails (a full disk, a read-only folder) falls back to memory for that promise and is reported by
:attr:`Ledger.problem` until a write succeeds again.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from .rows import YEARS
from .sqlite import LockFile, StoreError, failure, open_state_file, transaction

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS versions (key TEXT NOT NULL, etag TEXT NOT NULL, lm INTEGER NOT NULL, "
    "seq INTEGER NOT NULL, PRIMARY KEY (key, etag))",
    "CREATE TABLE IF NOT EXISTS first_seen (id TEXT PRIMARY KEY, seen INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS announced (key TEXT PRIMARY KEY, etag TEXT NOT NULL)",
)
APPLICATION_ID = 0x46454543  # marks the file as a feeds ledger (PRAGMA application_id)
KEEP = 50  # versions remembered per document
SEQ_MAX = 2**62


def decide(latest: tuple[str, int] | None, etag: str, natural: int, now: int) -> int:
    """The Last-Modified (epoch seconds) for ``etag``, given the document's latest version.

    The latest version keeps its date. Any other bytes, new or seen before, are a change for
    every reader holding the latest: they get the natural date if that is later, otherwise the
    moment the change was first seen, so that an If-Modified-Since reader never gets a 304 for
    bytes it does not hold.
    """
    if latest is None:
        return natural
    latest_etag, latest_lm = latest
    if latest_etag == etag:
        return latest_lm
    return natural if natural > latest_lm else max(now, latest_lm + 1)


def _seconds(value: object) -> int | None:
    """A stored date that a feed can carry, or None."""
    if type(value) is int and YEARS[0] <= value <= YEARS[1]:
        return value
    return None


class Leadership:
    """Which process announces changes for a state folder: the first to take its lock file
    keeps it until it closes this (or exits); the others' notifiers stay idle, and one of
    them takes over at the next change after the leader is gone. In memory: always this one."""

    def __init__(self, path: Path | None) -> None:
        self._lock = LockFile(path) if path is not None else None
        self._fd: int | None = None
        self._pid = os.getpid()
        self._leading = path is None

    def take(self) -> bool:
        """True if this process leads (now or already); a failed attempt costs one flock."""
        if self._pid != os.getpid():  # forked: the parent's lock stays the parent's
            self._pid, self._fd, self._leading = os.getpid(), None, self._lock is None
        if self._leading or self._lock is None:
            return True
        try:
            self._leading, self._fd = self._lock.take()
        except StoreError as exc:
            log.warning("notifier: %s; every worker announces for itself", exc)
            self._lock, self._leading = None, True
        return self._leading

    def release(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._leading = None, self._lock is None


class Ledger:
    """Each document's versions (ETag -> Last-Modified), shared by all worker processes.

    Kept in SQLite in the state folder; in memory if the file is unusable. Workers that see a
    burst of changes in different steps may stamp different intermediate versions; because
    every worker re-reads the date of the ETag it serves (:meth:`lookup`), they converge.
    Thread-safe: one connection, used under ``_lock`` for one statement or transaction.
    """

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, dict[str, tuple[int, int]]] = {}  # key -> etag -> (lm, seq)
        self._seen: dict[str, int] = {}  # article id -> first seen (epoch seconds), without SQLite
        self._announced: dict[str, str] = {}  # key -> etag last announced, without SQLite
        self._seq = 0
        self._db: sqlite3.Connection | None = None
        self._path = path
        self._warned: set[str] = set()
        self._pid = os.getpid()
        self._orphans: list[sqlite3.Connection] = []  # a parent's connection, never closed here
        self.problem: str | None = None  # why the last write did not reach the file
        if path is not None:
            try:
                self._db = _open(path)
            except (OSError, StoreError) as exc:
                reason = str(failure(exc, path, "opening"))
                self.problem = reason
                log.warning(
                    "ledger unusable (%s); Last-Modified and first-seen dates are kept in memory only, so "
                    "they may differ between processes and restarts",
                    reason,
                )

    @property
    def shared(self) -> Path | None:
        """The file other processes share these dates through; None while they are in memory."""
        with self._lock:
            return self._path if self._db is not None else None

    def _fresh(self) -> None:
        """A worker forked from a preloaded app opens its own connection (under ``_lock``)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        if self._db is not None and self._path is not None:
            self._orphans.append(self._db)
            try:
                self._db = _open(self._path)
            except (OSError, StoreError) as exc:
                self._db = None
                self._failed(exc, "opening")

    def _failed(self, exc: BaseException, doing: str) -> None:
        self.problem = str(failure(exc, self._path, doing))
        log.warning("ledger: %s; kept in memory", self.problem)

    def _bad_row(self, what: str) -> None:
        if what not in self._warned and len(self._warned) < 1000:
            self._warned.add(what)
            log.warning("ledger: ignoring a malformed row (%s)", what)

    def stamp(self, key: str, etag: str, natural: datetime, now: datetime) -> datetime:
        """Record ``etag`` as the document's latest version; its Last-Modified."""
        natural_s, now_s = int(natural.timestamp()), int(now.timestamp())
        with self._lock:
            self._fresh()
            lm = None
            if self._db is not None:
                lm = self._stamp_db(key, etag, natural_s, now_s)
            if lm is None:
                lm = self._stamp_memory(key, etag, natural_s, now_s)
        return datetime.fromtimestamp(lm, UTC)

    def lookup(self, key: str, etag: str) -> datetime | None:
        """The Last-Modified recorded for ``etag``, as another worker may have moved it."""
        with self._lock:
            self._fresh()
            lm: int | None = None
            if self._db is not None:
                try:
                    row = self._db.execute(
                        "SELECT lm FROM versions WHERE key = ? AND etag = ?", (key, etag)
                    ).fetchone()
                except sqlite3.Error:
                    row = None
                lm = _seconds(row[0]) if row else None
                if row and lm is None:
                    self._bad_row(f"versions of {key}")
            if lm is None:
                found = self._memory.get(key, {}).get(etag)
                lm = found[0] if found else None
        return datetime.fromtimestamp(lm, UTC) if lm is not None else None

    def _stamp_memory(self, key: str, etag: str, natural: int, now: int) -> int:
        versions = self._memory.setdefault(key, {})
        latest = max(versions.items(), key=lambda kv: kv[1][1], default=None)
        lm = decide((latest[0], latest[1][0]) if latest else None, etag, natural, now)
        if latest is None or latest[0] != etag:
            self._seq += 1
            versions[etag] = (lm, self._seq)
            if len(versions) > KEEP:
                del versions[min(versions, key=lambda e: versions[e][1])]
        return lm

    def _stamp_db(self, key: str, etag: str, natural: int, now: int) -> int | None:
        assert self._db is not None
        try:
            with transaction(self._db, self._path, "writing to") as db:
                row = db.execute(
                    "SELECT etag, lm, seq FROM versions WHERE key = ? ORDER BY seq DESC LIMIT 1", (key,)
                ).fetchone()
                latest = None
                if row is not None:
                    lm_, seq_ = _seconds(row[1]), row[2]
                    if (
                        lm_ is None
                        or not isinstance(row[0], str)
                        or type(seq_) is not int
                        or not 0 < seq_ < SEQ_MAX
                    ):
                        self._bad_row(f"versions of {key}")
                        db.execute("DELETE FROM versions WHERE key = ?", (key,))
                        row = None
                    else:
                        latest = (row[0], lm_)
                lm = decide(latest, etag, natural, now)
                if row is None or row[0] != etag:
                    seq = (row[2] if row else 0) + 1
                    db.execute(
                        "INSERT OR REPLACE INTO versions (key, etag, lm, seq) VALUES (?, ?, ?, ?)",
                        (key, etag, lm, seq),
                    )
                    db.execute("DELETE FROM versions WHERE key = ? AND seq <= ?", (key, seq - KEEP))
            self.problem = None
            return lm
        except StoreError as exc:
            self._failed(exc, "writing to")
            return None

    def first_seen(self, ids: Iterable[str], now: datetime) -> dict[str, datetime]:
        """When each article was first seen; ids not seen before are seen ``now``.

        The first process to record an id wins, so every worker (and every restart) agrees.
        """
        wanted = set(ids)
        stamp = int(now.timestamp())
        with self._lock:
            self._fresh()
            seen = self._first_seen_db(wanted, stamp) if self._db else None
            if seen is None:
                for article_id in wanted:
                    self._seen.setdefault(article_id, stamp)
                seen = {i: self._seen[i] for i in wanted}
        return {i: datetime.fromtimestamp(s, UTC) for i, s in seen.items()}

    def _first_seen_db(self, wanted: set[str], stamp: int) -> dict[str, int] | None:
        assert self._db is not None
        db = self._db
        try:
            known: dict[str, int] = {}
            for i, s in db.execute(
                "SELECT id, seen FROM first_seen WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(wanted)),),
            ).fetchall():
                if _seconds(s) is None:
                    self._bad_row(f"first_seen of {i!r}")
                    continue
                known[i] = s
            missing = wanted - known.keys()
            if missing:
                with transaction(db, self._path, "writing to"):
                    db.executemany(
                        "INSERT OR REPLACE INTO first_seen VALUES (?, ?)",
                        [(i, stamp) for i in sorted(missing) if not self._has_good(db, i)],
                    )
                    rows = db.execute(
                        "SELECT id, seen FROM first_seen WHERE id IN (SELECT value FROM json_each(?))",
                        (json.dumps(sorted(missing)),),
                    ).fetchall()
                known.update({i: s for i, s in rows if _seconds(s) is not None})
                self.problem = None
            return known
        except (sqlite3.Error, StoreError) as exc:
            self._failed(exc, "writing to")
            return None

    @staticmethod
    def _has_good(db: sqlite3.Connection, article_id: str) -> bool:
        """Another worker recorded it meanwhile (the first to record an id wins)."""
        row = db.execute("SELECT seen FROM first_seen WHERE id = ?", (article_id,)).fetchone()
        return row is not None and _seconds(row[0]) is not None

    def claim_change(self, key: str, etag: str, new: bool = False) -> bool:
        """Whether this process is the one to announce ``etag`` as the new version of ``key``.

        True exactly once per change, however many workers ask: the first to bring an ETag
        that differs from the one recorded records it and is told to announce; everyone
        bringing the recorded one is told not to. A key seen for the first time is recorded
        and not announced (nobody can have subscribed to a document that did not exist, and
        enabling notifications must not announce every document at once), unless ``new``: a
        document that appears while serving may have been cached as a 404.
        """
        with self._lock:
            self._fresh()
            if self._db is None:
                before = self._announced.get(key)
                self._announced[key] = etag
                return (before is not None or new) and before != etag
            try:
                with transaction(self._db, self._path, "writing to") as db:
                    row = db.execute("SELECT etag FROM announced WHERE key = ?", (key,)).fetchone()
                    if row is not None and row[0] == etag:
                        return False
                    db.execute("INSERT OR REPLACE INTO announced (key, etag) VALUES (?, ?)", (key, etag))
                self.problem = None
                return row is not None or new
            except StoreError as exc:
                self._failed(exc, "writing to")
                return False

    def probe(self) -> None:
        """Try a write, to learn whether the file takes writes again (clears :attr:`problem`)."""
        with self._lock:
            self._fresh()
            if self._db is None or self._path is None:
                return
            try:
                with transaction(self._db, self._path, "writing to") as db:
                    db.execute("INSERT OR REPLACE INTO announced (key, etag) VALUES ('feeds:probe', '')")
                self.problem = None
            except StoreError as exc:
                self.problem = str(exc)

    def leadership(self) -> Leadership:
        """The lock that makes one process of the state folder announce changes."""
        path = self._path.with_name(self._path.name + ".notify") if self._path and self._db else None
        return Leadership(path)

    def close(self) -> None:
        with self._lock:
            self._fresh()
            if self._db is not None:
                self._db.close()
                self._db = None


def _open(path: Path) -> sqlite3.Connection:
    return open_state_file(path, _SCHEMA, APPLICATION_ID, "a feeds ledger")
