#!/usr/bin/env python3
"""A burst of new article files while serving: /healthz and document latency, time to converge.

    .venv/bin/python bench/burst.py [--base 20000] [--burst 20000] [--workers 2] [--out FILE]

Issue 16, item 2: requests never wait for a change being applied. On a generated archive of
``--base`` articles (bench/generate.py, kept in --work) the production server (granian,
``--workers``) is started; then ``--burst`` new article files, written beforehand into a staging
folder beside the site, are renamed into the articles folder one by one as fast as a separate
process can (each file appears whole, as rsync or a ``git checkout`` make them appear). Meanwhile

- two threads probe ``/healthz`` on fresh connections at about 20 Hz each, as a load balancer
  does (Varnish gives a probe 1 s);
- two threads poll a few feed documents on fresh connections with conditional requests
  (``If-None-Match``), as feed readers and caches do.

The burst has converged once ``/healthz`` reports the expected article count on
:data:`CONSECUTIVE` consecutive probes (and, where it reports worker pids, from every worker).
Latencies are recorded from the start of the burst until then; a few seconds before the burst
are measured too, as the idle baseline. The Markdown table goes to stdout and to ``--out``
(default under bench/out/, which is not committed). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from run import BENCH, archive, loadavg, log, machine, ms

from support import harness  # run put tests/ on sys.path

CONSECUTIVE = 12  # healthz probes in a row that must report the full count
PROBE_INTERVAL = 0.05  # seconds between the probes of one thread: 20 Hz
POLL_INTERVAL = 0.05  # seconds between the document requests of one thread
PROBE_TIMEOUT = 10.0  # a probe that takes longer counts as this long (and as failed)
IDLE_SECONDS = 3.0  # measured before the burst, as the baseline
DOCUMENTS = ("/feeds/alle.atom", "/feeds/kurz.rss", "/feeds/thema-000.json")
# Documents the burst does not change (its articles are newer than every base article): what a
# request for them costs is what waiting on the change being applied costs, without a render.
UNCHANGED = ("/feeds/alle/archive/1.atom", "/feeds/kurz/archive/1.rss", "/articles/a000000")
TARGETS = {  # issue 16, item 2
    "healthz p99 (ms)": 100.0,
    "healthz max (ms)": 1000.0,
    "unchanged max (ms)": 100.0,
}

# Renames the staged files into the articles folder, in a process of its own so the measuring
# threads here do not compete with it for the interpreter lock.
RENAME = """
import os, sys
staging, articles = sys.argv[1], sys.argv[2]
made = set()
for rel in sys.stdin.read().split("\\n"):
    if not rel:
        continue
    parent = os.path.dirname(rel)
    if parent not in made:
        os.makedirs(os.path.join(articles, parent), exist_ok=True)
        made.add(parent)
    os.rename(os.path.join(staging, rel), os.path.join(articles, rel))
