#!/usr/bin/env python3
"""Soak test: pollers against the production server while articles and config.yaml change.

    .venv/bin/python bench/soak.py --pollers 16 --minutes 5 [--server granian|gunicorn] [--out bench/SOAK.md]

Copies the demo site (config.yaml + articles/) to a temporary folder and starts the production
server on 127.0.0.1 (a free port, 2 workers, FEEDS_WATCH=1) in its own process group. N poller
threads, each with one keep-alive connection, walk every feed (RSS and Atom), the index and some
pages with conditional GETs (a third send If-None-Match and If-Modified-Since, a third only
If-Modified-Since, a third only If-None-Match; every other one asks for gzip). Meanwhile a
mutator thread adds, edits (in place in several flushed chunks, or via a temp file renamed into
place) and deletes articles, adds embargoed ones, and rewrites config.yaml, sometimes broken for
a few seconds (syntax error, unknown key, bad value) before fixing it.

Every change carries a unique marker (``SOAKM<n>X`` in an article's title, ``SOAKC<n>X`` in the
title of the ``soakcfg`` feed); the time from the change (after close or rename; for an embargo,
the moment it lifts) to the first poller that receives it is its latency. Every distinct 200 body
is checked in a separate process: feeds parse with feedparser without bozo and are well-formed XML
(lxml); pages and the index parse with lxml.html and are complete; full-content documents that
show a soak article must hold its whole body (``BEGIN-<marker>`` ... ``END-<marker>``).

Prints a Markdown report and, with --out, writes it into that file between the
``<!-- soak.py: begin -->`` / ``<!-- soak.py: end -->`` lines (replacing the previous report).
``--seconds`` overrides ``--minutes`` (the test suite runs 20 seconds: tests/test_soak.py).
Exit status 1 if a required check failed (5xx, malformed, a change never seen, latency >= 2 s).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from procs import descendants

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
LATENCY_LIMIT = 2.0  # seconds: the promise
TAIL = 3.0  # seconds without changes at the end, so the last ones can be seen
MAX_POOL = 18  # soak articles alive at once (the demo has 23; "alle" and the index show 50)
TOPICS = ("klima", "sport", "science", "wirtschaft")
MARKER = re.compile(r"SOAK[MC]\d+X")
BEGIN = re.compile(r"BEGIN-(SOAKM\d+X)")
BEGIN_MARK, END_MARK = "<!-- soak.py: begin -->", "<!-- soak.py: end -->"
WORDS = (
    "Stadt",
    "Rat",
    "Messung",
    "Bericht",
    "Wetter",
    "Spiel",
    "Markt",
    "Studie",
    "Labor",
    "Hafen",
    "Netz",
    "Brücke",
    "Ernte",
    "Strom",
    "Bahn",
    "Schule",
    "Klinik",
    "Archiv",
    "Museum",
    "Verein",
)
BROKEN = {  # appended to the feeds: block; each breaks config.yaml in its own way
    "syntax error": "  kaputt:\n    title: Kaputt\n   limit: 5\n",
    "unknown key": "  kaputt:\n    titel: Kaputt\n",
    "bad value": "  kaputt:\n    title: Kaputt\n    limit: viele\n",
}


@dataclass
class Options:
    pollers: int = 16
    seconds: float = 300.0
    server: str = "granian"
    out: Path | None = None
    seed: int = 5
    pages: int = 8  # demo pages polled besides the soak articles' own pages
    interval: float = 0.0  # think time of a poller between two requests


@dataclass
class Change:
    kind: str  # add, edit, delete, embargo, config
    marker: str
    at: float  # monotonic: when readers may see it
    how: str = ""
    seen: float | None = None
    early: bool = False  # an embargoed article seen before its time


@dataclass
class Result:
    options: Options
    started: datetime
    duration: float = 0.0
    server_version: str = ""
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    fivexx: list[str] = field(default_factory=list)
    client_errors: Counter = field(default_factory=Counter)
    validated: int = 0
    malformed: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    bodiless: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    health_degraded: list[float | None] = field(default_factory=list)  # broken config -> degraded
    health_ok: list[float | None] = field(default_factory=list)  # fixed config -> ok everywhere
    health_errors: int = 0
    rss_start: dict[str, float] = field(default_factory=dict)
    rss_end: dict[str, float] = field(default_factory=dict)
    tracebacks: int = 0
    stale_caches: list[str] = field(default_factory=list)
    lm_interleaved: list[str] = field(default_factory=list)  # one ETag, two dates, alternating
    lm_window: float = 0.0  # the longest time two dates of one ETag were served side by side
    lm_backwards: int = 0
    final_checked: int = 0
    final_etags_differ: list[str] = field(default_factory=list)  # after the changes, per URL
    final_dates_differ: list[str] = field(default_factory=list)
    urls: int = 0

    # -- verdicts -----------------------------------------------------------------------------

    def latencies(self, kinds: tuple[str, ...] | None = None) -> list[float]:
        return [
            c.seen - c.at for c in self.changes if c.seen is not None and (kinds is None or c.kind in kinds)
        ]

    @property
    def missed(self) -> list[Change]:
        return [c for c in self.changes if c.seen is None]

    @property
    def max_latency(self) -> float:
        return max(self.latencies(), default=0.0)

    def failures(self) -> list[str]:
        found = []
        if self.fivexx:
            found.append(f"{len(self.fivexx)} 5xx answers")
        if self.malformed:
            found.append(f"{len(self.malformed)} malformed documents")
        if self.missed:
            found.append(f"{len(self.missed)} changes never seen")
        if self.max_latency >= LATENCY_LIMIT:
            found.append(f"max change→visible latency {self.max_latency:.2f} s")
        if not self.changes:
            found.append("no changes made")
        return found

    # -- report -------------------------------------------------------------------------------

    def markdown(self) -> str:
        o = self.options
        by_kind = Counter(c.kind for c in self.changes)
        hows = Counter(f"{c.kind} ({c.how})" for c in self.changes if c.how)
        statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.statuses.items()))
        not_modified = self.statuses.get(304, 0) / self.requests if self.requests else 0.0
        ok = "✅" if not self.failures() else "❌"

        def mark(good: bool) -> str:
            return "✅" if good else "❌"

        def mb(values: dict[str, float]) -> str:
            workers = {k: v for k, v in values.items() if k != "main"}
            parts = " + ".join(f"{v:.1f}" for v in workers.values())
            return (
                f"{sum(workers.values()):.1f} MB ({parts}; main process {values.get('main', 0):.1f} MB)"
                if workers
                else "n/a"
            )

        def seconds(values: list[float | None]) -> str:
            got = [v for v in values if v is not None]
            missing = len(values) - len(got)
            text = f"max {max(got):.2f} s" if got else "—"
            return text + (f", {missing} never" if missing else "")

        lines = [
            f"### Soak run {self.started:%Y-%m-%d %H:%M} UTC: {ok} "
            f"{'all required checks passed' if ok == '✅' else '; '.join(self.failures())}",
            "",
            f"`.venv/bin/python bench/soak.py --pollers {o.pollers} --seconds {o.seconds:g} "
            f"--server {o.server}` ({self.duration:.0f} s; {self.server_version}; 2 workers; FEEDS_WATCH=1; "
            f"{os.cpu_count()} CPUs; commit {_commit()})",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| pollers | {o.pollers} threads, one keep-alive connection each; conditional GETs on "
            f"{self.urls} URLs (every feed as RSS and Atom, the index, {o.pages} demo pages, the soak "
            "articles' pages) |",
            f"| requests | {self.requests:,} ({self.requests / max(self.duration, 1e-9):,.0f}/s); "
            f"304 share {not_modified:.0%} |",
            f"| status counts | {statuses} |",
            f"| 5xx | {len(self.fivexx)} {mark(not self.fivexx)} |",
            f"| malformed documents | {len(self.malformed)} of {self.validated:,} distinct 200 bodies "
            f"parsed {mark(not self.malformed)} |",
            f"| truncated entries (body without its end) | {len(self.truncated)} "
            f"{mark(not self.truncated)} |",
            f"| soak entries shown without a body | {len(self.bodiless)} |",
            f"| client errors (timeouts, resets) | {sum(self.client_errors.values())} "
            f"{dict(self.client_errors) if self.client_errors else ''} |",
            f"| changes | {len(self.changes)}: "
            + ", ".join(f"{v} {k}" for k, v in sorted(by_kind.items()))
            + " |",
            "| how | " + ", ".join(f"{v} {k}" for k, v in sorted(hows.items())) + " |",
            f"| changes seen | {len(self.changes) - len(self.missed)} of {len(self.changes)} "
            f"{mark(not self.missed)} |",
            f"| change → visible, all | {_stats(self.latencies())} "
            f"{mark(self.max_latency < LATENCY_LIMIT)} |",
        ]
        for kind in ("add", "edit", "delete", "embargo", "config"):
            if by_kind.get(kind):
                lines.append(f"| change → visible, {kind} | {_stats(self.latencies((kind,)))} |")
        early = sum(c.early for c in self.changes)
        lines += [
            f"| embargoed articles seen before their time | {early} {mark(not early)} |",
            f"| broken config → /healthz degraded | {len(self.health_degraded)} broken rewrites; "
            f"{seconds(self.health_degraded)} |",
            f"| fixed config → /healthz ok (5 in a row) | {seconds(self.health_ok)}; /healthz non-200: "
            f"{self.health_errors} |",
            f"| server RSS at start | {mb(self.rss_start)} |",
            f"| server RSS at end | {mb(self.rss_end)} |",
            f"| tracebacks in the server log | {self.tracebacks} {mark(not self.tracebacks)} |",
            f"| at the end, {self.final_checked} URLs × 6 fresh connections: URLs whose ETag differs "
            f"between answers | {len(self.final_etags_differ)} {mark(not self.final_etags_differ)} |",
            f"| at the end: URLs with one ETag but different Last-Modified | {len(self.final_dates_differ)} "
            f"{mark(not self.final_dates_differ)} |",
            f"| at the end: pollers' copies answered 304 though outdated (each copy asked on 3 fresh "
            f"connections with the poller's own validators) | {len(self.stale_caches)} "
            f"{mark(not self.stale_caches)} |",
            f"| during the run: ETags served with two Last-Modified in alternation (workers disagree) | "
            f"{len(self.lm_interleaved)}"
            + (f", for at most {self.lm_window:.2f} s" if self.lm_interleaved else "")
            + f" {mark(self.lm_window < LATENCY_LIMIT)} |",
            f"| during the run: Last-Modified went backwards with a new ETag on one connection | "
            f"{self.lm_backwards} |",
        ]
        details = []
        for title, items in (
            ("5xx", self.fivexx),
            ("malformed", self.malformed),
            ("truncated", self.truncated),
            ("never seen", [f"{c.kind} {c.marker} ({c.how})" for c in self.missed]),
            ("ETag differs at the end", self.final_etags_differ),
            ("one ETag, different Last-Modified at the end", self.final_dates_differ),
            ("stale caches", self.stale_caches),
            ("one ETag, two Last-Modified in alternation", self.lm_interleaved),
        ):
            if items:
                details.append(f"- {title}: " + "; ".join(items[:5]) + (" …" if len(items) > 5 else ""))
        if details:
            lines += ["", *details]
        return "\n".join(lines) + "\n"


def _stats(values: list[float]) -> str:
    if not values:
        return "—"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return (
        f"n={len(values)}, median {statistics.median(values) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms"
    )


def _commit() -> str:
    """The commit under test, marked when feeds/ has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()

    try:
        dirty = " + uncommitted changes in feeds/" if git("status", "--porcelain", "feeds") else ""
        return (git("rev-parse", "--short", "HEAD") or "?") + dirty
    except OSError:
        return "?"


