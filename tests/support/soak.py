"""Soak test: pollers against the production server while articles, config.yaml and hostile
files change under it. What it does and checks: bench/SOAK.md.

    .venv/bin/python bench/soak.py --pollers 16 --minutes 3 [--server granian|gunicorn] [--out bench/SOAK.md]

Prints the report (with --out also written between the soak.py markers of that file) and exits
1 if a required check failed. ``--seconds`` overrides ``--minutes`` (tests/test_soak.py runs 20);
``--hostile`` picks the hostile files (default all: symlink,bomb,big,pipe). Top-down: the report
(one table of checks), the document checker, what the mutator writes, then :class:`Soak`.

It lives in tests/support because tests/test_soak.py runs it too; ``bench/soak.py`` is its
command line. The checker runs in a spawned process, which imports it as ``support.soak``.
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
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from support import harness

LATENCY_LIMIT = 2.0  # seconds: the promise for every change
HEALTH_LIMIT, HEALTH_EVERY = 1.0, 0.25  # /healthz answers within 1 s, asked every 250 ms
TIMEOUT = 10.0  # every request; one that takes longer is a hang
TAIL = 3.0  # seconds without changes at the end, so the last ones can be seen
FINAL_BUDGET = 60.0  # seconds for the checks after the run (a wedged server would take hours)
MEMORY_LIMIT = 3 << 30  # bytes of address space per server process
PAGES = 8  # demo pages polled besides the soak articles' own pages
MAX_POOL = 18  # soak articles alive at once (the demo has 23; "alle" and the index show 50)
TOPICS = ("klima", "sport", "science", "wirtschaft")
HOSTILE = ("symlink", "bomb", "big", "pipe")
KINDS = ("add", "edit", "delete", "embargo", "config")  # of changes
ETAGS_DIFFER, DATES_DIFFER = "ETag differs at the end", "one ETag, different Last-Modified at the end"
ALTERNATING = "one ETag, two Last-Modified in alternation"  # incidents (details) with a long name
MARKER = re.compile(r"SOAK[MCB]\d+X")  # M: a soak article, C: a config, B: the big article
BODY_MARKER = re.compile(r"SOAK[MB]\d+X")  # articles whose whole body full documents must show
BEGIN_MARK, END_MARK = "<!-- soak.py: begin -->", "<!-- soak.py: end -->"
WORDS = "Stadt Rat Messung Bericht Wetter Spiel Markt Studie Labor Hafen Netz Brücke Ernte Strom Bahn".split()
BROKEN = {  # appended to the feeds: block; each breaks config.yaml in its own way
    "syntax error": "  kaputt:\n    title: Kaputt\n   limit: 5\n",
    "unknown key": "  kaputt:\n    titel: Kaputt\n",
    "bad value": "  kaputt:\n    title: Kaputt\n    limit: viele\n",
}
# A YAML alias bomb in ``tags:`` (0.5 KB): 9 anchors, each a list of 9 of the one before.
BOMB = (
    "---\ntitle: Alias-Bombe\ndate: 2025-01-01\ntags:\n"
    + "".join(f"  - &a{i} [{', '.join([f'*a{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9))
    + "---\nEine Alias-Bombe.\n"
)


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
    """What a run saw: counts, timings, and the incidents of each check (the report's details)."""

    options: Options
    started: datetime
    duration: float = 0.0
    server_version: str = ""
    urls: int = 0
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    uncacheable: int = 0  # 200s with Cache-Control: no-store
    client_errors: Counter[str] = field(default_factory=Counter)  # resets; a timeout is a hang
    validated: int = 0  # distinct 200 bodies parsed
    big_shown: int = 0  # 200s showing the article larger than 2 MiB
    drops: list[str] = field(default_factory=list)  # hostile files dropped in
    health: list[float] = field(default_factory=list)  # /healthz latencies (probe)
    health_degraded: list[float | None] = field(default_factory=list)  # broken config -> degraded
    health_ok: list[float | None] = field(default_factory=list)  # fixed config -> ok, 5 in a row
    changes: list[Change] = field(default_factory=list)
    rss_start: str = ""  # the server's memory, as reported
    rss_end: str = ""
    tracebacks: int = 0
    final_checked: int = 0  # URLs asked at the end
    final_cut_short: bool = False
    lm_window: float = 0.0  # the longest time two dates of one ETag were served side by side
    lm_backwards: int = 0  # a new ETag with an older Last-Modified, on one connection
    incidents: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def latencies(self, kind: str = "") -> list[float]:
        return [c.seen - c.at for c in self.changes if c.seen is not None and kind in ("", c.kind)]

    @property
    def max_latency(self) -> float:
        return max(self.latencies(), default=0.0)

    @property
    def health_max(self) -> float:
        return max(self.health, default=0.0)

    def rows(self) -> list[tuple[str, str, bool | None]]:
        """The table: (measure, value, verdict); a row with a verdict is a required check."""
        o, found, kinds = self.options, self.incidents, Counter(c.kind for c in self.changes)
        hows = Counter(f"{c.kind} ({c.how})" for c in self.changes)
        rate, share = self.requests / max(self.duration, 1e-9), self.statuses[304] / max(self.requests, 1)
        errors = sum(self.client_errors.values())

        def none(measure: str, key: str, more: str = "") -> tuple[str, str, bool]:
            return measure, f"{len(found[key])}{more}", not found[key]

        def listed(counts: Counter[str]) -> str:
            return ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))

        health = f"/healthz every {HEALTH_EVERY:g} s on a fresh connection: 200 within {HEALTH_LIMIT:g} s"
        final = f"at the end, {self.final_checked} URLs × 6 fresh connections: URLs whose ETag differs"
        window = f", for at most {self.lm_window:.2f} s" if found[ALTERNATING] else ""
        return [
            (
                "pollers",
                f"{o.pollers} threads, one keep-alive connection each; conditional GETs on "
                f"{self.urls} URLs (every feed as RSS, Atom and JSON Feed, the index, {PAGES} demo pages, "
                "the soak articles' pages)",
                None,
            ),
            (
                "requests",
                f"{self.requests:,} ({rate:,.0f}/s); 304 share {share:.0%}; "
                f"200s marked no-store: {self.uncacheable:,}",
                None,
            ),
            ("status counts", ", ".join(f"{k}: {v:,}" for k, v in sorted(self.statuses.items())), None),
            none("5xx", "5xx"),
            none(f"hangs (no answer within {TIMEOUT:g} s)", "hangs"),
            none("malformed documents", "malformed", f" of {self.validated:,} distinct 200 bodies parsed"),
            none("incomplete: truncated entries (body without its end)", "truncated"),
            none("incomplete: hollow entries (no summary or content) or pages (no body)", "hollow"),
            ("client errors (resets)", f"{errors} {dict(self.client_errors)}", None),
            (
                health,
                f"{_stats(self.health)}; failed: {len(found['/healthz failed'])}",
                not found["/healthz failed"] and self.health_max < HEALTH_LIMIT,
            ),
            (
                "hostile files dropped",
                f"{len(self.drops)}: {', '.join(self.drops)}",
                bool(self.drops or not o.hostile),
            ),
            none("responses with the secret of the file outside (symlink target)", "secret served"),
            ("200s showing the article larger than 2 MiB", f"{self.big_shown:,}", None),
            ("changes", f"{len(self.changes)}: {listed(kinds)}", bool(self.changes)),
            ("how", listed(hows), None),
            none("changes never seen", "never seen"),
            ("change → visible, all", _stats(self.latencies()), self.max_latency < LATENCY_LIMIT),
            *((f"change → visible, {k}", _stats(self.latencies(k)), None) for k in KINDS if kinds[k]),
            none("embargoed articles seen before their time", "seen before their embargo"),
            (
                "broken config → /healthz degraded",
                f"{len(self.health_degraded)}: {_seconds(self.health_degraded)}",
                None,
            ),
            ("fixed config → /healthz ok (5 in a row)", _seconds(self.health_ok), None),
            ("server RSS at start", self.rss_start, None),
            ("server RSS at end", self.rss_end, None),
            ("tracebacks in the server log", f"{self.tracebacks}", not self.tracebacks),
            none(final, ETAGS_DIFFER, " (cut short: the server hung)" if self.final_cut_short else ""),
            none("at the end: URLs with one ETag but different Last-Modified", DATES_DIFFER),
            none(
                "at the end: pollers' outdated copies answered 304 (3 fresh connections each)", "stale caches"
            ),
            (
                "during the run: ETags served with two Last-Modified in alternation (workers disagree)",
                f"{len(found[ALTERNATING])}{window}",
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
        command = f"bench/soak.py --pollers {o.pollers} --seconds {o.seconds:g} --server {o.server}{hostile}"
        lines = [
            f"### Soak run {self.started:%Y-%m-%d %H:%M} UTC: {verdict}",
            "",
            f"`.venv/bin/python {command}` ({self.duration:.0f} s; {self.server_version}; 2 workers; "
            f"FEEDS_WATCH=1; {os.cpu_count()} CPUs; commit {harness.commit()})",
            "",
            "| measure | value |",
            "| --- | --- |",
            *(f"| {m} | {v}{'' if ok is None else ' ✅' if ok else ' ❌'} |" for m, v, ok in self.rows()),
        ]
        details = [
            f"- {k}: " + "; ".join(v[:5]) + (" …" if len(v) > 5 else "")
            for k, v in self.incidents.items()
            if v
        ]
        return "\n".join(lines + ([""] + details if details else [])) + "\n"


def _stats(values: list[float]) -> str:
    if not values:
        return "—"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    ms = [f"{v * 1000:.0f} ms" for v in (statistics.median(values), p95, ordered[-1])]
    return f"n={len(values)}, median {ms[0]}, p95 {ms[1]}, max {ms[2]}"


def _seconds(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    missing = len(values) - len(got)
    return (f"max {max(got):.2f} s" if got else "—") + (f", {missing} never" if missing else "")


# -- checking documents (in a separate process: feedparser is slow and holds the GIL) ---------


def _json_feed(body: bytes) -> Any:
    """A JSON Feed as the few feedparser keys the checks read (title, entries, content)."""
    import json

    doc = json.loads(body)
    if not isinstance(doc, dict) or not doc.get("title") or not isinstance(doc.get("items"), list):
        raise ValueError("not a JSON Feed with a title and items")
    entries = [
        {
            "id": item["id"],
            "title": item.get("title", ""),
            "summary": item.get("summary", ""),
            "content": [{"value": item["content_html"]}] if "content_html" in item else [],
        }
        for item in doc["items"]
    ]
    return _Parsed(feed={"title": doc["title"]}, entries=entries)


class _Parsed(dict[str, Any]):
    def __getattr__(self, name: str) -> Any:
        return self[name]


def check_document(kind: str, full: bool, body: bytes) -> tuple[str | None, list[str], list[str]]:
    """(why the document is malformed or None, truncated bodies, hollow entries or pages).

    ``kind``: feed, page (an article) or index; ``full``: a feed that shows whole articles.
    """
    import feedparser  # type: ignore[import-untyped]
    import lxml.etree
    import lxml.html

    try:
        if kind == "feed" and body.lstrip().startswith(b"{"):  # JSON Feed: feedparser 6 cannot
            parsed = _json_feed(body)
        elif kind == "feed":
            lxml.etree.fromstring(body)
            parsed = feedparser.parse(body)
            if parsed.bozo:
                return f"feedparser bozo: {parsed.get('bozo_exception')}", [], []
            if not parsed.feed.get("title"):
                return "feed without title", [], []
        else:
            text = body.decode("utf-8")
            root: Any = lxml.html.document_fromstring(text)  # lxml-stubs type xpath() results loosely
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


# -- what the mutator writes ----------------------------------------------------------------


def soak_config(base: str, marker: str, broken: str = "") -> str:
    """The demo config plus a ``soakcfg`` feed whose title carries the config's marker."""
    feed = f"  soakcfg:\n    title: Soak config {marker}\n    description: Changes with every rewrite\n"
    return base.rstrip("\n") + "\n" + feed + "    limit: 5\n" + broken


def paragraphs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.choices(WORDS, k=rng.randint(40, 90))).lower() + "." for _ in range(count)]


def article_text(
    number: int, marker: str, topic: str, date: datetime, updated: datetime, rng: random.Random
) -> str:
    title = " ".join(rng.choice(WORDS) for _ in range(4))
    body = "\n\n".join([f"BEGIN-{marker}", *paragraphs(rng, rng.randint(3, 8)), f"END-{marker}\n"])
    return (
        f"---\nid: soak-{number}\ntitle: Soak {marker} {title}\ndate: {date.isoformat()}\n"
        f"updated: {updated.isoformat()}\ntopics: [{topic}]\nsummary: Ein Soak-Artikel.\n---\n{body}"
    )


def big_article(marker: str, rng: random.Random) -> str:
    """A well-formed article of more than 2 MiB."""
    body = [f"BEGIN-{marker}"]
    while sum(map(len, body)) <= 2 << 20:
        body += paragraphs(rng, 50)
    text = "\n\n".join([*body, f"END-{marker}\n"])
    return f"---\ntitle: Groß {marker}\ndate: 2025-01-01\nsummary: Sehr lang.\n---\n{text}"


def write_file(path: Path, text: str, rng: random.Random, chunked: bool) -> None:
    """Chunked: in place, the handle open across three flushed chunks (an editor, rsync --inplace).
    Otherwise a temp file beside it (a dot name, as rsync and editors do) renamed over it."""
    if not chunked:
        tmp = path.with_name(f".{path.name}.{rng.randrange(16**6):06x}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return
    cuts = [0, *sorted(rng.sample(range(1, len(text)), 2)), len(text)]
    with open(path, "w", encoding="utf-8") as fh:
        for start, end in zip(cuts, cuts[1:], strict=False):
            fh.write(text[start:end])
            fh.flush()
            if end < len(text):
                time.sleep(rng.uniform(0.05, 0.25))


def _base(etag: str | None) -> str:
    return (etag or "").replace("-gzip", "")


def _http_time(value: str) -> float:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _cacheable(reply: harness.Reply) -> bool:
    return "no-store" not in reply.headers.get("cache-control", "")  # a cache would not store it


def get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> harness.Reply:
    """GET on a keep-alive connection (http.client reopens it after a close); a connection the
    server closed between requests is retried once."""
    for attempt in (1, 2):
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return harness.Reply(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# -- the run --------------------------------------------------------------------------------


class Soak:
    """The server, its site, and what the pollers, the /healthz probe and the mutator share."""

    def __init__(self, options: Options, work: Path) -> None:
        self.options, self.work, self.port = options, work, 0
        self.result = Result(options, datetime.now(UTC))
        self.lock = threading.Lock()
        self.started = 0.0  # monotonic: when the pollers started
        self.config, self.articles = work / "site" / "config.yaml", work / "site" / "articles"
        self.secret = f"SOAKSECRET{random.Random(options.seed).randrange(16**12):012x}X"
        self.outside = work / "outside" / "secret.md"  # the symlink's target, outside the site
        self.rng, self.hostile_rng = random.Random(options.seed), random.Random(options.seed + 1)
        self.base_config = ""
        self.static: list[str] = []  # feeds, the index, demo pages
        self.pages: list[str] = []  # the soak articles' pages
        self.full_paths: set[str] = set()  # feeds that show whole bodies
        self.listing_paths = {"/feeds/alle.rss", "/feeds/alle.atom", "/"}  # list every article
        self.caches: list[dict[str, tuple[str | None, str | None]]] = []  # per poller: path -> validators
        self.markers, self.numbers = 0, 0  # markers made, soak articles added
        self.alive: dict[int, tuple[Path, str, datetime]] = {}  # soak article -> path, marker, date
        self.dropped: list[Path] = []  # the last round of hostile files
        self.pending: dict[str, Change] = {}  # marker -> change not yet seen
        self.deletions: dict[str, Change] = {}
        self.bodies: set[bytes] = set()
        self.checks: list[tuple[str, Future[tuple[str | None, list[str], list[str]]]]] = []
        self.dates: dict[tuple[str, str], list[str]] = defaultdict(list)  # Last-Modified in order seen
        self.spans: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(dict)  # first, last seen
        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    def run(self) -> Result:
        options, result, log = self.options, self.result, self.work / "server.log"
        self.prepare()
        result.server_version = f"{options.server} {version(options.server)}"
        command, state = harness.SERVERS[options.server], self.work / "state"
        server = harness.start(
            command, log, config=self.config, state_dir=state, memory_limit=MEMORY_LIMIT, cwd=self.work
        )
        self.port = server.port
        try:
            self.discover()
            self.executor.submit(check_document, "index", False, b"<html><body></body></html>").result(60)
            self.started = time.monotonic()
            until = self.started + options.seconds
            self.caches = [{} for _ in range(options.pollers)]
            threads = [threading.Thread(target=self.poll, args=(n, until)) for n in range(options.pollers)]
            threads.append(threading.Thread(target=self.probe, args=(until,)))
            for thread in threads:
                thread.daemon = True
                thread.start()
            time.sleep(min(1.0, options.seconds / 10))  # every worker has rendered what it serves
            result.rss_start = server_rss(server)
            self.mutate(until - TAIL)
            for thread in threads:
                thread.join(max(0.0, until - time.monotonic()) + 2 * TIMEOUT)
            result.duration = time.monotonic() - self.started
            result.rss_end = server_rss(server)
            self.final(time.monotonic() + FINAL_BUDGET)
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited with {server.process.returncode} during the soak")
        finally:
            harness.stop(server)
            self.executor.shutdown(wait=False, cancel_futures=False)
        self.collect(log)
        return result

    def prepare(self) -> None:
        harness.copy_demo_site(self.work / "site")
        self.base_config = self.config.read_text(encoding="utf-8")
        self.config.write_text(soak_config(self.base_config, "SOAKC0X"), encoding="utf-8")
        self.outside.parent.mkdir()
        secret = (
            f"---\ntitle: Geheim {self.secret}\ndate: 2025-01-01\n---\n{self.secret} darf nie erscheinen.\n"
        )
        self.outside.write_text(secret, encoding="utf-8")

    def discover(self) -> None:
        """Every feed linked from the index (RSS, Atom, JSON Feed), the index, and some demo pages."""
        import yaml

        reply = harness.fetch(self.port, "/", timeout=TIMEOUT)
        if reply.status != 200:
            raise RuntimeError(f"index answered {reply.status}")
        text = reply.body.decode()
        feeds = sorted(set(re.findall(r'href="[^"]*?(/feeds/[a-z0-9_-]+\.(?:rss|atom|json))"', text)))
        pages = sorted(set(re.findall(r'href="[^"]*?(/articles/[^"#?]+)"', text)))
        self.static = [*feeds, "/", *random.Random(self.options.seed).sample(pages, min(PAGES, len(pages)))]
        data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        default = (data.get("defaults") or {}).get("content", "full")
        summary = {n for n, spec in data["feeds"].items() if spec.get("content", default) == "summary"}
        self.full_paths = {f for f in feeds if f.rsplit("/", 1)[1].split(".")[0] not in summary}

    # -- readers ----------------------------------------------------------------------------------

    def targets(self) -> list[str]:
        return self.static + self.pages

    def validators(self, number: int, path: str) -> dict[str, str]:
        """Poller ``number``'s request headers: a third send If-None-Match and If-Modified-Since,
        a third only If-Modified-Since, a third only If-None-Match; every other one asks for gzip."""
        mode, (etag, lm) = ("both", "ims", "inm")[number % 3], self.caches[number].get(path, (None, None))
        headers = {"User-Agent": f"soak-poller/{number}"} | (
            {"Accept-Encoding": "gzip"} if number % 2 else {}
        )
        if etag and mode != "ims":
            headers["If-None-Match"] = etag
        if lm and mode != "inm":
            headers["If-Modified-Since"] = lm
        return headers

    def poll(self, number: int, until: float) -> None:
        """A poller: one keep-alive connection walking every URL with conditional GETs."""
        conn = http.client.HTTPConnection(harness.HOST, self.port, timeout=TIMEOUT)
        cache, offset = self.caches[number], number * 7
        while time.monotonic() < until:
            targets = self.targets()
            path, offset, sent = targets[offset % len(targets)], offset + 1, time.monotonic()
            try:
                reply = get(conn, path, self.validators(number, path))
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self.failed(path, exc, sent)
                time.sleep(0.05)
                continue
            self.answer(path, reply, sent, time.monotonic())
            etag, lm = reply.headers.get("etag"), reply.headers.get("last-modified")
            if reply.status == 200 and _cacheable(reply):
                old = cache.get(path)
                if old and old[1] and lm and old[0] != etag and _http_time(lm) < _http_time(old[1]):
                    with self.lock:
                        self.result.lm_backwards += 1
                cache[path] = (etag, lm)
            elif reply.status == 404:
                cache.pop(path, None)
        conn.close()

    def failed(self, path: str, exc: BaseException, sent: float) -> None:
        with self.lock:
            if isinstance(exc, TimeoutError):
                self.result.incidents["hangs"].append(f"{path} sent at {sent - self.started:.1f} s")
            else:
                self.result.client_errors[type(exc).__name__] += 1

    def answer(self, path: str, reply: harness.Reply, sent: float, received: float) -> None:
        """Count an answer, see which changes it shows, and queue a new 200 body for the checker."""
        result, status, headers, body = self.result, reply.status, reply.headers, reply.body
        etag, lm = headers.get("etag"), headers.get("last-modified")
        with self.lock:
            result.requests += 1
            result.statuses[status] += 1
            if status >= 500:
                retry = f" (Retry-After: {headers['retry-after']})" if "retry-after" in headers else ""
                result.incidents["5xx"].append(f"{status} {path}{retry}: {body[:200]!r}")
            if etag and lm and status in (200, 304) and _cacheable(reply):
                key = (path, _base(etag))
                if not self.dates[key] or self.dates[key][-1] != lm:
                    self.dates[key].append(lm)
                self.spans[key].setdefault(lm, [received, received])[1] = received
        if body and headers.get("content-encoding") == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                with self.lock:
                    result.incidents["malformed"].append(f"{path}: bad gzip ({exc})")
                return
        text = body.decode("utf-8", "replace")
        found = set(MARKER.findall(text))
        with self.lock:
            if self.secret in text:
                result.incidents["secret served"].append(f"{status} {path}")
            if status != 200:
                return
            result.uncacheable += not _cacheable(reply)
            result.big_shown += any(m.startswith("SOAKB") for m in found)
            for marker in found:
                if change := self.pending.pop(marker, None):
                    change.seen, change.early = received, received < change.at
            if path in self.listing_paths:
                for marker, change in list(self.deletions.items()):
                    if sent > change.at and marker not in found:
                        change.seen = received
                        del self.deletions[marker]
            digest = hashlib.sha256(body).digest()
            new = digest not in self.bodies
            self.bodies.add(digest)
        if new:
            is_feed = path.startswith("/feeds/") and "." in path.rsplit("/", 1)[1]  # not its page
            kind = "feed" if is_feed else "page" if path.startswith("/articles/") else "index"
            future = self.executor.submit(check_document, kind, path in self.full_paths, body)
            with self.lock:
                self.checks.append((path, future))

    def probe(self, until: float) -> None:
        """/healthz every HEALTH_EVERY seconds on a fresh connection (so either worker answers)."""
        result, failed = self.result, self.result.incidents["/healthz failed"]
        while time.monotonic() < until:
            sent = time.monotonic()
            try:
                status = harness.fetch(self.port, "/healthz", timeout=TIMEOUT).status
                took = time.monotonic() - sent
                result.health.append(took)
                if status != 200:
                    failed.append(f"{status} sent at {sent - self.started:.1f} s")
            except (OSError, http.client.HTTPException) as exc:
                took = time.monotonic() - sent
                failed.append(f"{type(exc).__name__}, sent at {sent - self.started:.1f} s")
                result.health += [took] if isinstance(exc, TimeoutError) else []
            time.sleep(max(0.0, HEALTH_EVERY - took))

    def wait_health(self, status: str, since: float, in_a_row: int, timeout: float = 3.0) -> float | None:
        """Seconds until /healthz (fresh connections, so any worker) says ``status`` ``in_a_row`` times."""
        streak = 0
        while time.monotonic() < since + timeout:
            try:
                reply = harness.fetch(self.port, "/healthz", timeout=2.0)
            except (OSError, http.client.HTTPException):
                reply = harness.Reply(0, {}, b"{}")
            ok = reply.status == 200 and json.loads(reply.body).get("status") == status
            streak = streak + 1 if ok else 0  # a non-200 is the probe's to report
            if streak >= in_a_row:
                return time.monotonic() - since
            time.sleep(0.02)
        return None

    def fresh(self, path: str, headers: dict[str, str], times: int, end: float) -> Iterator[harness.Reply]:
        """``path`` asked ``times`` times on fresh connections (so any worker answers) until ``end``."""
        for _ in range(times):
            if time.monotonic() > end:
                self.result.final_cut_short = True
                return
            sent = time.monotonic()
            try:
                yield harness.fetch(self.port, path, headers, timeout=TIMEOUT)
            except (OSError, http.client.HTTPException) as exc:
                self.failed(path, exc, sent)

    def final(self, deadline: float) -> None:
        """Once the changes have settled, each URL on 6 fresh connections: one ETag, and one
        Last-Modified per ETag. A poller's outdated copy, asked with its own validators on 3
        fresh connections, must never be answered 304."""
        result = self.result
        for path in self.targets():
            replies = self.fresh(path, {}, 6, deadline)
            answers = {
                (_base(r.headers.get("etag")), r.headers.get("last-modified", ""))
                for r in replies
                if r.status == 200 and _cacheable(r)
            }
            if not answers:
                continue
            result.final_checked += 1
            current = {etag for etag, _ in answers}
            if len(current) > 1:
                result.incidents[ETAGS_DIFFER].append(f"{path}: {sorted(answers)}")
            elif len(answers) > 1:
                result.incidents[DATES_DIFFER].append(f"{path}: {sorted(lm for _, lm in answers)}")
            for number, cache in enumerate(self.caches):
                etag = cache.get(path, (None, None))[0]
                if not etag or _base(etag) in current:
                    continue
                if any(r.status == 304 for r in self.fresh(path, self.validators(number, path), 3, deadline)):
                    stale = f"{path} (poller {number}: holds {etag}, current {sorted(current)})"
                    result.incidents["stale caches"].append(stale)

    def collect(self, log: Path) -> None:
        result = self.result
        for path, future in self.checks:
            try:
                malformed, truncated, hollow = future.result(timeout=300)
            except Exception as exc:  # noqa: BLE001
                malformed, truncated, hollow = f"checker failed: {exc!r}", [], []
            result.validated += 1
            result.incidents["malformed"] += [f"{path}: {malformed}"] if malformed else []
            result.incidents["truncated"] += [f"{path}: {t}" for t in truncated]
            result.incidents["hollow"] += [f"{path}: {h}" for h in hollow]
        self.executor.shutdown(wait=True)
        result.urls = len(self.static) + MAX_POOL
        for (path, etag), dates in sorted(self.dates.items()):
            if len(dates) == len(set(dates)):
                continue
            # From the first answer with the date that lasted to the last answer with another one.
            spans = self.spans[(path, etag)]
            final = max(spans, key=lambda lm: spans[lm][1])
            window = max(spans[lm][1] for lm in spans if lm != final) - spans[final][0]
            result.lm_window = max(result.lm_window, window)
            alternated = " ⇄ ".join(sorted(set(dates), key=_http_time))
            result.incidents[ALTERNATING].append(
                f"{path} {etag}: {alternated} ({len(dates) - 1} switches in {max(window, 0):.2f} s)"
            )
        for c in result.changes:
            result.incidents["never seen"] += [f"{c.kind} {c.marker} ({c.how})"] * (c.seen is None)
            result.incidents["seen before their embargo"] += [c.marker] * c.early
        result.tracebacks = log.read_text(errors="replace").count("Traceback (most recent call last)")

    # -- the mutator ------------------------------------------------------------------------------

    def mutate(self, until: float) -> None:
        """Add, edit, delete and embargo soak articles, rewrite config.yaml (every other time
        broken for 3 s) and drop hostile files (midway, then about once a minute) until ``until``."""
        rng, seconds, start = self.rng, self.options.seconds, time.monotonic()
        config_every = min(15.0, max(6.0, seconds / 4))
        next_config, broken_next = start + min(3.0, config_every), True  # a short run breaks it early
        middle = start + (until - start) / 2
        later = sorted(self.hostile_rng.uniform(middle + 5, until - 6) for _ in range(int(seconds // 60)))
        rounds = [middle, *(t for t in later if t > middle)] if self.options.hostile else []
        while (now := time.monotonic()) < until:
            if rounds and now >= rounds[0]:
                rounds.pop(0)
                self.hostile_round(until)
            elif now >= next_config:
                if broken_next and now + 7.0 < until:
                    self.broken_config()
                elif now + 1.0 < until:
                    self.good_config()
                broken_next, next_config = not broken_next, time.monotonic() + config_every
            else:
                self.change_articles()
                time.sleep(min(max(0.0, until - time.monotonic()), rng.uniform(0.3, 0.9)))

    def change_articles(self) -> None:
        """One random step: an article may change again once its last change was seen (or has
        surely been missed); at most MAX_POOL soak articles at once."""
        with self.lock:
            late = {c.marker for c in self.pending.values() if time.monotonic() - c.at <= 2 * LATENCY_LIMIT}
        ready = [n for n, (_, marker, _) in self.alive.items() if marker not in late]
        action = self.rng.choices(("add", "edit", "delete", "embargo", "burst"), (30, 35, 20, 5, 10))[0]
        if len(self.alive) >= MAX_POOL and action in ("add", "embargo", "burst"):
            action = "delete"
        if action in ("edit", "delete") and not ready:
            action = "add" if len(self.alive) < MAX_POOL else "wait"
        if action == "burst":  # several files at once: one batch in one worker, maybe two in another
            for _ in range(min(3, MAX_POOL - len(self.alive))):
                self.write_article("add", chunked=False)
        elif action in ("add", "embargo", "edit"):
            self.write_article(action, self.rng.choice(ready) if action == "edit" else 0)
        elif action == "delete":
            path, marker, _ = self.alive.pop(self.rng.choice(ready))
            path.unlink()
            self.record(Change("delete", marker, time.monotonic(), "unlinked"))

    def write_article(self, kind: str, number: int = 0, chunked: bool | None = None) -> None:
        """Add (embargo: dated 2 to 4 s ahead) or edit a soak article, in place in three chunks
        or renamed into place."""
        rng, marker, wall = self.rng, self.new_marker("M"), datetime.now(UTC)
        if kind == "edit":
            path, _, date = self.alive[number]
            updated = max(date, (wall - timedelta(seconds=1)).replace(microsecond=0))
        else:
            self.numbers += 1
            number, topic = self.numbers, rng.choice(TOPICS)
            path = self.articles / topic / f"soak-{number}.md"
            path.parent.mkdir(exist_ok=True)
            ahead = timedelta(seconds=rng.uniform(2.0, 4.0) + 1 if kind == "embargo" else -60)
            date = updated = (wall + ahead).replace(microsecond=0)
        chunked = rng.random() < (0.6 if kind == "edit" else 0.5) if chunked is None else chunked
        write_file(path, article_text(number, marker, path.parent.name, date, updated, rng), rng, chunked)
        at = time.monotonic() + ((date - datetime.now(UTC)).total_seconds() if kind == "embargo" else 0.0)
        self.alive[number] = (path, marker, date)
        how = "in place, 3 chunks" if chunked else "renamed over" if kind == "edit" else "renamed into place"
        self.record(Change(kind, marker, at, how))

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
        self.pages = [f"/articles/soak-{n}" for n in self.alive]

    def good_config(self) -> None:
        marker, renamed = self.new_marker("C"), self.rng.random() < 0.5
        text = soak_config(self.base_config, marker)
        if renamed:
            write_file(self.config, text, self.rng, chunked=False)
        else:  # in place, in one write
            self.config.write_text(text, encoding="utf-8")
        self.record(
            Change("config", marker, time.monotonic(), "renamed into place" if renamed else "in place")
        )

    def broken_config(self) -> None:
        """Broken for 3 s (each kind in turn): /healthz turns degraded, then ok again after the fix."""
        kind = list(BROKEN)[len(self.result.health_degraded) % len(BROKEN)]
        self.config.write_text(
            soak_config(self.base_config, self.new_marker("C"), BROKEN[kind]), encoding="utf-8"
        )
        broke = time.monotonic()
        self.result.health_degraded.append(self.wait_health("degraded", broke, in_a_row=1))
        time.sleep(max(0.0, broke + 3.0 - time.monotonic()))
        self.good_config()
        self.result.health_ok.append(self.wait_health("ok", time.monotonic(), in_a_row=5))

    def hostile_round(self, until: float) -> None:
        """Replace the last round's hostile files with new ones, one kind a second apart: what
        anyone who can write into the articles folder can plant."""
        rng, kinds = self.hostile_rng, self.options.hostile
        number = len(self.result.drops) // len(kinds) + 1
        for old in self.dropped:
            old.unlink(missing_ok=True)
        self.dropped = []
        for kind in kinds:
            path = self.articles / "klima" / f"{'leak' if kind == 'symlink' else kind}-{number}.md"
            if kind == "symlink":
                path.symlink_to(self.outside)
            elif kind == "pipe":
                os.mkfifo(path)  # opening it for reading blocks until a writer opens it too
            else:
                text = BOMB if kind == "bomb" else big_article(self.new_marker("B"), rng)
                write_file(path, text, rng, chunked=False)
            self.dropped.append(path)
            with self.lock:
                self.result.drops.append(f"{kind} {path.relative_to(self.articles)}")
            time.sleep(min(1.0, max(0.0, until - time.monotonic())))


def server_rss(server: harness.Server) -> str:
    """VmRSS of the workers (every descendant) and of the main process."""
    (_, main), *workers = server.memory().items()
    parts = " + ".join(f"{m.rss_mb:.1f}" for _, m in workers)
    total = sum(m.rss_mb for _, m in workers)
    return f"{total:.1f} MB ({parts}; main process {main.rss_mb:.1f} MB)" if workers else "n/a"


def run(options: Options, keep: Path | None = None) -> Result:
    """One soak; the server is always stopped, and the site, its state and the server log
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
    text = out.read_text(encoding="utf-8") if out.exists() else ""
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
    add = parser.add_argument
    add("--pollers", type=int, default=16)
    add("--minutes", type=float, default=5.0)
    add("--seconds", type=float, help="overrides --minutes")
    add("--server", choices=sorted(harness.SERVERS), default="granian")
    add("--out", type=Path, help="write the report into this Markdown file")
    add("--seed", type=int, default=5)
    add("--keep", type=Path, help="a new folder to keep the site, state and server log in")
    add("--hostile", default=",".join(HOSTILE), help="hostile files to drop, comma-separated ('' none)")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    hostile = tuple(kind for kind in args.hostile.split(",") if kind)
    if seconds < 10:
        parser.error("run at least 10 seconds")
    if set(hostile) - set(HOSTILE):
        parser.error(f"--hostile: choose from {', '.join(HOSTILE)}")
    result = run(Options(args.pollers, seconds, args.server, args.out, args.seed, hostile), args.keep)
    print(result.markdown())
    return 1 if result.failures() else 0
