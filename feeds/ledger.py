"""Last-Modified that never goes backwards and is the same in every process.

A document's natural Last-Modified is the newest ``updated`` among its entries. When the newest
entry is deleted or un-published the bytes change but that date moves *back*, and a reader that
sends only If-Modified-Since would keep getting 304 for a document it never saw. The ledger
remembers, per document, the ETags served and their Last-Modified in a small SQLite file that
all worker processes share, so a changed document always gets a later date, and every process
(and every restart) answers with the same one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS versions (key TEXT NOT NULL, etag TEXT NOT NULL, lm INTEGER NOT NULL, "
    "seq INTEGER NOT NULL, PRIMARY KEY (key, etag))"
)
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
        self._seq = 0
        self._db: sqlite3.Connection | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(path), timeout=10, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(_SCHEMA)
                self._db = db
            except (OSError, sqlite3.Error) as exc:
                log.warning(
                    "validator ledger %s unusable (%s); Last-Modified is kept in memory "
                    "only, so it may differ between processes",
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
            db.execute("BEGIN IMMEDIATE")  # one writer at a time across processes
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
            db.execute("COMMIT")
            return lm
        except sqlite3.Error as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.warning("validator ledger write failed (%s); using the natural date", exc)
            return natural

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