# -- checking documents (in a separate process: feedparser is slow and holds the GIL) ---------


def check_document(kind: str, full: bool, body: bytes) -> tuple[str | None, list[str], list[str]]:
    """(why it is malformed or None, truncated soak markers, soak markers without body)."""
    import feedparser
    import lxml.etree
    import lxml.html

    try:
        if kind == "feed":
            lxml.etree.fromstring(body)
            parsed = feedparser.parse(body)
            if parsed.bozo:
                return f"feedparser bozo: {parsed.get('bozo_exception')}", [], []
            if not parsed.feed.get("title"):
                return "feed without title", [], []
        else:
            text = body.decode("utf-8")
            root = lxml.html.document_fromstring(text)
            if root.find("body") is None or not text.rstrip().endswith("</html>"):
                return "incomplete HTML document", [], []
    except Exception as exc:  # noqa: BLE001 - anything that does not parse is malformed
        return f"{type(exc).__name__}: {exc}", [], []
    if not full:
        return None, [], []
    text = body.decode("utf-8", "replace")
    truncated, bodiless = [], []
    for marker in set(re.findall(r"SOAKM\d+X", text)):
        if f"BEGIN-{marker}" not in text:
            bodiless.append(marker)
        elif f"END-{marker}" not in text:
            truncated.append(marker)
    return None, truncated, bodiless


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_command(server: str, port: int) -> list[str]:
    if server == "granian":
        return [
            str(BIN / "granian"),
            "--interface",
            "wsgi",
            "--factory",
            "--workers",
            "2",
            "--host",
            HOST,
            "--port",
            str(port),
            "feeds:create_app",
        ]
    if server == "gunicorn":
        import gunicorn

        control = ["--no-control-socket"] if gunicorn.version_info >= (27,) else []
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"{HOST}:{port}",
            "--graceful-timeout",
            "5",
            *control,
            "feeds:create_app()",
        ]
    raise ValueError(f"unknown server {server!r}")


