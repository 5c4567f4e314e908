#!/usr/bin/env python3
"""Soak test: pollers against the production server while articles, config.yaml and hostile
files change under it. What it does and checks: bench/SOAK.md.

    .venv/bin/python bench/soak.py --pollers 16 --minutes 3 [--server granian|gunicorn] [--out bench/SOAK.md]

Prints a Markdown report and, with --out, writes it into that file between the
``<!-- soak.py: begin -->`` / ``<!-- soak.py: end -->`` lines (replacing the previous report).
``--seconds`` overrides ``--minutes`` (the test suite runs 20 seconds: tests/test_soak.py);
``--hostile`` picks the hostile files (default all: symlink,bomb,big,pipe). Exit status 1 if a
required check failed (a ❌ in the report).
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
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib.metadata import version
from pathlib import Path

import harness

LATENCY_LIMIT = 2.0  # seconds: the promise
HEALTH_LIMIT = 1.0  # /healthz answers within this, throughout
HEALTH_EVERY = 0.25
TIMEOUT = 10.0  # every request; one that takes longer is a hang
TAIL = 3.0  # seconds without changes at the end, so the last ones can be seen
FINAL_BUDGET = 60.0  # seconds for the checks after the run (a wedged server would take hours)
MEMORY_LIMIT = 3 << 30  # bytes of address space per server process
PAGES = 8  # demo pages polled besides the soak articles' own pages
MAX_POOL = 18  # soak articles alive at once (the demo has 23; "alle" and the index show 50)
TOPICS = ("klima", "sport", "science", "wirtschaft")
HOSTILE = ("symlink", "bomb", "big", "pipe")
MARKER = re.compile(r"SOAK[MCB]\d+X")  # M: a soak article, C: a config, B: the big article
BODY_MARKER = re.compile(r"SOAK[MB]\d+X")  # articles whose whole body full documents must show
BEGIN_MARK, END_MARK = "<!-- soak.py: begin -->", "<!-- soak.py: end -->"
WORDS = (
    "Stadt Rat Messung Bericht Wetter Spiel Markt Studie Labor Hafen "
    "Netz Brücke Ernte Strom Bahn Schule Klinik Archiv Museum Verein"
).split()
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
    hostile: tuple[str, ...] = HOSTILE


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
    statuses: Counter[int] = field(default_factory=Counter)
    uncacheable: int = 0  # 200s with Cache-Control: no-store
    fivexx: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)  # requests without an answer within TIMEOUT
    client_errors: Counter[str] = field(default_factory=Counter)
    validated: int = 0
    malformed: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)  # a body cut short
    hollow: list[str] = field(default_factory=list)  # an entry or page without its text
    leaks: list[str] = field(default_factory=list)  # responses with the symlink target's secret
    big_shown: int = 0  # 200s showing the article larger than 2 MiB
    drops: list[str] = field(default_factory=list)  # hostile files dropped in
    health: list[float] = field(default_factory=list)  # /healthz latencies (probe thread)
    health_failures: list[str] = field(default_factory=list)  # probe: no 200, or no answer
    changes: list[Change] = field(default_factory=list)
    health_degraded: list[float | None] = field(default_factory=list)  # broken config -> degraded
    health_ok: list[float | None] = field(default_factory=list)  # fixed config -> ok everywhere
    rss_start: dict[str, float] = field(default_factory=dict)
    rss_end: dict[str, float] = field(default_factory=dict)
    tracebacks: int = 0
    stale_caches: list[str] = field(default_factory=list)
    lm_interleaved: list[str] = field(default_factory=list)  # one ETag, two dates, alternating
    lm_window: float = 0.0  # the longest time two dates of one ETag were served side by side
    lm_backwards: int = 0
    final_checked: int = 0
    final_cut_short: bool = False
    final_etags_differ: list[str] = field(default_factory=list)  # after the changes, per URL
    final_dates_differ: list[str] = field(default_factory=list)
    urls: int = 0

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

    @property
    def health_max(self) -> float:
        return max(self.health, default=0.0)

    def rows(self) -> list[tuple[str, str, bool | None]]:
        """The report: (measure, value, passed); every row with a verdict is a required check."""

        def count(measure: str, items: list[str], more: str = "") -> tuple[str, str, bool]:
            return measure, f"{len(items)}{more}", not items

        o, changes = self.options, self.changes
        by_kind = Counter(c.kind for c in changes)
        hows = Counter(f"{c.kind} ({c.how})" for c in changes if c.how)
        rate, share = self.requests / max(self.duration, 1e-9), self.statuses[304] / max(self.requests, 1)
        early = [c.marker for c in changes if c.early]
        return [
            (
                "pollers",
                f"{o.pollers} threads, one keep-alive connection each; conditional GETs on {self.urls} URLs "
                f"(every feed as RSS and Atom, the index, {PAGES} demo pages, the soak articles' pages)",
                None,
            ),
            (
                "requests",
                f"{self.requests:,} ({rate:,.0f}/s); 304 share {share:.0%}; "
                f"200s marked no-store: {self.uncacheable:,}",
                None,
            ),
            ("status counts", ", ".join(f"{k}: {v:,}" for k, v in sorted(self.statuses.items())), None),
            count("5xx", self.fivexx),
            count(f"hangs (no answer within {TIMEOUT:g} s)", self.hangs),
            count(
                "malformed documents", self.malformed, f" of {self.validated:,} distinct 200 bodies parsed"
            ),
            count("incomplete: truncated entries (body without its end)", self.truncated),
            count("incomplete: hollow entries (no summary or content) or pages (no body)", self.hollow),
            (
                "client errors (resets)",
                f"{sum(self.client_errors.values())} {dict(self.client_errors)}",
                None,
            ),
            (
                f"/healthz every {HEALTH_EVERY:g} s on a fresh connection: 200 within {HEALTH_LIMIT:g} s",
                f"{_stats(self.health)}; failed: {len(self.health_failures)}",
                not self.health_failures and self.health_max < HEALTH_LIMIT,
            ),
            (
                "hostile files dropped",
                f"{len(self.drops)}: {', '.join(self.drops)}",
                bool(self.drops) or not o.hostile,
            ),
            count("responses with the secret of the file outside (symlink target)", self.leaks),
            ("200s showing the article larger than 2 MiB", f"{self.big_shown:,}", None),
            (
                "changes",
                f"{len(changes)}: " + ", ".join(f"{v} {k}" for k, v in sorted(by_kind.items())),
                bool(changes),
            ),
            ("how", ", ".join(f"{v} {k}" for k, v in sorted(hows.items())), None),
            count("changes never seen", [f"{c.kind} {c.marker} ({c.how})" for c in self.missed]),
            ("change → visible, all", _stats(self.latencies()), self.max_latency < LATENCY_LIMIT),
            *(
                (f"change → visible, {kind}", _stats(self.latencies((kind,))), None)
                for kind in ("add", "edit", "delete", "embargo", "config")
                if by_kind.get(kind)
            ),
            count("embargoed articles seen before their time", early),
            (
                "broken config → /healthz degraded",
                f"{len(self.health_degraded)}: {_seconds(self.health_degraded)}",
                None,
            ),
            ("fixed config → /healthz ok (5 in a row)", _seconds(self.health_ok), None),
            ("server RSS at start", _mb(self.rss_start), None),
            ("server RSS at end", _mb(self.rss_end), None),
            ("tracebacks in the server log", f"{self.tracebacks}", not self.tracebacks),
            count(
                f"at the end, {self.final_checked} URLs × 6 fresh connections: URLs whose ETag differs",
                self.final_etags_differ,
                " (cut short: the server hung)" if self.final_cut_short else "",
            ),
            count("at the end: URLs with one ETag but different Last-Modified", self.final_dates_differ),
            count(
                "at the end: pollers' outdated copies answered 304 (3 fresh connections each)",
                self.stale_caches,
            ),
            (
                "during the run: ETags served with two Last-Modified in alternation (workers disagree)",
                f"{len(self.lm_interleaved)}"
                + (f", for at most {self.lm_window:.2f} s" if self.lm_interleaved else ""),
                self.lm_window < LATENCY_LIMIT,
            ),
            (
                "during the run: Last-Modified went backwards with a new ETag on one connection",
                f"{self.lm_backwards}",
                None,
            ),
        ]

    def failures(self) -> list[str]:
        return [f"{measure}: {value}" for measure, value, passed in self.rows() if passed is False]

    def markdown(self) -> str:
        o, failures = self.options, self.failures()
        hostile = "" if o.hostile == HOSTILE else f" --hostile '{','.join(o.hostile)}'"
        verdict = (
            f"❌ {len(failures)} required checks failed" if failures else "✅ all required checks passed"
        )
        lines = [
            f"### Soak run {self.started:%Y-%m-%d %H:%M} UTC: {verdict}",
            "",
            f"`.venv/bin/python bench/soak.py --pollers {o.pollers} --seconds {o.seconds:g} "
            f"--server {o.server}{hostile}` ({self.duration:.0f} s; {self.server_version}; 2 workers; "
            "FEEDS_WATCH=1; "
            f"{os.cpu_count()} CPUs; commit {harness.commit()})",
            "",
            "| measure | value |",
            "| --- | --- |",
            *(f"| {m} | {v}{'' if ok is None else ' ' + _mark(ok)} |" for m, v, ok in self.rows()),
        ]
        details = [
            f"- {title}: " + "; ".join(items[:5]) + (" …" if len(items) > 5 else "")
            for title, items in (
                ("5xx", self.fivexx),
                ("hangs", self.hangs),
                ("malformed", self.malformed),
                ("truncated", self.truncated),
                ("hollow", self.hollow),
                ("secret served", self.leaks),
                ("/healthz failed", self.health_failures),
                ("never seen", [f"{c.kind} {c.marker} ({c.how})" for c in self.missed]),
                ("ETag differs at the end", self.final_etags_differ),
                ("one ETag, different Last-Modified at the end", self.final_dates_differ),
                ("stale caches", self.stale_caches),
                ("one ETag, two Last-Modified in alternation", self.lm_interleaved),
            )
            if items
        ]
        return "\n".join([*lines, *([""] if details else []), *details]) + "\n"


def _mark(good: bool) -> str:
    return "✅" if good else "❌"


def _stats(values: list[float]) -> str:
    if not values:
        return "—"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return (
        f"n={len(values)}, median {statistics.median(values) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms"
    )


def _seconds(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    missing = len(values) - len(got)
    return (f"max {max(got):.2f} s" if got else "—") + (f", {missing} never" if missing else "")


def _mb(values: dict[str, float]) -> str:
    workers = {k: v for k, v in values.items() if k != "main"}
    parts = " + ".join(f"{v:.1f}" for v in workers.values())
    main = values.get("main", 0)
    return f"{sum(workers.values()):.1f} MB ({parts}; main process {main:.1f} MB)" if workers else "n/a"


# -- checking documents (in a separate process: feedparser is slow and holds the GIL) ---------


def check_document(kind: str, full: bool, body: bytes) -> tuple[str | None, list[str], list[str]]:
    """(why the document is malformed or None, truncated bodies, hollow entries or pages).

    ``kind``: feed, page (an article) or index; ``full``: a feed that shows whole articles.
    """
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
    truncated: list[str] = []
    hollow: list[str] = []
    if kind == "feed":
        for entry in parsed.entries:
            name, title = entry.get("id", "?"), entry.get("title", "")
            content = " ".join(c.get("value", "") for c in entry.get("content", []))
            if not entry.get("summary", "").strip():
                hollow.append(f"{name}: entry without summary")
            if full and not content.strip():
                hollow.append(f"{name}: entry of a full-content feed without content")
            elif full:
                _whole_bodies(title, content, name, truncated, hollow)
    elif kind == "page":
        main = next(found[0] for found in map(root.xpath, ("//article", "//main", "//body")) if found)
        title = " ".join(h.text_content() for h in main.xpath(".//h1"))
        for element in main.xpath(".//h1 | .//nav | .//header | .//footer | .//*[contains(@class, 'meta')]"):
            element.drop_tree()
        text = main.text_content()
        if not text.strip():
            hollow.append(f"{title.strip()[:60]}: page without body text")
        else:
            _whole_bodies(title, text, title.strip()[:60], truncated, hollow)
    return None, truncated, hollow


def _whole_bodies(title: str, text: str, name: str, truncated: list[str], hollow: list[str]) -> None:
    """A soak article (its marker in the title) shows its body from BEGIN to END."""
    for marker in BODY_MARKER.findall(title):
        begins, ends = f"BEGIN-{marker}" in text, f"END-{marker}" in text
        if not begins and not ends:
            hollow.append(f"{name}: {marker} without its body")
        elif not (begins and ends):
            truncated.append(f"{name}: {marker} {'without its end' if begins else 'without its start'}")


# -- the site and its changes ---------------------------------------------------------------


def soak_config(base: str, marker: str, broken: str = "") -> str:
    """The demo config plus a ``soakcfg`` feed whose title carries the config's marker."""
    return (
        base.rstrip("\n") + "\n  soakcfg:\n    title: Soak config " + marker + "\n"
        "    description: Changes with every rewrite of config.yaml\n    limit: 5\n" + broken
    )


