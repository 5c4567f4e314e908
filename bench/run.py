#!/usr/bin/env python3
"""The benchmark: the project against nginx, a bare WSGI callable and the naive Flask view.

    .venv/bin/python bench/run.py [--sizes 10000,100000] [--duration 10] [--out bench/results.md]
    .venv/bin/python bench/run.py --budget [--baseline REV] [--rounds 3] [--sizes 10000]

For each archive size (bench/generate.py) it polls /feeds/kurz.rss (50 entries, summary) with
wrk: 304s, cached 200s identity and gzip. At the largest size it measures cold and warm start,
peak memory per worker, the time from a file change to every worker serving it, and rendering
a feed from a cold cache. Prints a Markdown report and writes it to --out. See bench/README.md.

With ``--budget`` it measures the polling budget instead (issue 19): polling under granian
with ``polling:`` off and on, and the project as it was at ``--baseline REV``, side by side.

This module also holds ``bare_app``, the WSGI yardstick (``run:bare_app``), and
``baseline_app``, the project at ``--baseline`` (``run:baseline_app``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import hashlib
import http.client
import importlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

# The harness (servers on loopback) lives with the tests, which share it: tests/support/harness.py.
# A granian worker serving ``run:bare_app`` imports this module too, so the path is set here.
TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support import harness  # noqa: E402
from support.harness import BIN, REPO, Command, Server  # noqa: E402

BENCH = REPO / "bench"
FEED = "/feeds/kurz.rss"
CASES = ("304", "200 identity", "200 gzip")
CONTRACT_HEADERS = ("etag", "last-modified", "cache-control", "vary")
NAIVE_WRK_MAX = 10_000  # above this many articles the naive view gets one timed request, not wrk
NAIVE_SMALL = 1_000  # the naive view is also measured over this many articles
NAIVE_TIMEOUT = 120.0  # seconds for that one request
GUNICORN = ("--log-level", "warning", "--timeout", "300")  # the naive view takes a minute at scale
GRANIAN = ("--log-level", "warning")
PROJECT: dict[str, Command] = {  # gunicorn: the README's alternative command, sync workers
    "project: granian wsgi ×2": lambda port: harness.production_command(port, extra=GRANIAN),
    "project: gunicorn sync ×2": lambda port: harness.gunicorn_command(port, extra=GUNICORN),
}
BARE = "bare WSGI: granian wsgi ×2"
NAIVE = "naive Flask+feedgen: gunicorn sync ×2"
NGINX = "nginx: static export"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="archive sizes (default %(default)s)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/feeds-bench"), help="archives are kept here")
    parser.add_argument("--out", type=Path, help="the report (default bench/results.md, or budget.md)")
    parser.add_argument("--budget", action="store_true", help="measure the polling budget only")
    parser.add_argument("--baseline", metavar="REV", help="with --budget: today's code, a git revision")
    parser.add_argument("--rounds", type=int, default=3, help="with --budget: alternations (default 3)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    ensure_tools(naive=not args.budget)
    if args.budget:
        return budget_report(args, sizes)
    started, load, command = time.perf_counter(), loadavg(), " ".join(["bench/run.py", *sys.argv[1:]])
    lines = [
        f"# Benchmark results\n\n`.venv/bin/python {command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n",
        f"Machine: {machine()}.\n",
        f"Polling `{FEED}` (50 entries, summary) with `wrk -t2 -c16 -d{args.duration:g}s --latency` on the "
        "same machine (client and server share the CPUs). `vs nginx`: requests/s relative to nginx serving "
        "the `feeds build` export, same case, same run.\n",
    ]
    targets = [t for n in sizes for t in polling(archive(args.work, n), args.work, args.duration, lines)]
    if NAIVE_SMALL not in sizes:  # the yardstick
        r = naive_view(archive(args.work, NAIVE_SMALL), args.work, args.duration).cases["200 identity"]
        lines.append(
            f"Naive view over {NAIVE_SMALL:,} articles: {rps(r.rps)} req/s, p50 {ms(r.p50)} ms, p99 "
            f"{ms(r.p99)} ms ({r.requests} requests in {min(args.duration, 10):g} s; {NAIVE}).\n"
        )
    targets += scale(archive(args.work, sizes[-1]), args.work, lines)
    lines += ["### Targets (issue 4)\n", "| target | measured | result |", "| --- | --- | --- |"]
    lines += [f"| {name} | {measured} | {'pass' if ok else 'FAIL'} |" for name, measured, ok in targets]
    minutes = (time.perf_counter() - started) / 60
    lines.append(f"\nLoad average {load} at the start, {loadavg()} at the end. Total: {minutes:.1f} min.")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    log(f"wrote {args.out}")
    return 0


# -- polling: every server over one archive -------------------------------------------------------

Target = tuple[str, str, bool]  # target, measured, met


@dataclass
class Wrk:
    rps: float
    p50: float  # ms
    p99: float  # ms
    requests: int = 0
    bytes_each: float = 0.0  # bytes read per response, headers included
    errors: int = 0  # socket errors and non-2xx/3xx answers
    statuses: dict[int, int] = field(default_factory=dict)  # only from a counting run
    estimated: bool = False


@dataclass
class Polled:
    cases: dict[str, Wrk]
    peak_mb: float  # the largest VmHWM among the server's workers
    note: str
    ok: bool = True  # every 304 a 304, contract headers intact, same bytes as the export


def polling(config: Path, work: Path, duration: float, lines: list[str]) -> list[Target]:
    """One archive under nginx (first: the ratios' base), the project, the yardstick, the naive view."""
    size, out = size_of(config), export(config)
    feed, zipped = (out / "feeds" / "kurz.rss").read_bytes(), (out / "feeds" / "kurz.rss.gz").read_bytes()
    with serve(nginx_command(work, out), work, f"{size}-nginx", ready=FEED, timeout=30) as server:
        servers = {NGINX: measure(server, work, duration, CASES, None)}
    for name, command in PROJECT.items():
        with serve(command, work, f"{size}-{name.split()[1]}", config=config) as server:
            servers[name] = measure(server, work, duration, CASES, feed)
    env = {"BENCH_BARE_BODY": str(out / "feeds" / "kurz.rss")}
    with serve(bare_command, work, f"{size}-bare", env=env, ready=FEED, timeout=60) as server:
        servers[BARE] = measure(server, work, duration, ("200 identity",), None)
    servers[NAIVE] = naive_view(config, work, duration)
    nginx = servers[NGINX].cases
    lines += [
        f"### {size:,} articles; feed {len(feed):,} B, gzip {len(zipped):,} B\n",
        "| server | case | req/s | p50 ms | p99 ms | vs nginx | worker peak RSS MB | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, polled in servers.items():
        for i, (case, r) in enumerate(polled.cases.items()):
            share = r.rps / nginx[case].rps if nginx[case].rps else 0.0
            ratio = f"{share:.0%}" if share >= 0.01 else f"{share * 100:.2g}%"
            notes = "; ".join([polled.note] * (i == 0) + [f"{r.errors} errors"] * bool(r.errors))
            peak, est = f"{polled.peak_mb:.0f}" * (i == 0), " (est.)" * r.estimated
            cells = [name, case, rps(r.rps) + est, ms(r.p50), ms(r.p99), ratio, peak, notes]
            lines.append(f"| {' | '.join(cells)} |")
    lines.append("")
    targets: list[Target] = []
    for name in PROJECT:
        polled, label = servers[name], f"{size:,}, {name.split(': ')[1]}"
        shares = [polled.cases[c].rps / max(nginx[c].rps, 1e-9) for c in CASES]
        p99 = [polled.cases[c].p99 for c in CASES]
        measured = [" / ".join(f"{s:.0%}" for s in shares), " / ".join(f"{ms(v)} ms" for v in p99)]
        targets += [
            (f"{label}: polling ≥ 60% of nginx (304 / identity / gzip)", measured[0], min(shares) >= 0.6),
            (f"{label}: p99 < 10 ms at 16 connections (304 / identity / gzip)", measured[1], max(p99) < 10),
            (
                f"{label}: every 304 a 304, contract headers intact",
                polled.ok and "yes" or polled.note,
                polled.ok,
            ),
        ]
    return targets


def measure(server: Server, work: Path, seconds: float, cases: tuple[str, ...], feed: bytes | None) -> Polled:
    """wrk for each case after a warm-up (every worker renders the feed); for the 304 case a 1 s
    run counting statuses (the count slows wrk down, so it is kept out of the measured run)."""
    etag = server.fetch(FEED, timeout=30).headers.get("etag", "")
    headers = {"304": {"If-None-Match": etag}, "200 identity": {}, "200 gzip": {"Accept-Encoding": "gzip"}}
    for case in ("200 gzip", "200 identity"):
        wrk(server.port, 1, work, headers[case])
    results = {case: wrk(server.port, seconds, work, headers[case]) for case in cases}
    log(server.log.stem + "".join(f", {c} {r.rps:,.0f} req/s p99 {ms(r.p99)} ms" for c, r in results.items()))
    if "304" not in cases:
        return Polled(results, worker_peak_mb(server), "always 200, fixed headers")
    problems = contract(server, feed)
    statuses = wrk(server.port, 1, work, headers["304"], count=True).statuses
    all_304 = set(statuses) == {304} and not results["304"].errors and results["304"].bytes_each < 1000
    note = "all 304" if all_304 else f"NOT all 304: {statuses}"
    same = "" if feed is None else ", same bytes as the export"
    note += f"; headers ok{same}" if not problems else f"; headers: {'; '.join(problems)}"
    return Polled(results, worker_peak_mb(server), note, all_304 and not problems)


def contract(server: Server, feed: bytes | None) -> list[str]:
    """One request of each kind: the contract's headers on the 200s and the 304, the 304 with
    the 200's ETag and no body, gzip of the same bytes, and (``feed``) the export's bytes."""
    plain = server.fetch(FEED, timeout=30)
    zipped = server.fetch(FEED, {"Accept-Encoding": "gzip"}, timeout=30)
    cached = server.fetch(FEED, {"If-None-Match": plain.headers.get("etag", "")}, timeout=30)
    problems = [] if (plain.status, zipped.status, cached.status) == (200, 200, 304) else ["statuses"]
    for name, reply in (("200", plain), ("200 gzip", zipped), ("304", cached)):
        problems += [f"{name} lacks {h}" for h in CONTRACT_HEADERS if h not in reply.headers]
    gzipped = zipped.headers.get("content-encoding") == "gzip" and gzip.decompress(zipped.body) == plain.body
    for problem, found in (
        ("304 ETag differs from 200's", cached.headers.get("etag") != plain.headers.get("etag")),
        ("304 has a body", bool(cached.body)),
        ("gzip body is not the identity body gzipped", not gzipped),
        ("bytes differ from the export", feed is not None and plain.body != feed),
    ):
        problems += [problem] * found
    return problems


def naive_view(config: Path, work: Path, duration: float) -> Polled:
    """The naive view under wrk (it has no 304 and no gzip); above NAIVE_WRK_MAX one request
    takes longer than a wrk run, so it is timed alone and the rate estimated as 2 workers / time."""
    size, seconds = size_of(config), min(duration, 10)
    with serve(naive_command, work, f"{size}-naive", config=config, timeout=60) as server:
        if size <= NAIVE_WRK_MAX:
            server.fetch(FEED, timeout=300)  # imports done, one worker warm
            r = wrk(server.port, seconds, work, {}, timeout="60s")
            note = f"no 304, no gzip: every request rebuilds; {r.requests} requests in wrk -d{seconds:g}s"
            return Polled({"200 identity": r}, worker_peak_mb(server), note)
        started = time.perf_counter()
        try:
            server.fetch(FEED, timeout=NAIVE_TIMEOUT)
            took = time.perf_counter() - started
            r = Wrk(2 / took, took * 1000, float("nan"), estimated=True)
            note = f"too slow for wrk: one request alone took {took:.1f} s (≈ {2 / took:.2f} req/s estimated)"
        except (OSError, http.client.HTTPException):
            r = Wrk(0.0, float("nan"), float("nan"), estimated=True)
            note = f"too slow for wrk: one request took > {NAIVE_TIMEOUT:.0f} s"
        log(f"  naive view: {note}")
        return Polled({"200 identity": r}, worker_peak_mb(server), note)


# -- the polling budget: off, on, and as it was ---------------------------------------------------

BUDGET = "polling:\n  min_interval: 60\n  proxies: [127.0.0.1]\n"  # wrk's clients come forwarded
# Every request from another client (X-Forwarded-For, trusted from loopback): the budget's whole
# path (the client's address, the hash, a slot read and written) and never a refusal. Each
# thread numbers its own clients; the run number (the script's argument) keeps runs apart.
FORWARDED_LUA = """
local forwarded_setup, forwarded_init, forwarded_threads, forwarded_count = setup, init, 0, 0
function setup(thread)
  if forwarded_setup then forwarded_setup(thread) end
  forwarded_threads = forwarded_threads + 1
  thread:set("forwarded_id", forwarded_threads)
end
function init(args)
  if forwarded_init then forwarded_init(args) end
  forwarded_first = 1 + ((tonumber(args[1]) or 0) * 4 + wrk.thread:get("forwarded_id")) % 223
end
function request()
  forwarded_count = forwarded_count + 1
  local n = forwarded_count
  wrk.headers["X-Forwarded-For"] = string.format("%d.%d.%d.%d", forwarded_first,
    math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format()
end
"""
TODAY, OFF, ON = "today", "budget off", "budget on"


def budget_report(args: argparse.Namespace, sizes: list[int]) -> int:
    """``--budget``: the budget section alone for each size, printed and written to --out."""
    started, load, command = time.perf_counter(), loadavg(), " ".join(["bench/run.py", *sys.argv[1:]])
    lines = [
        f"# Polling budget\n\n`.venv/bin/python {command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n",
        f"Machine: {machine()}.\n",
    ]
    targets = [t for n in sizes for t in budget_polling(archive(args.work, n), args, lines)]
    lines += ["### Targets (issue 19)\n", "| target | measured | result |", "| --- | --- | --- |"]
    lines += [f"| {name} | {measured} | {'pass' if ok else 'FAIL'} |" for name, measured, ok in targets]
    minutes = (time.perf_counter() - started) / 60
    lines.append(f"\nLoad average {load} at the start, {loadavg()} at the end. Total: {minutes:.1f} min.")
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or BENCH / "budget.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    log(f"wrote {out}")
    return 0


def budget_polling(config: Path, args: argparse.Namespace, lines: list[str]) -> list[Target]:
    """granian ×2 (the production command) with the budget off and on, and at ``--baseline``,
    all running at once and measured in turn (``--rounds`` times each case, median), every
    request from a new client; then the refusals a single client gets per second."""
    from feeds.budget import table_path  # only here: bare_app's workers import this module

    work, size = args.work, size_of(config)
    on = config.with_name("config-budget.yaml")
    on.write_text(config.read_text(encoding="utf-8") + BUDGET, encoding="utf-8")
    runs: list[tuple[str, Command, Path, dict[str, str]]] = []
    if args.baseline:
        tree = baseline_tree(work, args.baseline)
        runs.append((TODAY, baseline_command, config, {"BENCH_BASELINE": str(tree)}))
    granian = PROJECT["project: granian wsgi ×2"]
    runs += [(OFF, granian, config, {}), (ON, granian, on, {})]
    rps_of: dict[str, dict[str, list[float]]] = {name: {case: [] for case in CASES} for name, *_ in runs}
    errors: dict[str, int] = dict.fromkeys(rps_of, 0)
    with contextlib.ExitStack() as servers:
        started = {
            name: servers.enter_context(
                serve(command, work, f"{size}-budget-{name.split()[-1]}", config=cfg, env=env)
            )
            for name, command, cfg, env in runs
        }
        headers = {name: case_headers(server) for name, server in started.items()}
        for name, server in started.items():  # every worker warm
            for case in ("200 gzip", "200 identity"):
                wrk(server.port, 1, work, headers[name][case])
        run = 0
        for _ in range(args.rounds):
            for case in CASES:
                for name, server in started.items():
                    run += 1
                    r = wrk(server.port, args.duration, work, headers[name][case], FORWARDED_LUA, (str(run),))
                    rps_of[name][case].append(r.rps)
                    errors[name] += r.errors
                    log(f"{size:,} {name}, {case}: {r.rps:,.0f} req/s, {r.errors} errors")
        refused = wrk(started[ON].port, args.duration, work, {})  # loopback itself: asked in the warm-up
    table_path(config.parent / ".feeds").unlink(missing_ok=True)  # the "on" server's, in /dev/shm
    median = {
        name: {case: statistics.median(v) for case, v in cases.items()} for name, cases in rps_of.items()
    }
    base = TODAY if args.baseline else OFF
    lines += [
        f"### {size:,} articles: `{FEED}`, every request from a new client (X-Forwarded-For)\n",
        f"granian ×2 as in production, `wrk -t2 -c16 -d{args.duration:g}s` with a Lua script giving each "
        f"request another forwarded client (trusted from loopback); `{OFF}`: no `polling:`; `{ON}`: "
        f"`min_interval: 60`, never exceeded, so every request takes the budget's whole path and none "
        f"is refused; `{TODAY}`: the production command over `--baseline {args.baseline or '–'}`. The "
        f"servers run side by side and each case is measured in turn, {args.rounds} rounds; req/s is "
        "the median.\n",
        f"| server | case | req/s | runs | vs {base} |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    for name, cases in median.items():
        for case, value in cases.items():
            each = ", ".join(f"{v:,.0f}" for v in rps_of[name][case])
            lines.append(f"| {name} | {case} | {rps(value)} | {each} | {value / median[base][case]:.0%} |")
    lines.append(
        f"\nOne client asking all along with the budget on (let through once a minute): "
        f"{rps(refused.rps)} req/s, {refused.errors:,} of {refused.requests:,} answered 429.\n"
    )
    targets: list[Target] = []
    pairs = [(ON, OFF, 0.85)] if not args.baseline else [(OFF, TODAY, 0.97), (ON, TODAY, 0.85)]
    for name, against, share in pairs:
        shares = [median[name][c] / max(median[against][c], 1e-9) for c in CASES]
        measured = " / ".join(f"{s:.0%}" for s in shares) + (
            f"; {errors[name]} errors" if errors[name] else ""
        )
        ok = min(shares) >= share and not errors[name]
        targets.append((f"{size:,}: {name} ≥ {share:.0%} of {against} (304 / identity / gzip)", measured, ok))
    return targets


def case_headers(server: Server) -> dict[str, dict[str, str]]:
    etag = server.fetch(FEED, timeout=30).headers.get("etag", "")
    return {"304": {"If-None-Match": etag}, "200 identity": {}, "200 gzip": {"Accept-Encoding": "gzip"}}


def baseline_tree(work: Path, rev: str) -> Path:
    """``feeds/`` as it was at ``rev`` (git archive), made once per commit under ``work``."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = work / f"baseline-{commit[:12]}"
    if not (tree / "feeds" / "__init__.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "feeds"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def baseline_app() -> Any:
    """The project as it was at ``--baseline`` (granian factory ``run:baseline_app``): ``feeds``
    from the tree in ``$BENCH_BASELINE`` rather than this checkout, whose editable install would
    win over ``sys.path``. The same venv, so the same dependencies: for commits close to this one.
    """
    tree = os.environ["BENCH_BASELINE"]
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
    sys.path.insert(0, tree)
    feeds = importlib.import_module("feeds")
    if not (feeds.__file__ or "").startswith(tree):
        raise RuntimeError(f"feeds came from {feeds.__file__}, not the baseline tree {tree}")
    return feeds.create_app()


def baseline_command(port: int) -> list[str]:
    extra = (*GRANIAN, "--working-dir", str(BENCH))
    return harness.production_command(port, app="run:baseline_app", extra=extra)


# -- scale: start-up, memory, change latency, render time -----------------------------------------


def scale(config: Path, work: Path, lines: list[str]) -> list[Target]:
    """Start-up and memory (1 gunicorn sync worker), render times, change latency (2 workers)."""
    n = size_of(config)
    (cold, _, peak_cold, documents), (warm, _, peak_warm, _) = (
        start_up(config, work),
        start_up(config, work, False),
    )
    render, trials = render_times(config, work), change_latency(config, work, n)
    peak, every = max(peak_cold, peak_warm), max(trials)
    worst = max(render["kurz.rss"], render["alle.rss"], render["thema-000.rss"])
    rows = [
        ("cold start (no `.feeds` state): process start → `/healthz` 200", f"{cold:.2f} s"),
        ("warm start (index present)", f"{warm:.2f} s"),
        (
            f"worker peak RSS (VmHWM) after every feed once ({documents} documents), cold / warm",
            f"{peak_cold:.0f} / {peak_warm:.0f} MB",
        ),
        (
            f"change → served by every worker ({len(trials)} trials, 6 pollers)",
            f"{', '.join(map(ms, trials))} ms",
        ),
        ("render kurz.rss (summary): first render in a fresh process, bodies cold", render["kurz.rss"]),
        ("render kurz.atom next: article bodies warm", render["kurz.atom"]),
        ("render thema-000.rss next: process warm, its bodies and document cold", render["thema-000.rss"]),
        ("render alle.rss (full content): first render in a fresh process", render["alle.rss"]),
        ("render alle.atom next: article bodies warm", render["alle.atom"]),
        ("cached document lookup `Site.feed()`", f"{render['hit'] * 1000:.0f} µs"),
        ("`open_site(...)`, warm index, every file checked", f"{render['load'] / 1000:.2f} s"),
    ]
    lines += [f"### Scale: {n:,} articles (gunicorn: 1 sync worker for start-up and memory, 2 for changes)\n"]
    lines += ["| measurement | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v if isinstance(v, str) else f'{v:.1f} ms'} |" for k, v in rows] + [""]
    at = "" if n == 100_000 else f" (measured at {n:,}, not 100,000)"
    worst_of = f"{worst:.1f} ms (worst of kurz.rss, alle.rss, thema-000.rss)"
    return [
        (f"cold start < 15 s{at}", f"{cold:.2f} s", cold < 15),
        (f"warm start < 3 s{at}", f"{warm:.2f} s", warm < 3),
        (f"resident memory < 400 MB per worker{at}", f"{peak:.0f} MB peak", peak < 400),
        (f"changed article served within 100 ms{at}", f"{ms(every)} ms (every worker, max)", every < 100),
        (f"render a 50-entry feed from a cold cache < 20 ms{at}", worst_of, worst < 20),
    ]


def start_up(config: Path, work: Path, cold: bool = True) -> tuple[float, float, float, int]:
    """Seconds from process start to /healthz 200 and until documents are correct and cacheable
    (1 sync worker; cold: no `.feeds` state), then every feed once; returns (seconds to /healthz,
    seconds to checked documents, the worker's peak RSS in MB, documents). A warm start answers
    /healthz at once, but while it compares the files with a large index /healthz says
    "checking" and documents are `no-store` until that is done."""
    if cold:
        shutil.rmtree(config.parent / ".feeds", ignore_errors=True)
    started = time.perf_counter()
    command = lambda port: harness.gunicorn_command(port, 1, extra=GUNICORN)  # noqa: E731
    # A long grace: the worker may still be writing to its index on the way out.
    with serve(
        command, work, f"start-{'cold' if cold else 'warm'}", False, config=config, grace=60.0
    ) as server:
        answering = time.perf_counter() - started
        while "checking" in json.loads(server.fetch("/healthz", timeout=120).body):
            time.sleep(0.05)
        ready = time.perf_counter() - started
        index = server.fetch("/", timeout=120).body.decode()
        paths = sorted(set(re.findall(r'/feeds/([a-z0-9][a-z0-9_-]*\.(?:rss|atom))"', index)))
        for path in paths:
            if (status := server.fetch(f"/feeds/{path}", timeout=120).status) != 200:
                raise RuntimeError(f"/feeds/{path}: {status}")
        peak = worker_peak_mb(server)
    log(
        f"{'cold' if cold else 'warm'} start: /healthz 200 after {answering:.2f} s, files checked after "
        f"{ready:.2f} s, worker peak {peak:.0f} MB"
    )
    return answering, ready, peak, len(paths)


def change_latency(config: Path, work: Path, count: int, trials: int = 5) -> list[float]:
    """Milliseconds from closing the edited newest article to every worker serving it, per trial
    (gunicorn sync ×2); the file is restored, and the restore waited for, after each trial."""
    path = next((config.parent / "articles").glob(f"*/*/a{count - 1:06d}.*"))
    original, results = path.read_bytes(), []
    try:
        with serve(PROJECT["project: gunicorn sync ×2"], work, "change", config=config) as server:
            for _ in range(20):
                server.fetch(FEED, timeout=30)
            for _ in range(trials):
                marker = f"benchmarker{uuid.uuid4().hex[:12]}".encode()
                text = re.sub(rb"^(title: .*)$", rb"\1 " + marker, original, count=1, flags=re.M)
                results.append(one_change(server, marker, functools.partial(path.write_bytes, text)))
                path.write_bytes(original)  # and wait until every worker serves it again
                deadline = time.perf_counter() + 10
                while (
                    any(marker in server.fetch(FEED).body for _ in range(8))
                    and time.perf_counter() < deadline
                ):
                    time.sleep(0.02)
                time.sleep(0.3)
    finally:
        path.write_bytes(original)
    log(f"change → every worker: {', '.join(ms(t) for t in results)} ms")
    return results


def one_change(server: Server, marker: bytes, write: Callable[[], object], pollers: int = 6) -> float:
    """Poll FEED on new connections (so every worker answers) around ``write()``; milliseconds from
    the write to the first answer with ``marker``, or to the last stale answer to a request sent
    after the write if that came later (then every worker had it)."""
    answers: list[tuple[float, float, bool]] = []  # sent, received, has the marker
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            sent = time.perf_counter()
            try:
                answers.append((sent, time.perf_counter(), marker in server.fetch(FEED).body))
            except (OSError, http.client.HTTPException):
                pass

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(pollers)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    write()
    written = time.perf_counter()
    while time.perf_counter() < written + 10 and not any(hit for _, _, hit in answers):
        time.sleep(0.005)
    time.sleep(0.5)  # the stale answers that are still on their way
    done.set()
    for thread in threads:
        thread.join()
    after = [(received, hit) for sent, received, hit in answers if sent >= written]
    hits = [received for received, hit in after if hit]
    if not hits:
        return float("inf")
    return (max([min(hits), *(received for received, hit in after if not hit)]) - written) * 1000


RENDER = r"""
import json, sys, time
from pathlib import Path
from feeds.site import open_site
t = time.perf_counter()
site = open_site(sys.argv[1], state_dir=Path(sys.argv[2]))
out = {"load": (time.perf_counter() - t) * 1000}
for key in sys.argv[3].split(","):
    t = time.perf_counter()
    site.feed(*key.split("."))
    out[key] = (time.perf_counter() - t) * 1000
t = time.perf_counter()
site.feed(*key.split("."))
out["hit"] = (time.perf_counter() - t) * 1000
print(json.dumps(out))
"""


def render_times(config: Path, work: Path, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per first render, median of ``repeats``: fresh processes over a copy of the
    index (fresh ledger); in each the first feed has its article bodies cold, the Atom
    twin next has them warm, thema-000 next is a feed whose entries nothing has rendered."""
    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        for order in ("kurz.rss,kurz.atom,thema-000.rss", "alle.rss,alle.atom"):
            state = work / "render-state"
            shutil.rmtree(state, ignore_errors=True)
            state.mkdir(parents=True)
            for cache in (config.parent / ".feeds").glob("index-*"):  # the index, not the ledger
                shutil.copy(cache, state)
            argv = [sys.executable, "-c", RENDER, str(config), str(state), order]
            run = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
            if run.returncode:
                raise RuntimeError(f"render timing failed:\n{run.stderr[-3000:]}")
            for key, value in json.loads(run.stdout.splitlines()[-1]).items():
                samples.setdefault(key, []).append(value)
    result = {key: statistics.median(values) for key, values in samples.items()}
    log("render: " + ", ".join(f"{key} {value:.1f} ms" for key, value in result.items()))
    return result


# -- servers, wrk, archives, the machine ----------------------------------------------------------


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The WSGI yardstick: the project's feed bytes and headers from a constant, a dict lookup's worth."""
    headers, body = _bare()
    start_response("200 OK", headers)
    return [body]


@functools.cache
def _bare() -> tuple[list[tuple[str, str]], bytes]:
    body = Path(os.environ["BENCH_BARE_BODY"]).read_bytes()
    headers = {"Content-Type": "application/rss+xml; charset=utf-8", "Content-Length": str(len(body))}
    headers |= {"ETag": '"bare"', "Last-Modified": "Mon, 01 Jan 2018 00:00:00 GMT"}
    headers |= {"Cache-Control": "public, max-age=300", "Vary": "Accept-Encoding"}
    return list(headers.items()), body


def bare_command(port: int) -> list[str]:
    extra = (*GRANIAN, "--working-dir", str(BENCH))
    return harness.production_command(port, app="run:bare_app", factory=False, extra=extra)


def naive_command(port: int) -> list[str]:
    return harness.gunicorn_command(port, app="naive_app:app", extra=(*GUNICORN, "--pythonpath", str(BENCH)))


def nginx_command(work: Path, root: Path) -> Command:
    def command(port: int) -> list[str]:
        scratch = work / f"nginx-{port}"
        scratch.mkdir(parents=True, exist_ok=True)
        conf = (BENCH / "nginx.conf.template").read_text()
        for key, value in (("@WORK@", scratch), ("@ROOT@", root), ("@PORT@", port)):
            conf = conf.replace(key, str(value))
        (scratch / "nginx.conf").write_text(conf)
        return [
            "/usr/sbin/nginx",
            "-p",
            f"{scratch}",
            "-e",
            f"{scratch}/error.log",
            "-c",
            f"{scratch}/nginx.conf",
        ]

    return command


def serve(command: Command, work: Path, name: str, checked: bool = True, **options: Any) -> Server:
    """A server for one measurement: log in <work>/logs, ready on /healthz (15 min allowed).

    ``checked``: also wait until every worker has compared every file with its index after the
    start (until then a large archive is answered `no-store`, without validators). A worker
    started after another began its check checks for itself, so one answer is not enough: 20 in
    a row on fresh connections (each lands on any worker) must say so."""
    options = {"timeout": 900.0, "grace": 15.0, **options}
    server = harness.start(command, work / "logs" / f"{name}.log", **options)
    deadline, in_a_row = time.perf_counter() + 900, 0
    while checked and in_a_row < 20:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{name}: the files were never checked")
        checking = b'"checking"' in server.fetch("/healthz", timeout=60).body
        in_a_row = 0 if checking else in_a_row + 1
        time.sleep(0.05 if checking else 0.005)
    return server


def worker_peak_mb(server: Server) -> float:
    return max(harness.memory(pid).peak_mb for pid in server.workers())


COUNT_STATUSES = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for s, n in pairs(t:get('statuses')) do io.write(string.format('STATUS %d %d\\n', s, n)) end
  end
end
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def wrk(
    port: int,
    seconds: float,
    work: Path,
    headers: dict[str, str],
    lua: str = "",
    args: tuple[str, ...] = (),
    count: bool = False,
    timeout: str = "10s",
) -> Wrk:
    """``wrk -t2 -c16 --latency`` on FEED with ``headers`` (a Lua script), then ``lua`` with
    the script arguments ``args``; ``count``: count statuses."""
    script = "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())
    script += (COUNT_STATUSES if count else "") + lua
    lua = work / "lua" / f"{hashlib.sha1(script.encode()).hexdigest()[:12]}.lua"
    lua.parent.mkdir(parents=True, exist_ok=True)
    lua.write_text(script)
    cmd = ["wrk", "-t2", "-c16", f"-d{seconds:g}s", "--latency", "--timeout", timeout, "-s", str(lua)]
    url = f"http://{harness.HOST}:{port}{FEED}"
    out = subprocess.run([*cmd, url, *(["--", *args] if args else [])], capture_output=True, text=True).stdout

    def number(pattern: str, default: float = 0.0) -> float:  # a value, times its unit if any
        m = re.search(pattern, out, re.M)
        return default if not m else float(m.group(1)) * (UNITS[m.group(2)] if m.lastindex == 2 else 1)

    requests = int(number(r"(\d+) requests in"))
    errors = re.findall(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    statuses: dict[int, int] = {}
    for status, n in re.findall(r"^STATUS (\d+) (\d+)$", out, re.M):
        statuses[int(status)] = statuses.get(int(status), 0) + int(n)
    return Wrk(
        rps=number(r"Requests/sec:\s+([\d.]+)"),
        p50=number(r"^\s+50(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", float("nan")),
        p99=number(r"^\s+99(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", float("nan")),
        requests=requests,
        bytes_each=number(r"requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read") / max(1, requests),
        errors=int(number(r"Non-2xx or 3xx responses: (\d+)")) + sum(int(n) for n in (errors or [()])[0]),
        statuses=statuses,
    )


def archive(work: Path, count: int) -> Path:
    """The generated archive of ``count`` articles (bench/generate.py), reused when complete."""
    from generate import generate

    out = work / f"archive-{count}"
    if not (out / f".complete-{count}").exists():
        shutil.rmtree(out, ignore_errors=True)
        log(f"generating {count:,} articles in {out}")
        generate(out, count)
        (out / f".complete-{count}").write_text(str(count))
    return out / "config.yaml"


def size_of(config: Path) -> int:
    return int(next(config.parent.glob(".complete-*")).name.split("-")[1])


def export(config: Path) -> Path:
    """``feeds build`` of the archive into <archive>/export, reused while its kurz.rss is what the
    app serves now (``feeds get``); otherwise, or without an export manifest (a folder from before
    ``feeds build`` wrote one, which it would refuse to replace), the folder is built anew."""
    out, feeds = config.parent / "export", [str(BIN / "feeds"), "--config", str(config)]
    served = subprocess.run([*feeds, "get", FEED], capture_output=True, check=True).stdout
    current = out / "feeds" / "kurz.rss"
    if (out / ".feeds-export.json").exists() and current.exists() and current.read_bytes() == served:
        return out
    shutil.rmtree(out, ignore_errors=True)  # ours: the bench's work folder
    log(f"feeds build {out}")
    subprocess.run([*feeds, "build", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def ensure_tools(naive: bool = True) -> None:
    """markdown for the naive view (pip), nginx and wrk (scripts/install-system-packages.sh)."""
    if naive and subprocess.run([sys.executable, "-c", "import markdown"], capture_output=True).returncode:
        log(f"installing markdown into {BIN.parent}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "markdown"], check=True)
    if not shutil.which("wrk") or not Path("/usr/sbin/nginx").exists():
        subprocess.run(["bash", str(REPO / "scripts" / "install-system-packages.sh")], check=True)


def machine() -> str:
    def first_line(cmd: list[str]) -> str:
        run = subprocess.run(cmd, capture_output=True, text=True)
        return (run.stdout + run.stderr).strip().splitlines()[0]

    cpu = re.search(r"^model name\s*: (.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    gib, nginx = int(mem.group(1)) / 1024**2 if mem else 0, first_line(["nginx", "-v"]).split("/")[-1]
    return (
        f"{os.cpu_count()} CPUs ({cpu.group(1) if cpu else '?'}), {gib:.1f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, granian {version('granian')}, gunicorn {version('gunicorn')}, "
        f"nginx {nginx}, {first_line(['wrk', '--version']).split(' [')[0]}, commit {harness.commit()}"
    )


def loadavg() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ms(v: float) -> str:
    if v != v or v == float("inf"):  # nan: not measured; inf: never happened
        return "–" if v != v else "∞"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def rps(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


if __name__ == "__main__":
    sys.exit(main())