def server_version(server: str) -> str:
    try:
        from importlib.metadata import version

        return f"{server} {version(server)}"
    except Exception:  # noqa: BLE001
        return server


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        try:  # workers that outlived the master
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def vm_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def server_rss(proc: subprocess.Popen) -> dict[str, float]:
    """VmRSS of the main process and of each worker (every descendant), in MB."""
    found = {"main": vm_rss_mb(proc.pid)}
    for pid in descendants(proc.pid):
        found[str(pid)] = vm_rss_mb(pid)
    return found


def request(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_healthy(proc: subprocess.Popen, port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            if request(port, "/healthz", timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


# -- the site and its changes ---------------------------------------------------------------


def soak_config(base: str, marker: str, broken: str = "") -> str:
    """The demo config plus a ``soakcfg`` feed whose title carries the config's marker."""
    return (
        base.rstrip("\n") + "\n  soakcfg:\n    title: Soak config " + marker + "\n"
        "    description: Changes with every rewrite of config.yaml\n    limit: 5\n" + broken
    )


def article_text(
    number: int, marker: str, topic: str, date: datetime, updated: datetime, rng: random.Random
) -> str:
    title = " ".join(rng.choice(WORDS) for _ in range(4))
    paragraphs = [
        " ".join(rng.choice(WORDS).lower() for _ in range(rng.randint(40, 90))) + "."
        for _ in range(rng.randint(3, 8))
    ]
    body = f"BEGIN-{marker}\n\n" + "\n\n".join(paragraphs) + f"\n\nEND-{marker}\n"
    return (
        f"---\nid: soak-{number}\ntitle: Soak {marker} {title}\ndate: {date.isoformat()}\n"
        f"updated: {updated.isoformat()}\ntopics: [{topic}]\nsummary: Ein Soak-Artikel.\n---\n{body}"
    )


def write_in_chunks(path: Path, text: str, rng: random.Random) -> None:
    """Write in place with the handle open across several flushed chunks (an editor, rsync --inplace)."""
    cuts = sorted(rng.sample(range(1, len(text)), 2))
    with open(path, "w", encoding="utf-8") as fh:
        for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
            fh.write(text[start:end])
            fh.flush()
            if end < len(text):
                time.sleep(rng.uniform(0.05, 0.25))


def write_renamed(path: Path, text: str, rng: random.Random) -> None:
    """Write a temp file next to it (a dot name, as rsync and editors do) and rename it over."""
    tmp = path.with_name(f".{path.name}.{rng.randrange(16**6):06x}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Mutator(threading.Thread):
    """Adds, edits and deletes soak articles and rewrites config.yaml until ``until``."""

    def __init__(self, soak: Soak, until: float) -> None:
        super().__init__(name="soak-mutator", daemon=True)
        self.soak = soak
        self.until = until
        self.rng = random.Random(soak.options.seed)
        self.alive: dict[int, tuple[Path, str, datetime]] = {}  # number -> path, marker, date
        self.numbers = 0
        self.config_number = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def _run(self) -> None:
        soak, rng = self.soak, self.rng
        seconds = soak.options.seconds
        config_every = min(15.0, max(6.0, seconds / 4))
        next_config = time.monotonic() + min(3.0, config_every)
        broken_next = True  # a short run gets its broken config early
        while time.monotonic() < self.until:
            now = time.monotonic()
            if now >= next_config:
                if broken_next and now + 7.0 < self.until:
                    self.broken_config()
                elif now + 1.0 < self.until:
                    self.good_config()
                broken_next = not broken_next
                next_config = time.monotonic() + config_every
                continue
            ready = [n for n, (_, marker, _) in self.alive.items() if soak.settled(marker)]
            action = rng.choices(("add", "edit", "delete", "embargo", "burst"), (30, 35, 20, 5, 10))[0]
            if len(self.alive) >= MAX_POOL and action in ("add", "embargo", "burst"):
                action = "delete"
            if action in ("edit", "delete") and not ready:
                action = "add" if len(self.alive) < MAX_POOL else "wait"
            if action == "add":
                self.add()
            elif action == "burst":  # several files at once: one batch in one worker, maybe two in another
                for _ in range(min(3, MAX_POOL - len(self.alive))):
                    self.add(chunked=False)
            elif action == "embargo":
                self.add(embargo=rng.uniform(2.0, 4.0))
            elif action == "edit":
                self.edit(rng.choice(ready))
            elif action == "delete":
                self.delete(rng.choice(ready))
            time.sleep(min(max(0.0, self.until - time.monotonic()), rng.uniform(0.3, 0.9)))

    # -- articles -----------------------------------------------------------------------------

    def add(self, chunked: bool | None = None, embargo: float = 0.0) -> None:
        soak, rng = self.soak, self.rng
        self.numbers += 1
        number, marker = self.numbers, soak.new_marker("M")
        topic = rng.choice(TOPICS)
        path = soak.articles / topic / f"soak-{number}.md"
        path.parent.mkdir(exist_ok=True)
        wall = datetime.now(UTC)
        if embargo:
            lifts = (wall + timedelta(seconds=embargo)).replace(microsecond=0) + timedelta(seconds=1)
            date = lifts
        else:
            date = (wall - timedelta(seconds=60)).replace(microsecond=0)
        text = article_text(number, marker, topic, date, date, rng)
        chunked = rng.random() < 0.5 if chunked is None else chunked
        (write_in_chunks if chunked else write_renamed)(path, text, rng)
        at = time.monotonic()
        if embargo:
            at += (date - datetime.now(UTC)).total_seconds()
        self.alive[number] = (path, marker, date)
        soak.record(
            Change(
                "embargo" if embargo else "add",
                marker,
                at,
                "in place, 3 chunks" if chunked else "renamed into place",
            )
        )
        soak.set_pages([f"/articles/soak-{n}" for n in self.alive])

    def edit(self, number: int) -> None:
        soak, rng = self.soak, self.rng
        path, _, date = self.alive[number]
        marker = soak.new_marker("M")
        updated = max(date, (datetime.now(UTC) - timedelta(seconds=1)).replace(microsecond=0))
        text = article_text(number, marker, path.parent.name, date, updated, rng)
        chunked = rng.random() < 0.6
        (write_in_chunks if chunked else write_renamed)(path, text, rng)
        self.alive[number] = (path, marker, date)
        soak.record(
            Change("edit", marker, time.monotonic(), "in place, 3 chunks" if chunked else "renamed over")
        )

    def delete(self, number: int) -> None:
        path, marker, _ = self.alive.pop(number)
        path.unlink()
        self.soak.record(Change("delete", marker, time.monotonic(), "unlinked"))
        self.soak.set_pages([f"/articles/soak-{n}" for n in self.alive])

    # -- config ---------------------------------------------------------------------------------

    def good_config(self) -> None:
        soak = self.soak
        marker = soak.new_marker("C")
        text = soak_config(soak.base_config, marker)
        renamed = self.rng.random() < 0.5
        if renamed:
            write_renamed(soak.config, text, self.rng)
        else:
            soak.config.write_text(text, encoding="utf-8")
        soak.record(
            Change("config", marker, time.monotonic(), "renamed into place" if renamed else "in place")
        )

    def broken_config(self) -> None:
        soak = self.soak
        kinds = list(BROKEN)
        kind = kinds[self.config_number % len(kinds)]
        self.config_number += 1
        soak.config.write_text(
            soak_config(soak.base_config, soak.new_marker("C"), BROKEN[kind]), encoding="utf-8"
        )
        broke = time.monotonic()
        soak.result.health_degraded.append(soak.wait_health("degraded", broke, 3.0, in_a_row=1))
        time.sleep(max(0.0, broke + 3.0 - time.monotonic()))  # stays broken for 3 s
        self.good_config()
        soak.result.health_ok.append(soak.wait_health("ok", time.monotonic(), 3.0, in_a_row=5))


# -- the pollers ----------------------------------------------------------------------------


class Poller(threading.Thread):
    MODES = ("both", "ims", "inm")

    def __init__(self, soak: Soak, number: int, until: float) -> None:
        super().__init__(name=f"soak-poller-{number}", daemon=True)
        self.soak = soak
        self.number = number
        self.until = until
        self.mode = self.MODES[number % 3]
        self.gzip = number % 2 == 1
        self.cache: dict[str, tuple[str | None, str | None]] = {}  # path -> etag, last-modified
        self.conn: http.client.HTTPConnection | None = None
        self.requests = 0
        self.lm_backwards = 0

    def connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.soak.port, timeout=10)
        return self.conn

    def get(self, path: str, conditional: bool = True) -> tuple[int, dict[str, str], bytes, float, float]:
        headers = {"User-Agent": f"soak-poller/{self.number}"}
        if self.gzip:
            headers["Accept-Encoding"] = "gzip"
        etag, lm = self.cache.get(path, (None, None))
        if conditional:
            if etag and self.mode in ("both", "inm"):
                headers["If-None-Match"] = etag
            if lm and self.mode in ("both", "ims"):
                headers["If-Modified-Since"] = lm
        sent = time.monotonic()
        for attempt in (1, 2):
            conn = self.connection()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                received = time.monotonic()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, body, sent, received
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A keep-alive connection the server closed between requests: one silent retry.
                if attempt == 2 or not isinstance(
                    exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError
                ):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self) -> None:
        soak = self.soak
        offset = self.number * 7
        while time.monotonic() < self.until:
            targets = soak.targets()
            path = targets[offset % len(targets)]
            offset += 1
            try:
                status, headers, body, sent, received = self.get(path)
            except (OSError, http.client.HTTPException) as exc:
                soak.client_error(type(exc).__name__)
                time.sleep(0.05)
                continue
            self.requests += 1
            soak.answer(path, status, headers, body, sent, received)
            if status == 200:
                old = self.cache.get(path)
                etag, lm = headers.get("etag"), headers.get("last-modified")
                if old and old[1] and lm and old[0] != etag and _http_time(lm) < _http_time(old[1]):
                    self.lm_backwards += 1
                self.cache[path] = (etag, lm)
            elif status == 404:
                self.cache.pop(path, None)
            if soak.options.interval:
                time.sleep(soak.options.interval)

    def final_check(self, current: dict[str, set[str]]) -> list[str]:
        """After the changes: a 304 must mean the client holds the current bytes, whichever
        worker answers (fresh connections land on any of them)."""
        stale = []
        self.close()
        for path, (etag, _) in sorted(self.cache.items()):
            if not etag or path not in current:
                continue
            for _ in range(3):
                try:
                    status, *_ = self.get(path)
                except (OSError, http.client.HTTPException) as exc:
                    self.soak.client_error(type(exc).__name__)
                    continue
                finally:
                    self.close()
                if status == 304 and _base(etag) not in current[path]:
                    stale.append(
                        f"{path} (poller {self.number}, {self.mode}: holds {etag}, current "
                        f"{sorted(current[path])})"
                    )
                    break
        return stale


def _base(etag: str | None) -> str:
    return (etag or "").replace("-gzip", "")


def _http_time(value: str) -> float:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return 0.0


# -- the run --------------------------------------------------------------------------------


class Soak:
    def __init__(self, options: Options, work: Path) -> None:
        self.options = options
        self.work = work
        self.result = Result(options, datetime.now(UTC))
        self.lock = threading.Lock()
        self.port = 0
        self.config = work / "site" / "config.yaml"
        self.articles = work / "site" / "articles"
        self.base_config = ""
        self.static: list[str] = []
        self.pages: list[str] = []
        self.full_paths: set[str] = set()  # documents that show whole bodies
        self.listing_paths: set[str] = set()  # documents that list every article (for deletions)
        self.markers = 0
        self.pending: dict[str, Change] = {}  # marker -> change not yet seen (add, edit, embargo, config)
        self.deletions: dict[str, Change] = {}
        self.last_seen: dict[str, float] = {}  # marker -> when it was last seen
        self.bodies: set[bytes] = set()
        self.checks: list[tuple[str, Future]] = []
        self.dates: dict[tuple[str, str], list[str]] = defaultdict(list)  # Last-Modified in order seen
        self.date_spans: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(dict)  # first, last
        self.executor: ProcessPoolExecutor | None = None
        self.summary_feeds: set[str] = set()

    # -- shared state used by the threads -------------------------------------------------------

    def new_marker(self, kind: str) -> str:
        with self.lock:
            self.markers += 1
            return f"SOAK{kind}{self.markers}X"

    def record(self, change: Change) -> None:
        with self.lock:
            self.result.changes.append(change)
            if change.kind == "delete":
                self.pending.pop(change.marker, None)
                self.deletions[change.marker] = change
            else:
                self.pending[change.marker] = change

    def settled(self, marker: str) -> bool:
        """An article may change again once its last change was seen (or has surely been missed)."""
        with self.lock:
            change = self.pending.get(marker)
            return change is None or time.monotonic() - change.at > 2 * LATENCY_LIMIT

    def set_pages(self, pages: list[str]) -> None:
        with self.lock:
            self.pages = pages

    def targets(self) -> list[str]:
        with self.lock:
            return self.static + self.pages

    def client_error(self, name: str) -> None:
        with self.lock:
            self.result.client_errors[name] += 1

    def answer(
        self, path: str, status: int, headers: dict[str, str], body: bytes, sent: float, received: float
    ) -> None:
        result = self.result
        etag, lm = headers.get("etag"), headers.get("last-modified")
        with self.lock:
            result.requests += 1
            result.statuses[status] += 1
            if status >= 500:
                result.fivexx.append(f"{status} {path}: {body[:200]!r}")
            if etag and lm and status in (200, 304):
                dates = self.dates[(path, _base(etag))]
                if not dates or dates[-1] != lm:
                    dates.append(lm)
                span = self.date_spans[(path, _base(etag))].setdefault(lm, [received, received])
                span[1] = received
        if status != 200:
            return
        if headers.get("content-encoding") == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                with self.lock:
                    result.malformed.append(f"{path}: bad gzip ({exc})")
                return
        text = body.decode("utf-8", "replace")
        found = set(MARKER.findall(text))
        with self.lock:
            for marker in found:
                self.last_seen[marker] = received
                change = self.pending.pop(marker, None)
                if change is not None:
                    change.seen = received
                    change.early = received < change.at
            if path in self.listing_paths:
                for marker, change in list(self.deletions.items()):
                    if sent > change.at and marker not in found:
                        change.seen = received
                        del self.deletions[marker]
            digest = hashlib.sha256(body).digest()
            new = digest not in self.bodies
            self.bodies.add(digest)
        if new and self.executor is not None:
            kind = "feed" if path.startswith("/feeds/") else "html"
            future = self.executor.submit(
                check_document, kind, path in self.full_paths or path.startswith("/articles/"), body
            )
            with self.lock:
                self.checks.append((path, future))

    def wait_health(self, status: str, since: float, timeout: float, in_a_row: int) -> float | None:
        """Seconds until /healthz (fresh connections, so any worker) says ``status`` ``in_a_row`` times."""
        deadline, streak = since + timeout, 0
        while time.monotonic() < deadline:
            try:
                code, body = request(self.port, "/healthz", timeout=2.0)
            except OSError:
                code, body = 0, b"{}"
            if code != 200:
                with self.lock:
                    self.result.health_errors += 1
                streak = 0
            else:
                streak = streak + 1 if json.loads(body).get("status") == status else 0
                if streak >= in_a_row:
                    return time.monotonic() - since
            time.sleep(0.02)
        return None

    # -- set-up, run, tear-down -----------------------------------------------------------------

    def prepare(self) -> None:
        import yaml

        site = self.work / "site"
        site.mkdir(parents=True)
        shutil.copytree(REPO / "articles", self.articles)
        self.base_config = (REPO / "config.yaml").read_text(encoding="utf-8")
        self.config.write_text(soak_config(self.base_config, "SOAKC0X"), encoding="utf-8")
        data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        default = (data.get("defaults") or {}).get("content", "full")
        self.summary_feeds = {
            name for name, spec in data["feeds"].items() if spec.get("content", default) == "summary"
        }

    def discover(self) -> None:
        """Every feed linked from the index (RSS and Atom), the index, and some demo pages."""
        status, body = request(self.port, "/")
        if status != 200:
            raise RuntimeError(f"index answered {status}")
        text = body.decode()
        feeds = sorted(set(re.findall(r'href="[^"]*?(/feeds/[a-z0-9_-]+\.(?:rss|atom))"', text)))
        pages = sorted(set(re.findall(r'href="[^"]*?(/articles/[^"#?]+)"', text)))
        rng = random.Random(self.options.seed)
        chosen = rng.sample(pages, min(self.options.pages, len(pages)))
        self.static = feeds + ["/"] + chosen
        self.full_paths = {f for f in feeds if f.rsplit("/", 1)[1].split(".")[0] not in self.summary_feeds}
        self.listing_paths = {"/feeds/alle.rss", "/feeds/alle.atom", "/"}

    def final_consensus(self, tries: int = 6) -> dict[str, set[str]]:
        """Ask for every URL on fresh connections (so every worker answers): one ETag each, and
        one Last-Modified per ETag, once the changes have settled."""
        current: dict[str, set[str]] = {}
        for path in self.targets():
            answers = set()
            for _ in range(tries):
                try:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
                    conn.request("GET", path)
                    response = conn.getresponse()
                    response.read()
                    conn.close()
                except (OSError, http.client.HTTPException) as exc:
                    self.client_error(type(exc).__name__)
                    continue
                if response.status == 200:
                    answers.add((_base(response.getheader("ETag")), response.getheader("Last-Modified")))
            if not answers:
                continue
            self.result.final_checked += 1
            current[path] = {etag for etag, _ in answers}
            if len(current[path]) > 1:
                self.result.final_etags_differ.append(f"{path}: {sorted(answers)}")
            elif len(answers) > 1:
                self.result.final_dates_differ.append(f"{path}: {sorted(lm for _, lm in answers)}")
        return current

    def run(self) -> Result:
        options, result = self.options, self.result
        self.prepare()
        self.port = free_port()
        log = self.work / "server.log"
        env = {
            **os.environ,
            "FEEDS_CONFIG": str(self.config),
            "FEEDS_WATCH": "1",
            "FEEDS_STATE_DIR": str(self.work / "state"),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        result.server_version = server_version(options.server)
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=context)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                server_command(options.server, self.port),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.work,
                start_new_session=True,
            )
        try:
            wait_healthy(proc, self.port, log)
            self.discover()
            self.executor.submit(check_document, "html", False, b"<html><body></body></html>").result(60)
            started = time.monotonic()
            until = started + options.seconds
            pollers = [Poller(self, n, until) for n in range(options.pollers)]
            for poller in pollers:
                poller.start()
            time.sleep(min(1.0, options.seconds / 10))  # every worker has rendered what it serves
            result.rss_start = server_rss(proc)
            mutator = Mutator(self, until - TAIL)
            mutator.start()
            mutator.join(options.seconds + 60)
            for poller in pollers:
                poller.join(max(0.0, until - time.monotonic()) + 30)
            result.duration = time.monotonic() - started
            result.rss_end = server_rss(proc)
            if mutator.error is not None:
                raise RuntimeError(f"mutator failed: {mutator.error!r}") from mutator.error
            current = self.final_consensus()
            for poller in pollers:
                result.stale_caches += poller.final_check(current)
                result.lm_backwards += poller.lm_backwards
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} during the soak")
        finally:
            stop_server(proc)
            self.executor.shutdown(wait=False, cancel_futures=False)
        self.collect(log)
        return result

    def collect(self, log: Path) -> None:
        result = self.result
        for path, future in self.checks:
            try:
                malformed, truncated, bodiless = future.result(timeout=300)
            except Exception as exc:  # noqa: BLE001
                malformed, truncated, bodiless = f"checker failed: {exc!r}", [], []
            result.validated += 1
            if malformed:
                result.malformed.append(f"{path}: {malformed}")
            result.truncated += [f"{path}: {m}" for m in truncated]
            result.bodiless += [f"{path}: {m}" for m in bodiless]
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        result.urls = len(self.static) + MAX_POOL
        result.lm_interleaved = []
        for (path, etag), dates in sorted(self.dates.items()):
            if len(dates) == len(set(dates)):
                continue
            # From the first answer with the date that lasted to the last answer with another one.
            spans = self.date_spans[(path, etag)]
            final = max(spans, key=lambda lm: spans[lm][1])
            window = max(spans[lm][1] for lm in spans if lm != final) - spans[final][0]
            result.lm_window = max(result.lm_window, window)
            result.lm_interleaved.append(
                f"{path} {etag}: {' ⇄ '.join(sorted(set(dates), key=_http_time))} "
                f"({len(dates) - 1} switches in {max(window, 0):.2f} s)"
            )
        text = log.read_text(errors="replace")
        result.tracebacks = text.count("Traceback (most recent call last)")