def paragraphs(rng: random.Random, count: int) -> list[str]:
    return [
        " ".join(rng.choice(WORDS).lower() for _ in range(rng.randint(40, 90))) + "." for _ in range(count)
    ]


def article_text(
    number: int, marker: str, topic: str, date: datetime, updated: datetime, rng: random.Random
) -> str:
    title = " ".join(rng.choice(WORDS) for _ in range(4))
    body = f"BEGIN-{marker}\n\n" + "\n\n".join(paragraphs(rng, rng.randint(3, 8))) + f"\n\nEND-{marker}\n"
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


# A YAML alias bomb in ``tags:`` (0.5 KB): 9 anchors, each a list of 9 of the one before.
BOMB = (
    "---\ntitle: Alias-Bombe\ndate: 2025-01-01\ntags:\n"
    + "".join(f"  - &a{i} [{', '.join([f'*a{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9))
    + "---\nEine Alias-Bombe.\n"
)


def big_article(marker: str, rng: random.Random) -> str:
    """A well-formed article of more than 2 MiB."""
    body = [f"BEGIN-{marker}"]
    while sum(map(len, body)) <= 2 << 20:
        body += paragraphs(rng, 50)
    return f"---\ntitle: Groß {marker}\ndate: 2025-01-01\nsummary: Sehr lang.\n---\n" + "\n\n".join(
        [*body, f"END-{marker}\n"]
    )


class Mutator(threading.Thread):
    """Adds, edits and deletes soak articles, rewrites config.yaml and drops hostile files until
    ``until``."""

    def __init__(self, soak: Soak, until: float) -> None:
        super().__init__(name="soak-mutator", daemon=True)
        self.soak = soak
        self.until = until
        self.rng = random.Random(soak.options.seed)
        self.hostile_rng = random.Random(soak.options.seed + 1)  # the changes stay as without hostiles
        self.alive: dict[int, tuple[Path, str, datetime]] = {}  # number -> path, marker, date
        self.numbers = 0
        self.config_number = 0
        self.dropped: list[Path] = []
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
        start = time.monotonic()
        middle = start + (self.until - start) / 2
        later = [self.hostile_rng.uniform(middle + 5, self.until - 6) for _ in range(int(seconds // 60))]
        rounds = [middle, *sorted(t for t in later if t > middle)] if soak.options.hostile else []
        while time.monotonic() < self.until:
            now = time.monotonic()
            if rounds and now >= rounds[0]:
                rounds.pop(0)
                self.hostile_round()
                continue
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
            date = (wall + timedelta(seconds=embargo)).replace(microsecond=0) + timedelta(seconds=1)
        else:
            date = (wall - timedelta(seconds=60)).replace(microsecond=0)
        text = article_text(number, marker, topic, date, date, rng)
        chunked = rng.random() < 0.5 if chunked is None else chunked
        (write_in_chunks if chunked else write_renamed)(path, text, rng)
        at = time.monotonic()
        if embargo:
            at += (date - datetime.now(UTC)).total_seconds()
        self.alive[number] = (path, marker, date)
        how = "in place, 3 chunks" if chunked else "renamed into place"
        soak.record(Change("embargo" if embargo else "add", marker, at, how))
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
        kind = list(BROKEN)[self.config_number % len(BROKEN)]
        self.config_number += 1
        text = soak_config(soak.base_config, soak.new_marker("C"), BROKEN[kind])
        soak.config.write_text(text, encoding="utf-8")
        broke = time.monotonic()
        soak.result.health_degraded.append(soak.wait_health("degraded", broke, 3.0, in_a_row=1))
        time.sleep(max(0.0, broke + 3.0 - time.monotonic()))  # stays broken for 3 s
        self.good_config()
        soak.result.health_ok.append(soak.wait_health("ok", time.monotonic(), 3.0, in_a_row=5))

    # -- hostile files ----------------------------------------------------------------------------

    def hostile_round(self) -> None:
        """Replace the last round's hostile files with new ones, one kind a second apart: what
        anyone who can write into the articles folder can plant."""
        soak, rng = self.soak, self.hostile_rng
        for path in self.dropped:
            path.unlink(missing_ok=True)
        self.dropped = []
        number = len(soak.result.drops) // len(soak.options.hostile) + 1
        for kind in soak.options.hostile:
            path = soak.articles / "klima" / f"{'leak' if kind == 'symlink' else kind}-{number}.md"
            if kind == "symlink":
                path.symlink_to(soak.outside)
            elif kind == "pipe":
                os.mkfifo(path)  # opening it for reading blocks until a writer opens it too
            else:
                write_renamed(path, BOMB if kind == "bomb" else big_article(soak.new_marker("B"), rng), rng)
            self.dropped.append(path)
            with soak.lock:
                soak.result.drops.append(f"{kind} {path.relative_to(soak.articles)}")
            time.sleep(min(1.0, max(0.0, self.until - time.monotonic())))


# -- the pollers and the health probe ----------------------------------------------------------


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
        self.lm_backwards = 0

    def get(self, path: str) -> tuple[int, dict[str, str], bytes, float, float]:
        headers = {"User-Agent": f"soak-poller/{self.number}"}
        if self.gzip:
            headers["Accept-Encoding"] = "gzip"
        etag, lm = self.cache.get(path, (None, None))
        if etag and self.mode in ("both", "inm"):
            headers["If-None-Match"] = etag
        if lm and self.mode in ("both", "ims"):
            headers["If-Modified-Since"] = lm
        sent = time.monotonic()
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(harness.HOST, self.soak.port, timeout=TIMEOUT)
            try:
                self.conn.request("GET", path, headers=headers)
                response = self.conn.getresponse()
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
            sent = time.monotonic()
            try:
                status, headers, body, sent, received = self.get(path)
            except (OSError, http.client.HTTPException) as exc:
                soak.failed(path, exc, sent)
                time.sleep(0.05)
                continue
            soak.answer(path, status, headers, body, sent, received)
            if status == 200 and "no-store" not in headers.get("cache-control", ""):
                old = self.cache.get(path)
                etag, lm = headers.get("etag"), headers.get("last-modified")
                if old and old[1] and lm and old[0] != etag and _http_time(lm) < _http_time(old[1]):
                    self.lm_backwards += 1
                self.cache[path] = (etag, lm)
            elif status == 404:
                self.cache.pop(path, None)

    def final_check(self, current: dict[str, set[str]], deadline: float) -> list[str]:
        """After the changes: a 304 must mean the client holds the current bytes, whichever
        worker answers (fresh connections land on any of them)."""
        stale: list[str] = []
        for path, (etag, _) in sorted(self.cache.items()):
            if not etag or path not in current:
                continue
            for _ in range(3):
                if time.monotonic() > deadline:
                    self.soak.result.final_cut_short = True
                    return stale
                self.close()
                sent = time.monotonic()
                try:
                    status, *_ = self.get(path)
                except (OSError, http.client.HTTPException) as exc:
                    self.soak.failed(path, exc, sent)
                    continue
                finally:
                    self.close()
                if status == 304 and _base(etag) not in current[path]:
                    holds = f"poller {self.number}, {self.mode}: holds {etag}"
                    stale.append(f"{path} ({holds}, current {sorted(current[path])})")
                    break
        return stale


class HealthProbe(threading.Thread):
    """Asks /healthz every HEALTH_EVERY seconds on a fresh connection and records how long it took."""

    def __init__(self, soak: Soak, until: float) -> None:
        super().__init__(name="soak-health", daemon=True)
        self.soak = soak
        self.until = until

    def run(self) -> None:
        result = self.soak.result
        while time.monotonic() < self.until:
            sent = time.monotonic()
            try:
                status = harness.fetch(self.soak.port, "/healthz", timeout=TIMEOUT).status
                took = time.monotonic() - sent
                result.health.append(took)
                if status != 200:
                    result.health_failures.append(f"{status} sent at {sent - self.soak.started:.1f} s")
            except (OSError, http.client.HTTPException) as exc:
                took = time.monotonic() - sent
                result.health_failures.append(
                    f"{type(exc).__name__}, sent at {sent - self.soak.started:.1f} s"
                )
                if isinstance(exc, TimeoutError):
                    result.health.append(took)
            time.sleep(max(0.0, HEALTH_EVERY - took))


def _base(etag: str | None) -> str:
    return (etag or "").replace("-gzip", "")


def _http_time(value: str) -> float:
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
        self.started = 0.0  # monotonic: when the pollers started
        self.config = work / "site" / "config.yaml"
        self.articles = work / "site" / "articles"
        rng = random.Random(options.seed)
        self.secret = f"SOAKSECRET{rng.randrange(16**12):012x}X"
        self.outside = work / "outside" / "secret.md"  # the symlink's target, outside the site
        self.base_config = ""
        self.static: list[str] = []
        self.pages: list[str] = []
        self.summary_feeds: set[str] = set()  # operator feeds with content: summary
        self.full_paths: set[str] = set()  # feeds that show whole bodies
        self.listing_paths: set[str] = set()  # documents that list every article (for deletions)
        self.markers = 0
        self.pending: dict[str, Change] = {}  # marker -> change not yet seen (add, edit, embargo, config)
        self.deletions: dict[str, Change] = {}
        self.bodies: set[bytes] = set()
        self.checks: list[tuple[str, Future[tuple[str | None, list[str], list[str]]]]] = []
        self.dates: dict[tuple[str, str], list[str]] = defaultdict(list)  # Last-Modified in order seen
        self.date_spans: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(dict)  # first, last
        self.executor: ProcessPoolExecutor | None = None

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

    def failed(self, path: str, exc: BaseException, sent: float) -> None:
        with self.lock:
            if isinstance(exc, TimeoutError):
                self.result.hangs.append(f"{path} sent at {sent - self.started:.1f} s")
            else:
                self.result.client_errors[type(exc).__name__] += 1

    def answer(
        self, path: str, status: int, headers: dict[str, str], body: bytes, sent: float, received: float
    ) -> None:
        result = self.result
        etag, lm = headers.get("etag"), headers.get("last-modified")
        cacheable = "no-store" not in headers.get("cache-control", "")
        with self.lock:
            result.requests += 1
            result.statuses[status] += 1
            if status >= 500:
                retry = f" (Retry-After: {headers['retry-after']})" if "retry-after" in headers else ""
                result.fivexx.append(f"{status} {path}{retry}: {body[:200]!r}")
            if etag and lm and status in (200, 304) and cacheable:
                dates = self.dates[(path, _base(etag))]
                if not dates or dates[-1] != lm:
                    dates.append(lm)
                span = self.date_spans[(path, _base(etag))].setdefault(lm, [received, received])
                span[1] = received
        if body and headers.get("content-encoding") == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                with self.lock:
                    result.malformed.append(f"{path}: bad gzip ({exc})")
                return
        text = body.decode("utf-8", "replace")
        found = set(MARKER.findall(text))
        with self.lock:
            if self.secret in text:
                result.leaks.append(f"{status} {path}")
            if status != 200:
                return
            result.uncacheable += not cacheable
            result.big_shown += any(m.startswith("SOAKB") for m in found)
            for marker in found:
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
            kind = (
                "feed" if path.startswith("/feeds/") else "page" if path.startswith("/articles/") else "index"
            )
            future = self.executor.submit(check_document, kind, path in self.full_paths, body)
            with self.lock:
                self.checks.append((path, future))

    def wait_health(self, status: str, since: float, timeout: float, in_a_row: int) -> float | None:
        """Seconds until /healthz (fresh connections, so any worker) says ``status`` ``in_a_row`` times."""
        deadline, streak = since + timeout, 0
        while time.monotonic() < deadline:
            try:
                reply = harness.fetch(self.port, "/healthz", timeout=2.0)
            except (OSError, http.client.HTTPException):
                reply = harness.Reply(0, {}, b"{}")
            ok = reply.status == 200 and json.loads(reply.body).get("status") == status
            streak = streak + 1 if ok else 0  # a non-200 is the health probe's to report
            if streak >= in_a_row:
                return time.monotonic() - since
            time.sleep(0.02)
        return None

    # -- set-up, run, tear-down -----------------------------------------------------------------

    def prepare(self) -> None:
        import yaml

        harness.copy_demo_site(self.work / "site")
        self.base_config = self.config.read_text(encoding="utf-8")
        self.config.write_text(soak_config(self.base_config, "SOAKC0X"), encoding="utf-8")
        self.outside.parent.mkdir()
        self.outside.write_text(
            f"---\ntitle: Geheim {self.secret}\ndate: 2025-01-01\n---\n{self.secret} darf nie erscheinen.\n",
            encoding="utf-8",
        )
        data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        default = (data.get("defaults") or {}).get("content", "full")
        self.summary_feeds = {
            n for n, spec in data["feeds"].items() if spec.get("content", default) == "summary"
        }

    def discover(self) -> None:
        """Every feed linked from the index (RSS and Atom), the index, and some demo pages."""
        reply = harness.fetch(self.port, "/", timeout=TIMEOUT)
        if reply.status != 200:
            raise RuntimeError(f"index answered {reply.status}")
        text = reply.body.decode()
        feeds = sorted(set(re.findall(r'href="[^"]*?(/feeds/[a-z0-9_-]+\.(?:rss|atom))"', text)))
        pages = sorted(set(re.findall(r'href="[^"]*?(/articles/[^"#?]+)"', text)))
        chosen = random.Random(self.options.seed).sample(pages, min(PAGES, len(pages)))
        self.static = feeds + ["/"] + chosen
        self.full_paths = {f for f in feeds if f.rsplit("/", 1)[1].split(".")[0] not in self.summary_feeds}
        self.listing_paths = {"/feeds/alle.rss", "/feeds/alle.atom", "/"}

    def final_consensus(self, deadline: float, tries: int = 6) -> dict[str, set[str]]:
        """Ask for every URL on fresh connections (so every worker answers): one ETag each, and
        one Last-Modified per ETag, once the changes have settled."""
        current: dict[str, set[str]] = {}
        for path in self.targets():
            answers = set()
            for _ in range(tries):
                if time.monotonic() > deadline:
                    self.result.final_cut_short = True
                    return current
                sent = time.monotonic()
                try:
                    reply = harness.fetch(self.port, path, timeout=TIMEOUT)
                except (OSError, http.client.HTTPException) as exc:
                    self.failed(path, exc, sent)
                    continue
                if reply.status == 200 and "no-store" not in reply.headers.get("cache-control", ""):
                    answers.add((_base(reply.headers.get("etag")), reply.headers.get("last-modified", "")))
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
        result.server_version = f"{options.server} {version(options.server)}"
        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        server = harness.start(
            harness.SERVERS[options.server],
            self.work / "server.log",
            config=self.config,
            state_dir=self.work / "state",
            memory_limit=MEMORY_LIMIT,
            cwd=self.work,
        )
        self.port = server.port
        try:
            self.discover()
            self.executor.submit(check_document, "index", False, b"<html><body></body></html>").result(60)
            self.started = time.monotonic()
            until = self.started + options.seconds
            pollers = [Poller(self, n, until) for n in range(options.pollers)]
            threads: list[threading.Thread] = [*pollers, HealthProbe(self, until)]
            for thread in threads:
                thread.start()
            time.sleep(min(1.0, options.seconds / 10))  # every worker has rendered what it serves
            result.rss_start = server_rss(server)
            mutator = Mutator(self, until - TAIL)
            mutator.start()
            mutator.join(options.seconds + 120)
            for thread in threads:
                thread.join(max(0.0, until - time.monotonic()) + 2 * TIMEOUT)
            result.duration = time.monotonic() - self.started
            result.rss_end = server_rss(server)
            if mutator.error is not None:
                raise RuntimeError(f"mutator failed: {mutator.error!r}") from mutator.error
            deadline = time.monotonic() + FINAL_BUDGET
            current = self.final_consensus(deadline)
            for poller in pollers:
                result.stale_caches += poller.final_check(current, deadline)
                result.lm_backwards += poller.lm_backwards
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited with {server.process.returncode} during the soak")
        finally:
            harness.stop(server)
            self.executor.shutdown(wait=False, cancel_futures=False)
        self.collect(server.log)
        return result

    def collect(self, log: Path) -> None:
        result = self.result
        for path, future in self.checks:
            try:
                malformed, truncated, hollow = future.result(timeout=300)
            except Exception as exc:  # noqa: BLE001
                malformed, truncated, hollow = f"checker failed: {exc!r}", [], []
            result.validated += 1
            if malformed:
                result.malformed.append(f"{path}: {malformed}")
            result.truncated += [f"{path}: {t}" for t in truncated]
            result.hollow += [f"{path}: {h}" for h in hollow]
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        result.urls = len(self.static) + MAX_POOL
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
        result.tracebacks = log.read_text(errors="replace").count("Traceback (most recent call last)")


def server_rss(server: harness.Server) -> dict[str, float]:
    """VmRSS of the main process and of each worker (every descendant), in MB."""
    main, *workers = server.memory().items()
    return {"main": main[1].rss_mb, **{str(pid): m.rss_mb for pid, m in workers}}


def run(options: Options, keep: Path | None = None) -> Result:
    """Run one soak; the server is always stopped, and the site, its state and the server log
    removed afterwards unless they are kept in ``keep`` (a new folder)."""
    with tempfile.TemporaryDirectory(prefix="feeds-soak-") as temporary:
        work = keep or Path(temporary)
        work.mkdir(parents=True, exist_ok=keep is None)
        result = Soak(options, work).run()
    if options.out is not None:
        write_report(options.out, result.markdown())
    return result


def write_report(out: Path, report: str) -> None:
    """Replace the report between the soak.py markers, keeping anything else in the file."""
    section = f"{BEGIN_MARK}\n{report}{END_MARK}\n"
    try:
        text = out.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    if BEGIN_MARK in text and END_MARK in text:
        head, rest = text.split(BEGIN_MARK, 1)
        tail = rest.split(END_MARK, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pollers", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, help="overrides --minutes")
    parser.add_argument("--server", choices=sorted(harness.SERVERS), default="granian")
    parser.add_argument("--out", type=Path, help="write the report into this Markdown file")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="a new folder to keep the site, state and server log in")
    parser.add_argument(
        "--hostile",
        default=",".join(HOSTILE),
        help="hostile files to drop, comma-separated (default: all; '' none)",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    if seconds < 10:
        parser.error("run at least 10 seconds")
    hostile = tuple(kind for kind in args.hostile.split(",") if kind)
    if set(hostile) - set(HOSTILE):
        parser.error(f"--hostile: choose from {', '.join(HOSTILE)}")
    options = Options(args.pollers, seconds, args.server, args.out, args.seed, hostile)
    result = run(options, args.keep)
    print(result.markdown())
    return 1 if result.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
