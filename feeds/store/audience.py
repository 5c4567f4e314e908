"""Subscribers per feed, source and day, shared by all workers: ``audience.sqlite`` in the state folder.

Four tables, each bounded:

* ``keys``: one random 32-byte secret per day (UTC), made by the first worker to need it, so all
  workers hash a reader alike; deleted once the day is over, so that day's hashes can no longer be
  linked to an address and User-Agent by anyone, the operator included;
* ``visitors``: the hashes of the day's direct readers, per feed; at most :data:`VISITORS` a day
  (past that, further readers are not counted that day, and one line is logged); deleted with
  the key;
* ``reports``: the latest report per (day, feed, source, feed id), at most
  :data:`~feeds.audience.FEED_IDS` feed ids per feed, source and day; kept two days (a report
  still counts the day after);
* ``counts``: subscribers per (day, feed, source, seen by): ``server`` (the requests the workers
  saw, written after each batch) or ``log`` (``feeds stats --log``, the larger count kept when a
  log is read again); kept :data:`KEEP_DAYS` days. Readers of the counts get, per day, feed and
  source, the larger of the two.

A file that cannot be used (a symlink, not ours, a read-only folder) leaves the counts in memory
for this process, with one log line; a write that fails drops that batch and logs why, once,
until writes work again. Nothing here ever raises into a request. Every value read back is
checked, and a forged or damaged row is ignored with one log line.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from ..audience import DIRECT, FEED_IDS, MAX_SUBSCRIBERS, SOURCES, fetcher_totals
from .sqlite import StoreError, failure, open_state_file, transaction

log = logging.getLogger(__name__)

APPLICATION_ID = 0x46454541  # marks the file as a feeds audience file (PRAGMA application_id)
KEEP_DAYS = 400
VISITORS = 250_000  # direct readers counted per day, all feeds together
SERVER, LOG = "server", "log"
KEY_BYTES = 32
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,199}")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS keys (day TEXT PRIMARY KEY, key BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS visitors (day TEXT NOT NULL, feed TEXT NOT NULL, visitor BLOB NOT NULL, "
    "PRIMARY KEY (day, feed, visitor)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS reports (day TEXT NOT NULL, feed TEXT NOT NULL, source TEXT NOT NULL, "
    "feed_id TEXT NOT NULL, subscribers INTEGER NOT NULL, seen INTEGER NOT NULL, "
    "PRIMARY KEY (day, feed, source, feed_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS counts (day TEXT NOT NULL, feed TEXT NOT NULL, source TEXT NOT NULL, "
    "seen_by TEXT NOT NULL, subscribers INTEGER NOT NULL, PRIMARY KEY (day, feed, source, seen_by)) "
    "WITHOUT ROWID",
)
Counts = dict[tuple[date, str, str], int]  # (day, feed, source) -> subscribers
ReportRow = tuple[str, str, str, int, int]  # feed, source, feed id, subscribers, seen (epoch seconds)


class AudienceStore:
    """The audience file of one state folder (``path``), or counts in memory (``None``).

    Thread-safe: one connection, used under ``_lock`` for one statement or transaction, opened
    on first use (commands that never count readers never create the file) and again in a
    process forked from the one that opened it.
    """

    def __init__(self, path: Path | None, *, scratch: bool = False) -> None:
        self._path = path
        self._scratch = scratch  # a private temporary file: feeds stats --log counts a log in one
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._orphans: list[sqlite3.Connection] = []  # a parent's connection, never closed here
        self._warned: set[str] = set()
        self._full: set[str] = set()  # days whose direct readers reached VISITORS
        self.problem: str | None = None  # why the counts are not (or not all) in the file

    @classmethod
    def scratch(cls) -> AudienceStore:
        """Counts in a private temporary file, removed when closed (SQLite's temporary database)."""
        return cls(None, scratch=True)

    # -- the connection ---------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """The connection (under ``_lock``): opened on first use, and anew after a fork."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            if self._db is not None:
                self._orphans.append(self._db)
                self._db = None
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        if self._path is not None:
            try:
                return _open(self._path)
            except (OSError, StoreError) as exc:
                self.problem = str(failure(exc, self._path, "opening"))
                log.warning(
                    "audience file unusable (%s); subscriber counts are kept in memory by this process only",
                    self.problem,
                )
        db = sqlite3.connect(
            "" if self._scratch else ":memory:", isolation_level=None, check_same_thread=False
        )
        for statement in _SCHEMA:
            db.execute(statement)
        return db

    @contextmanager
    def _writing(self, doing: str) -> Iterator[sqlite3.Connection | None]:
        """A write transaction, or None (logged) when it cannot be had; never raises a StoreError."""
        try:
            db = self._conn()
            with transaction(db, self._path, doing) as db:
                yield db
            self._problem(None)
        except (sqlite3.Error, StoreError) as exc:
            self._problem(str(failure(exc, self._path, doing)))

    def _problem(self, problem: str | None) -> None:
        if problem is not None and problem != self.problem:
            log.warning("audience: %s; these subscriber counts are lost", problem)
        self.problem = problem

    def _bad_row(self, what: str) -> None:
        if what not in self._warned and len(self._warned) < 1000:
            self._warned.add(what)
            log.warning("audience: ignoring a malformed row (%s)", what)

    # -- writing ----------------------------------------------------------------------------------

    def key(self, day: date) -> bytes:
        """The day's secret: the same in every worker, made by the first to ask for it."""
        with self._lock, self._writing("writing the day's key to") as db:
            if db is not None:
                iso = day.isoformat()
                db.execute(
                    "DELETE FROM keys WHERE day = ? AND (typeof(key) != 'blob' OR length(key) != ?)",
                    (iso, KEY_BYTES),
                )
                db.execute(
                    "INSERT OR IGNORE INTO keys (day, key) VALUES (?, ?)",
                    (iso, secrets.token_bytes(KEY_BYTES)),
                )
                found = db.execute("SELECT key FROM keys WHERE day = ?", (iso,)).fetchone()
                return bytes(found[0])
        return secrets.token_bytes(KEY_BYTES)  # nothing to share it with: good for this batch only

    def record(self, day: date, visitors: Iterable[tuple[str, bytes]], reports: Iterable[ReportRow]) -> None:
        """Add a batch of the day's sightings (direct readers by feed, fetchers' reports) and,
        if that changed anything, bring the day's ``server`` counts up to date; one transaction."""
        iso = day.isoformat()
        with self._lock, self._writing("writing to") as db:
            if db is None:
                return
            before = db.total_changes
            rows = [(iso, feed, hashed) for feed, hashed in visitors]
            if rows:
                room = (
                    VISITORS - db.execute("SELECT count(*) FROM visitors WHERE day = ?", (iso,)).fetchone()[0]
                )
                if len(rows) > room and iso not in self._full:
                    self._full.add(iso)
                    log.warning(
                        "audience: %s has %d direct readers; more are not counted that day", iso, VISITORS
                    )
                db.executemany(
                    "INSERT OR IGNORE INTO visitors (day, feed, visitor) VALUES (?, ?, ?)",
                    rows[: max(room, 0)],
                )
            changed = db.total_changes > before
            for feed, source, feed_id, subscribers, seen in reports:
                key = (iso, feed, source, feed_id)
                old = db.execute(
                    "SELECT subscribers FROM reports WHERE day = ? AND feed = ? AND source = ? "
                    "AND feed_id = ?",
                    key,
                ).fetchone()
                before = db.total_changes
                db.execute(
                    "INSERT INTO reports (day, feed, source, feed_id, subscribers, seen) "
                    "SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE (SELECT count(*) FROM reports "
                    "WHERE day = ?1 AND feed = ?2 AND source = ?3) < ?7 OR EXISTS (SELECT 1 FROM reports "
                    "WHERE day = ?1 AND feed = ?2 AND source = ?3 AND feed_id = ?4) "
                    "ON CONFLICT (day, feed, source, feed_id) DO UPDATE SET "
                    "subscribers = excluded.subscribers, seen = excluded.seen "
                    "WHERE excluded.seen >= reports.seen",
                    (*key, subscribers, seen, FEED_IDS),
                )
                changed |= db.total_changes > before and (old is None or old[0] != subscribers)
            if changed:  # a reader polling again, or a fetcher saying the same, changes nothing
                self._refresh(db, day)

    def refresh(self, day: date) -> None:
        """Work out the day's ``server`` counts again (after reports of the day before came in)."""
        with self._lock, self._writing("writing to") as db:
            if db is not None:
                self._refresh(db, day)

    def _refresh(self, db: sqlite3.Connection, day: date) -> None:
        totals = self._live(db, day)
        db.execute("DELETE FROM counts WHERE day = ? AND seen_by = ?", (day.isoformat(), SERVER))
        db.executemany(
            "INSERT INTO counts (day, feed, source, seen_by, subscribers) VALUES (?, ?, ?, ?, ?)",
            [(day.isoformat(), feed, source, SERVER, n) for (feed, source), n in sorted(totals.items())],
        )

    def _live(self, db: sqlite3.Connection, day: date) -> dict[tuple[str, str], int]:
        """The day's counts from its direct readers and the reports of it and the day before."""
        totals: dict[tuple[str, str], int] = {}
        for feed, n in db.execute(
            "SELECT feed, count(*) FROM visitors WHERE day = ? GROUP BY feed", (day.isoformat(),)
        ):
            if isinstance(feed, str) and _NAME.fullmatch(feed):
                totals[feed, DIRECT] = n
            else:
                self._bad_row("visitors")
        rows = []
        before = (day - timedelta(days=1)).isoformat()
        for row in db.execute(
            "SELECT day, feed, source, feed_id, subscribers FROM reports WHERE day IN (?, ?)",
            (before, day.isoformat()),
        ):
            checked = _report(row)
            if checked is None:
                self._bad_row("reports")
            else:
                rows.append(checked)
        totals.update(fetcher_totals(rows, day))
        return totals

    def merge(self, counts: Mapping[tuple[date, str, str], int], seen_by: str = LOG) -> None:
        """Counts worked out elsewhere (an access log): per day, feed and source the larger is kept,
        so reading a log again, or a longer copy of it, never counts a reader twice."""
        with self._lock, self._writing("writing to") as db:
            if db is not None:
                db.executemany(
                    "INSERT INTO counts (day, feed, source, seen_by, subscribers) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (day, feed, source, seen_by) DO UPDATE SET "
                    "subscribers = max(subscribers, excluded.subscribers)",
                    [
                        (d.isoformat(), feed, source, seen_by, n)
                        for (d, feed, source), n in sorted(counts.items())
                    ],
                )

    def settle(self, today: date) -> None:
        """Forget what is no longer needed: past days' keys and readers (their counts are written),
        reports older than yesterday's, counts older than :data:`KEEP_DAYS` days."""
        with self._lock, self._writing("writing to") as db:
            if db is not None:
                iso = today.isoformat()
                db.execute("DELETE FROM keys WHERE day < ?", (iso,))
                db.execute("DELETE FROM visitors WHERE day < ?", (iso,))
                db.execute("DELETE FROM reports WHERE day < ?", ((today - timedelta(days=1)).isoformat(),))
                db.execute(
                    "DELETE FROM counts WHERE day <= ?", ((today - timedelta(days=KEEP_DAYS)).isoformat(),)
                )
                self._full = {d for d in self._full if d >= iso}

    # -- reading ----------------------------------------------------------------------------------

    def counts(self, seen_by: str | None = None) -> Counts:
        """Every stored count (of one origin, or the larger of both per day, feed and source)."""
        found: Counts = {}
        with self._lock:
            try:
                db = self._conn()
                rows = db.execute("SELECT day, feed, source, seen_by, subscribers FROM counts").fetchall()
            except (sqlite3.Error, StoreError) as exc:
                self._problem(str(failure(exc, self._path, "reading")))
                return found
        for row in rows:
            checked = _count(row)
            if checked is None:
                self._bad_row("counts")
                continue
            key, origin, n = checked
            if seen_by is None or origin == seen_by:
                found[key] = max(found.get(key, 0), n)
        return found

    def current(self, today: date) -> dict[tuple[str, str], int]:
        """Subscribers per (feed, source) today: the readers seen so far today and every report
        of today or yesterday, or what a log said of today if that is more."""
        with self._lock:
            try:
                db = self._conn()
                db.execute("BEGIN")
                try:
                    totals = self._live(db, today)
                    rows = db.execute(
                        "SELECT day, feed, source, seen_by, subscribers FROM counts WHERE day = ?",
                        (today.isoformat(),),
                    ).fetchall()
                finally:
                    db.execute("COMMIT")
            except (sqlite3.Error, StoreError) as exc:
                self._problem(str(failure(exc, self._path, "reading")))
                return {}
        for row in rows:
            checked = _count(row)
            if checked is not None:
                (_, feed, source), _, n = checked
                totals[feed, source] = max(totals.get((feed, source), 0), n)
        return totals

    def close(self) -> None:
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None


def _day(value: object) -> date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _subscribers(value: object) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_SUBSCRIBERS else None


def _report(row: tuple[object, ...]) -> tuple[date, str, str, str, int] | None:
    day, feed, source, feed_id, subscribers = row
    d, n = _day(day), _subscribers(subscribers)
    if d is None or n is None or not isinstance(feed, str) or not _NAME.fullmatch(feed):
        return None
    if (
        source not in SOURCES
        or source == DIRECT
        or not isinstance(source, str)
        or not isinstance(feed_id, str)
    ):
        return None
    return d, feed, source, feed_id, n


def _count(row: tuple[object, ...]) -> tuple[tuple[date, str, str], str, int] | None:
    day, feed, source, seen_by, subscribers = row
    d, n = _day(day), _subscribers(subscribers)
    if d is None or n is None or not isinstance(feed, str) or not _NAME.fullmatch(feed):
        return None
    if not isinstance(source, str) or source not in SOURCES or seen_by not in (SERVER, LOG):
        return None
    return (d, feed, source), str(seen_by), n


def _open(path: Path) -> sqlite3.Connection:
    return open_state_file(path, _SCHEMA, APPLICATION_ID, "a feeds audience file")
