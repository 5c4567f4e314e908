"""Sightings of feed readers: noted on the request path, counted in the background; and access logs.

Aggregators poll thousands of times a second, so a request for a feed document only appends
(label, address, User-Agent) to a bounded queue (:meth:`Sightings.note`, well under a
microsecond). A daemon thread of each worker (``feeds-audience``), started by the first sighting
(and again in a forked worker), takes the queue every :data:`FLUSH` seconds, keeps one of each
distinct sighting, reads the User-Agents (:func:`~feeds.audience.parse_agent`), hashes the direct
readers with the day's key and writes the batch to the audience file in one transaction. Past
:data:`PENDING` sightings between two flushes, further ones are dropped and counted (a flood
repeats the same readers; one line is logged). The sightings of the last second are lost when a
worker stops.

:func:`count_logs` counts the lines of access logs with the same rules, in a scratch file, and
:func:`read_log` reads one log (plain or gzip'ed, bounded lines).
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import stat
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from . import links
from .audience import (
    COUNTED_STATUSES,
    LOG_LINE_BYTES,
    Report,
    feed_key,
    parse_agent,
    parse_log_line,
    visitor,
)
from .store.audience import KEEP_DAYS, SERVER, AudienceStore, Counts, ReportRow

log = logging.getLogger(__name__)
FLUSH = 1.0  # seconds between two writes of a worker's sightings
PENDING = 32_768  # sightings kept between two flushes (about 8 MB at most)
AGENTS_KEPT = 4096  # User-Agents whose reading is remembered
SEEN_KEPT = 100_000  # readers a worker remembers having written today (to skip them)
LOG_BATCH = 20_000  # log lines counted per transaction of the scratch file
FEED = links.FEED.kind
Clock = Callable[[], datetime]
FeedOf = Callable[[str], tuple[str, str] | None]  # a request path -> (feed, format), if a feed document


class Batch:
    """The sightings of one day, reduced to what is stored: distinct readers (hashed with the
    day's ``key``) and the latest report per feed, source and feed id."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.visitors: set[tuple[str, bytes]] = set()
        self.reports: dict[tuple[str, str, str], tuple[int, int]] = {}

    def add(self, feed: str, fmt: str, address: str, agent: str, report: Report | None, seen: int) -> None:
        if report is None:
            self.visitors.add((feed, visitor(self.key, address, agent)))
            return
        key = (feed, report.source, feed_key(report, fmt))
        known = self.reports.get(key)
        if known is None or seen >= known[1]:
            self.reports[key] = (report.subscribers, seen)

    def report_rows(self) -> list[ReportRow]:
        return [(f, s, i, n, seen) for (f, s, i), (n, seen) in sorted(self.reports.items())]


class Agents:
    """What each User-Agent reports, read once per distinct value (clients send few)."""

    def __init__(self) -> None:
        self._known: dict[str, Report | None] = {}

    def __call__(self, agent: str) -> Report | None:
        try:
            return self._known[agent]
        except KeyError:
            pass
        if len(self._known) >= AGENTS_KEPT:
            self._known.clear()
        found = self._known[agent] = parse_agent(agent)
        return found


class Sightings:
    """One worker's sightings, and the thread that writes them to ``store``. Thread-safe."""

    def __init__(self, store: AudienceStore, clock: Clock) -> None:
        self.store = store
        self._clock = clock
        self._pending: deque[tuple[str, str, str]] = deque()
        self._dropped = 0  # sightings not queued since the last flush (approximate: no lock)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time: the thread's, close()'s, a test's
        self._day: date | None = None
        self._key = b""
        self._seen: set[tuple[str, bytes]] = set()  # readers of self._day already written
        self._agents = Agents()
        self._dropped_logged = -math.inf  # when the last line about dropped sightings was logged
        os.register_at_fork(after_in_child=_forked(weakref.ref(self)))

    def note(self, kind: str, label: str, environ: dict[str, Any]) -> None:
        """A request for a document of ``kind`` (``label``: ``alle.rss``); only feeds are noted."""
        if kind != FEED:
            return
        pending = self._pending
        if len(pending) >= PENDING:
            self._dropped += 1
            return
        pending.append((label, environ.get("REMOTE_ADDR") or "", environ.get("HTTP_USER_AGENT") or ""))
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                # The thread holds the Sightings weakly: dropped with its site, it ends its thread.
                args = (weakref.ref(self), self._stop)
                self._thread = threading.Thread(target=_run, args=args, name="feeds-audience", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Count what was noted so far (the thread does this every :data:`FLUSH` seconds)."""
        with self._flush_lock:
            pending = self._pending
            batch = {pending.popleft() for _ in range(len(pending))}
            dropped, self._dropped = self._dropped, 0
            now = self._clock()
            today = now.astimezone(UTC).date()
            if today != self._day:
                self.store.settle(today)
                self._day, self._key, self._seen = today, self.store.key(today), set()
            if dropped:
                self._log_dropped(dropped)
            if not batch:
                return
            counted = Batch(self._key)
            seen = int(now.timestamp())
            for label, address, agent in batch:
                feed, _, fmt = label.rpartition(".")
                counted.add(feed, fmt, address, agent, self._agents(agent), seen)
            new = counted.visitors - self._seen
            self.store.record(today, sorted(new), counted.report_rows())
            if len(self._seen) + len(new) > SEEN_KEPT:
                self._seen = set()
            self._seen |= new

    def _log_dropped(self, dropped: int) -> None:
        if time.monotonic() - self._dropped_logged > 60:
            self._dropped_logged = time.monotonic()
            log.warning(
                "audience: %d feed requests came faster than they could be counted; not counted", dropped
            )

    def current(self) -> dict[tuple[str, str], int]:
        """Subscribers per (feed, source) today (see :meth:`AudienceStore.current`)."""
        return self.store.current(self._clock().astimezone(UTC).date())

    def close(self) -> None:
        """Stop the thread and count what is left."""
        with self._start_lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        self.flush()
        self.store.close()

    def _forked(self) -> None:
        """In a forked worker: the parent's thread did not survive, and its queue is the parent's."""
        self._pending = deque()
        self._thread = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()


def _run(ref: weakref.ref[Sightings], stop: threading.Event) -> None:
    while not stop.wait(FLUSH):
        sightings = ref()
        if sightings is None:
            return
        try:
            sightings.flush()
        except Exception:  # a bug must not end the counting for good
            log.exception("audience: counting a batch of sightings failed")
        del sightings


def _forked(ref: weakref.ref[Sightings]) -> Callable[[], None]:
    def after_fork() -> None:
        sightings = ref()
        if sightings is not None:
            sightings._forked()

    return after_fork


# -- access logs ------------------------------------------------------------------------------------


@dataclass
class LogCount:
    """What :func:`count_logs` found: per-day counts, and how many lines it took and left."""

    counts: Counts = field(default_factory=dict)
    lines: int = 0
    counted: int = 0  # requests for a feed document, answered
    malformed: int = 0  # not in the combined format (or too long)
    outside: int = 0  # requests for a feed from days not kept (older than KEEP_DAYS, or ahead)
    days: tuple[date, date] | None = None  # first and last day of a counted request


def count_logs(files: Iterable[tuple[str, Iterable[str]]], feed_of: FeedOf, today: date) -> LogCount:
    """Count the readers in access logs as the server counts requests (per UTC day of each line).

    Every file of a day should be given in one call: the readers of two runs are not compared,
    and what the store keeps of a day is the larger of their counts. Each malformed line is
    skipped; one log line per file says how many.
    """
    result = LogCount()
    scratch = AudienceStore.scratch()
    agents = Agents()
    batches: dict[date, Batch] = {}
    try:
        for name, lines in files:
            malformed = result.malformed
            for line in lines:
                result.lines += 1
                parsed = parse_log_line(line.rstrip("\r\n"))
                if parsed is None:
                    result.malformed += 1
                    continue
                if parsed.method not in ("GET", "HEAD") or parsed.status not in COUNTED_STATUSES:
                    continue
                found = feed_of(parsed.path)
                if found is None:
                    continue
                day = parsed.at.date()
                if not today - timedelta(days=KEEP_DAYS) < day <= today:
                    result.outside += 1
                    continue
                batch = batches.get(day)
                if batch is None:
                    batch = batches[day] = Batch(scratch.key(day))
                batch.add(
                    *found, parsed.address, parsed.agent, agents(parsed.agent), int(parsed.at.timestamp())
                )
                result.counted += 1
                first, last = result.days or (day, day)
                result.days = (min(first, day), max(last, day))
                if result.counted % LOG_BATCH == 0:
                    _write(scratch, batches)
            if result.malformed > malformed:
                log.warning(
                    "%s: %d lines are not in the combined log format; skipped",
                    name,
                    result.malformed - malformed,
                )
        _write(scratch, batches)
        if result.days is not None:
            day, last = result.days[0], min(result.days[1] + timedelta(days=1), today)
            while day <= last:  # a report also counts the next day: every day again, in order
                scratch.refresh(day)
                day += timedelta(days=1)
        result.counts = scratch.counts(SERVER)
    finally:
        scratch.close()
    return result


def _write(scratch: AudienceStore, batches: dict[date, Batch]) -> None:
    for day, batch in sorted(batches.items()):
        scratch.record(day, sorted(batch.visitors), batch.report_rows())
    batches.clear()


def read_log(path: Path) -> Iterator[str]:
    """The lines of an access log, gzip'ed or not (by its first bytes), as text.

    Only a regular file is read (a pipe would block); a line longer than
    :data:`~feeds.audience.LOG_LINE_BYTES` is given truncated (and then skipped as malformed).
    OSError, EOFError (a truncated gzip file) and gzip.BadGzipFile are the caller's to report.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as raw:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        compressed = raw.peek(2)[:2] == b"\x1f\x8b"
        stream = gzip.GzipFile(fileobj=raw) if compressed else raw
        while True:
            line = stream.readline(LOG_LINE_BYTES + 1)
            if not line:
                return
            if len(line) > LOG_LINE_BYTES and not line.endswith(b"\n"):
                while (rest := stream.readline(LOG_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
            yield line.decode("utf-8", "replace")