"""


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the burst began (negative: before it) when the request was sent
    ms: float  # until the whole answer was read (PROBE_TIMEOUT on failure)
    status: int  # 0: failed (refused, reset, timed out)
    articles: int | None = None  # healthz: the article count the worker reported
    pid: int | None = None  # healthz: the worker, where the server reports it
    error: str = ""  # why it failed: the exception's type (TimeoutError: no answer in PROBE_TIMEOUT)
    path: str = "/healthz"
    wall: float = 0.0  # time.time() when it was sent, to set beside the server's log


@dataclass
class Recorder:
    """Samples of every probing thread, and the moment the burst began."""

    began: float = field(default_factory=time.perf_counter)  # reset when the burst begins
    healthz: list[Sample] = field(default_factory=list)
    documents: list[Sample] = field(default_factory=list)
    unchanged: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, into: list[Sample], sample: Sample) -> None:
        with self.lock:
            into.append(sample)


def probe(server: harness.Server, rec: Recorder) -> None:
    """/healthz on a fresh connection every PROBE_INTERVAL (at once when the last one was late)."""
    while not rec.stop.is_set():
        sent = time.perf_counter()
        try:
            reply = server.fetch("/healthz", timeout=PROBE_TIMEOUT)
            took = (time.perf_counter() - sent) * 1000
            health = json.loads(reply.body) if reply.status == 200 else {}
            count, pid = health.get("articles"), health.get("pid")
            sample = Sample(
                sent - rec.began, took, reply.status, count, pid if isinstance(pid, int) else None
            )
        except (OSError, http.client.HTTPException, ValueError) as exc:
            sample = Sample(sent - rec.began, PROBE_TIMEOUT * 1000, 0, error=type(exc).__name__)
        rec.add(rec.healthz, sample)
        time.sleep(max(0.0, sent + PROBE_INTERVAL - time.perf_counter()))


def poll(server: harness.Server, rec: Recorder, offset: int, documents: tuple[str, ...] = DOCUMENTS) -> None:
    """``documents`` in turn on fresh connections, each with the ETag last seen for it."""
    etags: dict[str, str] = {}
    turn = offset
    into = rec.documents if documents is DOCUMENTS else rec.unchanged
    while not rec.stop.is_set():
        path = documents[turn % len(documents)]
        turn += 1
        headers = {"If-None-Match": etags[path]} if path in etags else {}
        sent = time.perf_counter()
        try:
            reply = server.fetch(path, headers, timeout=PROBE_TIMEOUT)
            took = (time.perf_counter() - sent) * 1000
            if "etag" in reply.headers:
                etags[path] = reply.headers["etag"]
            sample = Sample(sent - rec.began, took, reply.status, path=path, wall=time.time() - took / 1000)
        except (OSError, http.client.HTTPException) as exc:
            sample = Sample(sent - rec.began, PROBE_TIMEOUT * 1000, 0, error=type(exc).__name__, path=path)
        rec.add(into, sample)
        time.sleep(max(0.0, sent + POLL_INTERVAL - time.perf_counter()))


def converged(samples: list[Sample], total: int, workers: int) -> Sample | None:
    """The first probe of the last run of CONSECUTIVE probes (in the order they were sent) that
    all report ``total`` articles, from every worker where pids are reported; None before."""
    ordered = sorted(samples, key=lambda s: s.at)
    begins = len(ordered)
    while begins > 0 and ordered[begins - 1].articles == total and ordered[begins - 1].status == 200:
        begins -= 1
    streak = ordered[begins:]
    if len(streak) < CONSECUTIVE:
        return None
    pids = {s.pid for s in streak if s.pid is not None}
    if any(s.pid is not None for s in ordered) and len(pids) < workers:
        return None
    return streak[0]


def stage(staging: Path, base: int, burst: int, seed: int = 2) -> list[str]:
    """``burst`` new articles (ids after the base archive's) under ``staging``; their paths."""
    from generate import article

    rng = random.Random(seed)
    topics = [f"thema-{t:03d}" for t in range(200)]
    start = datetime(2015, 1, 1, tzinfo=UTC)
    step = min(17, 5_000_000 // max(base, 1))  # as bench/generate.py dated the base archive
    paths = []
    for i in range(base, base + burst):
        rel, text = article(rng, i, topics, start, step)
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        paths.append(rel)
    latest = start + timedelta(minutes=step * (base + burst))
    assert latest < datetime.now(UTC), "every burst article must be published now (its date is past)"
    return paths


def site_copy(config: Path, run: Path) -> Path:
    """A copy of the generated site (hard links: the burst only adds files) under ``run``."""
    shutil.rmtree(run, ignore_errors=True)
    site = run / "site"
    shutil.copytree(config.parent / "articles", site / "articles", copy_function=os.link)
    shutil.copy2(config, site / "config.yaml")
    return site / "config.yaml"


def stats(samples: list[Sample]) -> dict[str, float]:
    values = sorted(s.ms for s in samples)
    if not values:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan"), "failed": 0}
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    failed = sum(1 for s in samples if s.status == 0)
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p99": p99,
        "max": values[-1],
        "failed": failed,
    }


def applies(log_text: str) -> tuple[int, float]:
    """The largest batch the workers logged applying ("reloaded N article file(s) in X ms")."""
    found = [
        (int(n), float(t))
        for n, t in re.findall(r"reloaded (\d+) article file\(s\) in ([\d.]+) ms", log_text)
    ]
    return max(found, key=lambda f: f[1], default=(0, 0.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", type=int, default=20_000, help="articles before the burst (%(default)s)")
    parser.add_argument("--burst", type=int, default=20_000, help="new files in the burst (%(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="granian workers (%(default)s)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/feeds-bench"), help="archives are kept here")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for convergence")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "burst.md", help="results (Markdown)")
    args = parser.parse_args()

    run = args.work / f"burst-{args.base}-{args.burst}"
    config = site_copy(archive(args.work, args.base), run)
    log(f"staging {args.burst:,} new articles in {run / 'staging'}")
    paths = stage(run / "staging", args.base, args.burst)
    load_before = loadavg()
    log(f"starting granian with {args.workers} workers over {args.base:,} articles (cold index)")
    started = time.perf_counter()
    server = harness.start(
        lambda port: harness.production_command(port, workers=args.workers),
        run / "server.log",
        config=config,
        state_dir=run / "state",
        timeout=600.0,
    )
    try:
        ready = time.perf_counter() - started
        base_count = json.loads(server.fetch("/healthz").body).get("articles", args.base)
        total = base_count + args.burst
        log(f"ready after {ready:.1f} s, {base_count:,} articles; {IDLE_SECONDS:g} s idle baseline")
        rec = Recorder(began=time.perf_counter() + IDLE_SECONDS)
        threads = [threading.Thread(target=probe, args=(server, rec), daemon=True) for _ in range(2)]
        threads += [threading.Thread(target=poll, args=(server, rec, i), daemon=True) for i in range(2)]
        threads.append(threading.Thread(target=poll, args=(server, rec, 0, UNCHANGED), daemon=True))
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, rec.began - time.perf_counter()))  # the baseline: nothing to wait for

        log(f"burst: renaming {len(paths):,} files into the articles folder")
        mover = subprocess.run(
            [sys.executable, "-c", RENAME, str(run / "staging"), str(config.parent / "articles")],
            input="\n".join(paths),
            text=True,
            capture_output=True,
        )
        written = time.perf_counter() - rec.began
        if mover.returncode != 0:
            raise SystemExit(f"renaming the burst failed: {mover.stderr}")
        log(f"burst written in {written:.2f} s; waiting for every worker to report {total:,} articles")
        first: Sample | None = None
        while time.perf_counter() - rec.began < args.timeout:
            with rec.lock:
                first = converged(list(rec.healthz), total, args.workers)
            if first is not None:
                break
            if server.process.poll() is not None:
                raise SystemExit(f"the server exited:\n{server.log_tail()}")
            time.sleep(0.1)
        rec.stop.set()
        for thread in threads:
            thread.join(timeout=PROBE_TIMEOUT + 1)
        until = first.at if first is not None else time.perf_counter() - rec.began
        log("converged" if first is not None else f"NOT converged within {args.timeout:g} s")
    finally:
        harness.stop(server)

    with rec.lock:
        during = {
            "healthz": [s for s in rec.healthz if 0 <= s.at <= until],
            "document": [s for s in rec.documents if 0 <= s.at <= until],
            "unchanged": [s for s in rec.unchanged if 0 <= s.at <= until],
        }
        idle = {
            "healthz": [s for s in rec.healthz if s.at < 0],
            "document": [s for s in rec.documents if s.at < 0],
            "unchanged": [s for s in rec.unchanged if s.at < 0],
        }
    largest = applies(server.log_tail(10**9))
    results = {
        "time to converge (s)": until if first is not None else float("inf"),
        **{f"{k} {q} (ms)": stats(v)[q] for k, v in during.items() for q in ("p50", "p99", "max")},
    }
    lines = report(args, ready, written, results, during, idle, largest, load_before)
    slowest = sorted(during["unchanged"] + during["document"], key=lambda s: -s.ms)[:6]
    lines += ["", "Slowest document answers during the burst:", ""]
    lines += [
        f"- {s.ms:.0f} ms, {s.path} ({s.status}), sent at {datetime.fromtimestamp(s.wall, UTC):%H:%M:%S.%f}"
        for s in slowest
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0 if first is not None else 1


def report(
    args: argparse.Namespace,
    ready: float,
    written: float,
    results: dict[str, float],
    during: dict[str, list[Sample]],
    idle: dict[str, list[Sample]],
    largest: tuple[int, float],
    load_before: str,
) -> list[str]:
    command = " ".join(["bench/burst.py", *sys.argv[1:]])

    def target(name: str) -> str:
        limit = TARGETS.get(name)
        if limit is None:
            return "—"
        return f"< {limit:g}: {'met' if results[name] < limit else 'NOT met'}"

    def value(name: str) -> str:
        v = results[name]
        if name.endswith("(s)"):
            return f"{v:.1f}" if v != float("inf") else f"not within {args.timeout:g} s"
        kind = name.split()[0]
        failed = [s for s in during[kind] if s.status == 0]
        if name.endswith("max (ms)") and failed:  # a failure is counted as PROBE_TIMEOUT
            return f"≥ {ms(v)} ({len(failed)} failed)"
        return ms(v)

    lines = [
        f"# A burst of {args.burst:,} new files over {args.base:,} articles\n",
        f"`.venv/bin/python {command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {harness.commit()}\n",
        f"Machine: {machine()}. Load average {load_before} before the start, {loadavg()} at the end.\n",
        f"granian with {args.workers} workers; ready after {ready:.1f} s (cold index). The burst's files "
        f"were renamed into the articles folder in {written:.2f} s. Latencies from the first rename "
        f"until every worker reported the full count on {CONSECUTIVE} consecutive probes: `/healthz` "
        f"on fresh connections from 2 threads at ~{1 / PROBE_INTERVAL:.0f} Hz each; "
        f"{', '.join(DOCUMENTS)} in turn from 2 threads with `If-None-Match`; documents the burst "
        f"does not change ({', '.join(UNCHANGED)}) from a third: what waiting on the apply costs.\n",
        "| measure | during the burst | target (issue 16) |",
        "| --- | --- | --- |",
        *(f"| {name} | {value(name)} | {target(name)} |" for name in results),
        "",
        "| requests | phase | count | failed | p50 (ms) | p99 (ms) | max (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for phase, groups in (("idle, before the burst", idle), ("during the burst", during)):
        for kind, samples in groups.items():
            s = stats(samples)
            cells = [
                kind,
                phase,
                f"{s['n']:.0f}",
                f"{s['failed']:.0f}",
                ms(s["p50"]),
                ms(s["p99"]),
                ms(s["max"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    slow = sum(1 for s in during["healthz"] if s.ms >= 1000)
    outcomes: dict[str, int] = {}
    for s in during["healthz"] + during["document"]:
        if s.status == 0:
            outcomes[s.error] = outcomes.get(s.error, 0) + 1
    documents: dict[int, int] = {}
    for s in during["document"]:
        documents[s.status] = documents.get(s.status, 0) + 1
    lines += [
        "",
        f"`/healthz` answers that took 1 s or more during the burst (a Varnish probe would fail): {slow}. "
        f"Document answers by status (0: failed): "
        f"{', '.join(f'{k}: {v}' for k, v in sorted(documents.items()))}. "
        f"Failed requests (counted as {PROBE_TIMEOUT:g} s): "
        f"{', '.join(f'{k}: {v}' for k, v in sorted(outcomes.items())) or 'none'}. "
        f"Largest apply the workers logged: {largest[0]:,} files in {largest[1]:,.0f} ms.",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
