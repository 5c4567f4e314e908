"""Last-Modified that never goes backwards and is the same in every process.

A document's natural Last-Modified is the newest ``updated`` among its entries. When the newest
entry is deleted or un-published the bytes change but that date moves *back*, and a reader that
sends only If-Modified-Since would keep getting 304 for a document it never saw. The ledger
remembers, per document, the last ETag served and its Last-Modified in a small SQLite file that
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
    "CREATE TABLE IF NOT EXISTS validators (key TEXT PRIMARY KEY, etag TEXT NOT NULL, lm INTEGER NOT NULL)"
)


def decide(previous: tuple[str, int] | None, etag: str, natural: int, now: int) -> int:
    """The Last-Modified (epoch seconds) for a document with ``etag``.

    Unchanged bytes keep their date; new bytes get the natural date unless that is not later
    than the previous one, in which case the moment the change was first seen.
    """
    if previous is None:
        return natural
    old_etag, old_lm = previous
    if old_etag == etag:
        return old_lm
    if natural > old_lm:
        return natural
    return max(now, old_lm + 1)


class Ledger:
    """Shared across processes through SQLite; falls back to memory if the file is unusable."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, tuple[str, int]] = {}
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
        natural_s, now_s = int(natural.timestamp()), int(now.timestamp())
        with self._lock:
            if self._db is None:
                lm = decide(self._memory.get(key), etag, natural_s, now_s)
                self._memory[key] = (etag, lm)
            else:
                lm = self._stamp_db(key, etag, natural_s, now_s)
        return datetime.fromtimestamp(lm, UTC)

    def _stamp_db(self, key: str, etag: str, natural: int, now: int) -> int:
        assert self._db is not None
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")  # one writer at a time across processes
            row = db.execute("SELECT etag, lm FROM validators WHERE key = ?", (key,)).fetchone()
            lm = decide(tuple(row) if row else None, etag, natural, now)  # type: ignore[arg-type]
            if row is None or tuple(row) != (etag, lm):
                db.execute(
                    "INSERT OR REPLACE INTO validators (key, etag, lm) VALUES (?, ?, ?)", (key, etag, lm)
                )
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