def run(options: Options) -> Result:
    """Run one soak; the server and the temporary site are always removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="feeds-soak-") as work:
        soak = Soak(options, Path(work))
        result = soak.run()
        if options.out is not None:
            write_report(options.out, result.markdown())
        return result


HEADER = """# Soak test

`bench/soak.py` runs the production server (2 workers, live reload on) on 127.0.0.1 against a
copy of the demo site while pollers send conditional GETs and a mutator adds, edits (in place in
flushed chunks, or renamed into place) and deletes articles, adds embargoed ones and rewrites
`config.yaml`, sometimes broken for 3 seconds. See the docstring of `bench/soak.py` for what is
measured; `tests/test_soak.py` runs a 20-second version in the test suite.

    .venv/bin/python bench/soak.py --pollers 16 --minutes 3 --out bench/SOAK.md

"""


def write_report(out: Path, report: str) -> None:
    """Replace the report between the soak.py markers, keeping anything else in the file."""
    section = f"{BEGIN_MARK}\n{report}{END_MARK}\n"
    try:
        text = out.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = HEADER
    if BEGIN_MARK in text and END_MARK in text:
        head, rest = text.split(BEGIN_MARK, 1)
        tail = rest.split(END_MARK, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pollers", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, help="overrides --minutes")
    parser.add_argument("--server", choices=("granian", "gunicorn"), default="granian")
    parser.add_argument("--out", type=Path, help="write the report into this Markdown file")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.0, help="pause of a poller between requests (s)")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    if seconds < 10:
        parser.error("run at least 10 seconds")
    options = Options(
        pollers=args.pollers,
        seconds=seconds,
        server=args.server,
        out=args.out,
        seed=args.seed,
        interval=args.interval,
    )
    result = run(options)
    print(result.markdown())
    return 1 if result.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
