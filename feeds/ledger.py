"""What the site has promised readers, kept across restarts and shared by all workers.

Two promises live here: each document's Last-Modified, which never goes backwards, and the date
each article without a ``date`` was first seen, which its place in every feed depends on. Unlike
the article index, this is state, not a cache: deleting it costs readers (dates move), so it is
kept in a small SQLite file in the state folder, and in memory when that is unusable. It also
records which version of each document was last announced to WebSub hubs, so that a change is
announced by one worker only (:meth:`Ledger.claim_change`).

Last-Modified that never goes backwards and is the same in every process.

A document's natural Last-Modified is the newest ``updated`` among its entries. When the newest
entry is deleted or un-published the bytes change but that date moves *back*, and a reader that
sends only If-Modified-Since would keep getting 304 for a document it never saw. The ledger
remembers, per document, the ETags served and their Last-Modified in a small SQLite file that
all worker processes share, so a changed document always gets a later date, and every process
(and every restart) answers with the same one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS versions (key TEXT NOT NULL, etag TEXT NOT NULL, lm INTEGER NOT NULL, "
    "seq INTEGER NOT NULL, PRIMARY KEY (key, etag))",
    "CREATE TABLE IF NOT EXISTS first_seen (id TEXT PRIMARY KEY, seen INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS announced (key TEXT PRIMARY KEY, etag TEXT NOT NULL)",
)
APPLICATION_ID = 0x46454543  # marks the file as a feeds ledger (PRAGMA application_id)
KEEP = 50  # versions remembered per document


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


class Ledger:
    """Each document's versions (ETag -> Last-Modified), shared by all worker processes.

    Kept in SQLite in the state folder; in memory if the file is unusable. Workers that see a
    burst of changes in different steps may stamp different intermediate versions; because
    every worker re-reads the date of the ETag it serves (:meth:`lookup`), they converge.
    """

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, dict[str, tuple[int, int]]] = {}  # key -> etag -> (lm, seq)
        self._seen: dict[str, int] = {}  # article id -> first seen (epoch seconds), without SQLite
        self._announced: dict[str, str] = {}  # key -> etag last announced, without SQLite
        self._seq = 0
        self._db: sqlite3.Connection | None = None
        if path is not None:
            try:
                self._db = _open(path)
            except (OSError, sqlite3.Error, _Foreign) as exc:
                log.warning(
                    "ledger %s unusable (%s); Last-Modified and first-seen dates are kept in memory "
                    "only, so they may differ between processes and restarts",
                    path,
                    exc,
                )

    def stamp(self, key: str, etag: str, natural: datetime, now: datetime) -> datetime:
        """Record ``etag`` as the document's latest version; its Last-Modified."""
        natural_s, now_s = int(natural.timestamp()), int(now.timestamp())
        with self._lock:
            lm = (
                self._stamp_db(key, etag, natural_s, now_s)
                if self._db
                else self._stamp_memory(key, etag, natural_s, now_s)
            )
        return datetime.fromtimestamp(lm, UTC)

    def lookup(self, key: str, etag: str) -> datetime | None:
        """The Last-Modified recorded for ``etag``, as another worker may have moved it."""
        with self._lock:
            if self._db is None:
                found = self._memory.get(key, {}).get(etag)
                lm = found[0] if found else None
            else:
                try:
                    row = self._db.execute(
                        "SELECT lm FROM versions WHERE key = ? AND etag = ?", (key, etag)
                    ).fetchone()
                except sqlite3.Error:
                    return None
                lm = row[0] if row else None
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

    def _stamp_db(self, key: str, etag: str, natural: int, now: int) -> int:
        assert self._db is not None
        db = self._db
        try:
            with _immediate(db):
                row = db.execute(
                    "SELECT etag, lm, seq FROM versions WHERE key = ? ORDER BY seq DESC LIMIT 1", (key,)
                ).fetchone()
                lm = decide((row[0], row[1]) if row else None, etag, natural, now)
                if row is None or row[0] != etag:
                    seq = (row[2] if row else 0) + 1
                    db.execute(
                        "INSERT OR REPLACE INTO versions (key, etag, lm, seq) VALUES (?, ?, ?, ?)",
                        (key, etag, lm, seq),
                    )
                    db.execute("DELETE FROM versions WHERE key = ? AND seq <= ?", (key, seq - KEEP))
            return lm
        except sqlite3.Error as exc:
            log.warning("validator ledger write failed (%s); using the natural date", exc)
            return natural

    def first_seen(self, ids: Iterable[str], now: datetime) -> dict[str, datetime]:
        """When each article was first seen; ids not seen before are seen ``now``.

        The first process to record an id wins, so every worker (and every restart) agrees.
        """
        wanted = set(ids)
        stamp = int(now.timestamp())
        with self._lock:
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
            known = {
                i: s
                for i, s in db.execute("SELECT id, seen FROM first_seen").fetchall()
                if i in wanted and isinstance(s, int)
            }
            missing = wanted - known.keys()
            if missing:
                with _immediate(db):
                    db.executemany(
                        "INSERT OR IGNORE INTO first_seen VALUES (?, ?)", [(i, stamp) for i in missing]
                    )
                    rows = db.execute(
                        "SELECT id, seen FROM first_seen WHERE id IN (SELECT value FROM json_each(?))",
                        (json.dumps(sorted(missing)),),
                    ).fetchall()
                known.update({i: s for i, s in rows if isinstance(s, int)})
            return known
        except sqlite3.Error as exc:
            log.warning("validator ledger: first-seen dates unavailable (%s); kept in memory", exc)
            return None

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
            if self._db is None:
                before = self._announced.get(key)
                self._announced[key] = etag
                return (before is not None or new) and before != etag
            db = self._db
            try:
                with _immediate(db):
                    row = db.execute("SELECT etag FROM announced WHERE key = ?", (key,)).fetchone()
                    if row is not None and row[0] == etag:
                        return False
                    db.execute("INSERT OR REPLACE INTO announced (key, etag) VALUES (?, ?)", (key, etag))
                return row is not None or new
            except sqlite3.Error as exc:
                log.warning("validator ledger: cannot record the change of %s (%s); not announced", key, exc)
                return False

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One writer at a time across processes; rolled back if anything fails."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class _Foreign(Exception):
    """The ledger file belongs to something else; it is left alone."""


def _open(path: Path) -> sqlite3.Connection:
    """Open (and on first use set up) the ledger; workers starting together take turns.

    Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at
    once instead of waiting: a worker that lost that race fell back to dates in memory, and then
    announced every change a second time. The set-up therefore runs under a lock file beside it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        db = sqlite3.connect(str(path), timeout=10, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA trusted_schema = OFF")  # a planted file's views and triggers run nothing
            _claim(db, path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
    return db


def _claim(db: sqlite3.Connection, path: Path) -> None:
    app = db.execute("PRAGMA application_id").fetchone()[0]
    if app == APPLICATION_ID:
        return
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app != 0 or not tables <= {"versions", "first_seen", "announced"}:
        raise _Foreign(f"{path} is not a feeds ledger; left untouched")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")  # an empty file, or ours from before
