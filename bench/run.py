#!/usr/bin/env python3
"""The benchmark: the project against nginx, a bare WSGI callable and the naive Flask view.

    .venv/bin/python bench/run.py [--sizes 10000,100000] [--duration 10] [--out bench/results.md]

Generates synthetic archives (bench/generate.py), starts every server on 127.0.0.1 and measures
/feeds/kurz.rss (50 entries, summary) with wrk: 304s, cached 200s identity and gzip. At the
largest size it also measures cold and warm start, peak RSS per worker, the time from a file
change to the new bytes being served, and rendering a feed from a cold cache. Prints a Markdown
table and writes it to --out. See bench/README.md.

This module also holds ``bare_app``, the trivial WSGI yardstick (``run:bare_app``).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import harness
from harness import BIN, REPO, Command, Server

BENCH = REPO / "bench"
FEED = "/feeds/kurz.rss"
CASES = ("304", "200 identity", "200 gzip")
CONTRACT_HEADERS = ("etag", "last-modified", "cache-control", "vary")
NAIVE_SINGLE_TIMEOUT = 120.0  # seconds for the one timed request of the naive view at scale
Row = dict[str, Any]  # one server's results: cases, headers_ok, note, rss_mb
Answer = tuple[float, float, bool]  # sent, received, carries the change


# -- the bare WSGI yardstick (imported by gunicorn / granian as run:bare_app) ------------------

_BARE: tuple[str, list[tuple[str, str]], bytes] | None = None


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Returns the same bytes as the project's feed, with the same headers: a dict lookup's worth."""
    global _BARE
    if _BARE is None:
        body = Path(os.environ["BENCH_BARE_BODY"]).read_bytes()
        headers = [
            ("Content-Type", "application/rss+xml; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("ETag", '"bare"'),
            ("Last-Modified", "Mon, 01 Jan 2018 00:00:00 GMT"),
            ("Cache-Control", "public, max-age=300"),
            ("Vary", "Accept-Encoding"),
        ]
        _BARE = ("200 OK", headers, body)
    status, headers, body = _BARE
    start_response(status, headers)
    return [body]


# -- servers -----------------------------------------------------------------------------------

GUNICORN = ("--log-level", "warning", "--timeout", "300")  # the naive view takes minutes at scale
GRANIAN = ("--log-level", "warning")
PROJECT_SERVERS: dict[str, Command] = {
    "project: gunicorn sync ×2": lambda port: harness.gunicorn_command(port, extra=GUNICORN),
    "project: gunicorn gthread 2×4": lambda port: harness.gunicorn_command(port, threads=4, extra=GUNICORN),
    "project: granian wsgi ×2": lambda port: harness.production_command(port, extra=GRANIAN),
}
BARE_SERVERS: dict[str, Command] = {
    "bare WSGI: gunicorn sync ×2": lambda port: harness.gunicorn_command(
        port, app="run:bare_app", extra=(*GUNICORN, "--pythonpath", str(BENCH))
    ),
    "bare WSGI: granian wsgi ×2": lambda port: harness.production_command(
        port, app="run:bare_app", factory=False, extra=(*GRANIAN, "--working-dir", str(BENCH))
    ),
}
NAIVE = "naive Flask+feedgen: gunicorn sync ×2"


def naive_command(port: int) -> list[str]:
    return harness.gunicorn_command(port, app="naive_app:app", extra=(*GUNICORN, "--pythonpath", str(BENCH)))


def nginx_command(work: Path, root: Path) -> Command:
    def command(port: int) -> list[str]:
        scratch = work / f"nginx-{port}"
        scratch.mkdir(parents=True, exist_ok=True)
        conf = (BENCH / "nginx.conf.template").read_text()
        conf = conf.replace("@WORK@", str(scratch)).replace("@ROOT@", str(root)).replace("@PORT@", str(port))
        (scratch / "nginx.conf").write_text(conf)
        return [
            "/usr/sbin/nginx",
            "-p",
            str(scratch),
            "-e",
            str(scratch / "error.log"),
            "-c",
            str(scratch / "nginx.conf"),
        ]

    return command


def serve(command: Command, work: Path, name: str, **options: Any) -> Server:
    """A server for one measurement: log in <work>/logs, ready on /healthz (15 min allowed)."""
    options = {"ready": "/healthz", "timeout": 900.0, "grace": 15.0, **options}
    return harness.start(command, work / "logs" / f"{name}.log", **options)


def worker_peak_mb(server: Server) -> float:
    """The largest peak RSS among the server's worker processes (the server if it has none)."""
    return max(harness.memory(pid).peak_mb for pid in server.workers())


# -- the machine -------------------------------------------------------------------------------

QUIET_WAIT = 90.0  # seconds to wait for other processes to go quiet before a measurement
QUIET_BUDGET = [600.0]  # seconds of waiting and repeating left for the whole run


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def foreign_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process that is not this benchmark or one of its children."""
    ours = {os.getpid(), *harness.descendants(os.getpid())}
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): utime 14, stime 15, starttime 22
        found[int(entry)] = (fields[19], (int(fields[11]) + int(fields[12])) / tick)
    return found


def foreign_since(before: dict[int, tuple[str, float]]) -> float:
    """CPU seconds other processes used since ``before`` (short-lived ones are missed)."""
    used = 0.0
    for pid, (started, cpu) in foreign_cpu().items():
        old = before.get(pid)
        used += cpu - old[1] if old and old[0] == started else cpu if pid not in before else 0.0
    return used


def wait_quiet(limit: float | None = None) -> float:
    """Wait (at most ``limit`` s) until other processes use < 10% of a CPU; returns their share."""
    limit = min(QUIET_WAIT if limit is None else limit, QUIET_BUDGET[0])
    started = time.perf_counter()
    deadline = started + limit
    warned = False
    while True:
        before = foreign_cpu()
        time.sleep(1.0)
        share = foreign_since(before)
        if share < 0.1 or time.perf_counter() >= deadline:
            QUIET_BUDGET[0] -= max(0.0, time.perf_counter() - started - 1.0)
            return share
        if not warned:
            log(f"  other processes busy ({share:.0%} of a CPU): waiting up to {limit:.0f} s")
            warned = True


def loadavg() -> str:
    """1/5/15-minute load: anything well above 0 before the run means the numbers are shared."""
    try:
        return " / ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (run.stdout + run.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    def proc_value(path: str, key: str) -> str | None:
        try:
            return next(line.split(":", 1)[1].strip() for line in open(path) if line.startswith(key))
        except (OSError, StopIteration):
            return None

    mem_kb = proc_value("/proc/meminfo", "MemTotal")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": proc_value("/proc/cpuinfo", "model name") or "?",
        "ram": f"{int(mem_kb.split()[0]) / 1024**2:.1f} GiB" if mem_kb else "?",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gunicorn": first_line([str(BIN / "gunicorn"), "--version"]),
        "granian": first_line([str(BIN / "granian"), "--version"]),
        "nginx": first_line(["nginx", "-v"]),
        "wrk": first_line(["wrk", "--version"]).split(" [")[0],
        "commit": harness.commit(),
        "load average at start": loadavg(),
    }


# -- wrk ---------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def parse_wrk(out: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        result[f"p{pct}"] = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    m = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", out)
    if m:
        result["requests"] = int(m.group(1))
        result["bytes_per_response"] = float(m.group(2)) * _SIZE[m.group(3)] / max(1, int(m.group(1)))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] = sum(int(g) for g in m.groups()) if m else 0
    statuses = re.findall(r"^STATUS (\d+) (\d+)$", out, re.M)
    if statuses:
        result["statuses"] = {int(s): int(n) for s, n in statuses}
    return result


COUNT_STATUSES = """\
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for s, n in pairs(t:get('statuses')) do total[s] = (total[s] or 0) + n end
  end
  for s, n in pairs(total) do io.write(string.format('STATUS %d %d\\n', s, n)) end
end
"""


def lua(work: Path, name: str, headers: dict[str, str], count: bool = False) -> Path:
    lines = [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path = work / "lua" / f"{name}.lua"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Counting statuses slows wrk down: only for the short verification runs.
    path.write_text("\n".join(lines) + "\n" + (COUNT_STATUSES if count else ""))
    return path


def wrk(port: int, duration: float, script: Path | None = None, timeout: str = "10s") -> dict[str, Any]:
    cmd = ["wrk", "-t2", "-c16", f"-d{duration:g}s", "--latency", "--timeout", timeout]
    cmd += ["-s", str(script)] if script is not None else []
    run = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}{FEED}"], capture_output=True, text=True, timeout=duration + 120
    )
    return {**parse_wrk(run.stdout), "raw": run.stdout + run.stderr}


# -- archives ----------------------------------------------------------------------------------


def ensure_tools() -> None:
    """markdown for the naive view (granian and gunicorn are the project's own dependencies), nginx, wrk."""
    if subprocess.run([sys.executable, "-c", "import markdown"], capture_output=True).returncode:
        log(f"installing markdown into {BIN.parent}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "markdown"], check=True)
    if not shutil.which("wrk") or not Path("/usr/sbin/nginx").exists():
        script = REPO / "scripts" / "install-system-packages.sh"
        log(f"nginx or wrk missing: running {script}")
        subprocess.run(["bash", str(script)], check=True)


def archive(work: Path, count: int) -> Path:
    """The generated archive of ``count`` articles, reused when complete."""
    from generate import generate

    out = work / f"archive-{count}"
    marker = out / f".complete-{count}"
    if marker.exists():
        return out / "config.yaml"
    shutil.rmtree(out, ignore_errors=True)
    log(f"generating {count:,} articles in {out}")
    started = time.perf_counter()
    config = generate(out, count)
    marker.write_text(str(count))
    log(f"  generated in {time.perf_counter() - started:.1f} s")
    return config


def size_of(config: Path) -> int:
    return int(next(config.parent.glob(".complete-*")).name.split("-")[1])


def export(config: Path, force: bool = False) -> tuple[Path, float | None]:
    """``feeds build`` of the archive, reused when present; returns (folder, seconds or None)."""
    out = config.parent / "export"
    if out.joinpath("feeds", "kurz.rss").exists() and not force:
        return out, None
    log(f"feeds build {out}")
    started = time.perf_counter()
    build = [str(BIN / "feeds"), "--config", str(config), "build", str(out)]
    subprocess.run(build, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    log(f"  built in {elapsed:.1f} s")
    return out, elapsed


# -- polling -----------------------------------------------------------------------------------


def check_headers(server: Server, expect_body: bytes | None) -> tuple[bool, str, str]:
    """One request of each kind: the contract's headers on 200 and 304. Returns (ok, etag, note)."""
    notes = []
    plain = server.fetch(FEED, timeout=30)
    etag = plain.headers.get("etag", "")
    zipped = server.fetch(FEED, {"Accept-Encoding": "gzip"}, timeout=30)
    cached = server.fetch(FEED, {"If-None-Match": etag}, timeout=30)
    if (plain.status, zipped.status, cached.status) != (200, 200, 304):
        notes.append(f"statuses {plain.status}/{zipped.status}/{cached.status}")
    for name, reply in (("200", plain), ("200 gzip", zipped), ("304", cached)):
        missing = [h for h in CONTRACT_HEADERS if h not in reply.headers]
        if missing:
            notes.append(f"{name} lacks {', '.join(missing)}")
    if cached.headers.get("etag") != etag:
        notes.append("304 ETag differs from 200's")
    if cached.body:
        notes.append("304 has a body")
    if zipped.headers.get("content-encoding") != "gzip" or gzip.decompress(zipped.body) != plain.body:
        notes.append("gzip body is not the identity body gzipped")
    if expect_body is not None and plain.body != expect_body:
        notes.append("bytes differ from the export")
    return not notes, etag, "; ".join(notes)


def measure_polling(
    name: str, server: Server, work: Path, duration: float, cases: tuple[str, ...], etag: str
) -> dict[str, dict[str, Any]]:
    port = server.port
    scripts = {
        "304": lua(work, f"inm-{port}", {"If-None-Match": etag}),
        "200 identity": None,
        "200 gzip": lua(work, "gzip", {"Accept-Encoding": "gzip"}),
    }
    wrk(port, 1, scripts["200 gzip"])  # warm up: every worker renders the feed once
    wrk(port, 1)
    results: dict[str, dict[str, Any]] = {}
    for case in cases:
        for _ in range(3):  # a run that shared the CPUs with someone else is repeated
            wait_quiet()
            others = foreign_cpu()
            r = wrk(port, duration, scripts[case])
            r["foreign_cpu_s"] = foreign_since(others)
            if r["foreign_cpu_s"] <= 0.05 * duration or QUIET_BUDGET[0] <= 0:
                break
            QUIET_BUDGET[0] -= duration
            log(f"  {name} {case}: other processes used {r['foreign_cpu_s']:.1f} CPU-s; repeating")
        if case == "304":  # every response really a 304? count statuses in a short extra run
            check = wrk(port, 1, lua(work, f"inm-count-{port}", {"If-None-Match": etag}, count=True))
            r["statuses"] = check.get("statuses", {})
            small = r.get("bytes_per_response", 1e9) < 1000
            r["all_304"] = set(r["statuses"]) == {304} and not r["non2xx3xx"] and small
        results[case] = r
        disturbed = r["foreign_cpu_s"] > 0.05 * duration
        log(
            f"  {name:32s} {case:13s} {r['rps']:10.0f} req/s  p50 {r['p50']:7.2f} ms  "
            f"p99 {r['p99']:7.2f} ms  errors {r['errors']}  non-2xx/3xx {r['non2xx3xx']}"
            + (f"  statuses {r['statuses']}" if "statuses" in r else "")
            + (f"  OTHER PROCESSES used {r['foreign_cpu_s']:.1f} CPU-s" if disturbed else "")
        )
    return results


def row(
    server: Server, cases: dict[str, dict[str, Any]], headers_ok: bool | None = None, note: str = ""
) -> Row:
    return {"cases": cases, "headers_ok": headers_ok, "note": note, "rss_mb": worker_peak_mb(server)}


def polling_size(config: Path, work: Path, args: argparse.Namespace) -> Row:
    """Every server polled over one archive: the project, nginx, the bare yardstick, the naive view."""
    size, duration = size_of(config), args.duration
    exported, build_s = export(config)
    info: Row = {"size": size, "rows": {}} | ({"build_s": build_s} if build_s is not None else {})
    rows, served = info["rows"], exported / "feeds" / "kurz.rss"
    for name, command in PROJECT_SERVERS.items():
        started = time.perf_counter()
        with serve(command, work, f"{size}-{name.split(': ')[1].split()[0]}", config=config) as server:
            log(f"{name} up in {time.perf_counter() - started:.1f} s on :{server.port}")
            ok, etag, note = check_headers(server, served.read_bytes())
            if "bytes differ from the export" in note and not info.get("rebuilt"):
                log("  export is stale (feeds/ changed?): rebuilding it")
                exported, info["build_s"] = export(config, force=True)
                info["rebuilt"] = True
                ok, etag, note = check_headers(server, served.read_bytes())
            info["feed_bytes"] = len(server.fetch(FEED, timeout=30).body)
            info["feed_gzip_bytes"] = len(server.fetch(FEED, {"Accept-Encoding": "gzip"}, timeout=30).body)
            rows[name] = row(server, measure_polling(name, server, work, duration, CASES, etag), ok, note)
    with serve(nginx_command(work, exported), work, f"{size}-nginx", ready=FEED, timeout=30) as server:
        ok, etag, note = check_headers(server, None)
        cases = measure_polling("nginx (feeds build export)", server, work, duration, CASES, etag)
        rows["nginx: static export"] = row(server, cases, ok, note)
    for name, command in BARE_SERVERS.items():
        env = {"BENCH_BARE_BODY": str(served)}
        log_name = f"{size}-bare-{name.split(': ')[1].split()[0]}"
        with serve(command, work, log_name, env=env, ready=FEED, timeout=60) as server:
            cases = measure_polling(name, server, work, duration, ("200 identity",), "")
            rows[name] = row(server, cases, note="always 200, fixed headers")
    rows[NAIVE] = naive_view(config, work, args.naive_duration, args.naive_wrk_max)
    return info


def naive_view(config: Path, work: Path, duration: float, wrk_max: int | None) -> Row:
    """The naive view under wrk; above ``wrk_max`` articles one timed request gives an estimate."""
    size = size_of(config)
    with serve(naive_command, work, f"{size}-naive", config=config, timeout=60) as server:
        if wrk_max is None or size <= wrk_max:
            server.fetch(FEED, timeout=300)
            wait_quiet()  # import and warm both ... at least one worker
            r = wrk(server.port, duration, timeout="60s")
            requests = r.get("requests", 0)
            log(
                f"  {NAIVE} over {size:,}: {r['rps']:.2f} req/s  p50 {r['p50']:.0f} ms  "
                f"p99 {r['p99']:.0f} ms  ({requests} requests)"
            )
            note = f"no 304, no gzip: every request rebuilds; {requests} requests in wrk -d{duration:g}s"
            return row(server, {"200 identity": r}, note=note)
        started = time.perf_counter()
        try:
            server.fetch(FEED, timeout=NAIVE_SINGLE_TIMEOUT)
            took = time.perf_counter() - started
            note = f"too slow for wrk: one request alone took {took:.1f} s "
            note += f"(≈ {2 / took:.2f} req/s with 2 workers, estimated)"
            r = {"rps": 2 / took, "p50": took * 1000, "p99": float("nan"), "estimated": True}
        except (OSError, http.client.HTTPException):
            note = f"too slow for wrk: one request took > {NAIVE_SINGLE_TIMEOUT:.0f} s"
            r = {"rps": 0.0, "p50": float("nan"), "p99": float("nan"), "estimated": True}
        log(f"  {NAIVE}: {note}")
        return row(server, {"200 identity": r}, note=note)


# -- scale: start, memory, change latency, render ----------------------------------------------


def feed_paths(server: Server) -> list[str]:
    index = server.fetch("/", timeout=120).body.decode()
    return [
        f"/feeds/{n}" for n in sorted(set(re.findall(r'/feeds/([a-z0-9][a-z0-9_-]*\.(?:rss|atom))"', index)))
    ]


def start_and_memory(config: Path, work: Path, cold: bool) -> Row:
    """Time from process start to /healthz 200 (1 sync worker), then every feed once and its memory."""
    kind = "cold" if cold else "warm"
    if cold:
        shutil.rmtree(config.parent / ".feeds", ignore_errors=True)
    wait_quiet()
    started = time.perf_counter()
    command = lambda port: harness.gunicorn_command(port, 1, extra=GUNICORN)  # noqa: E731
    # A long grace: the worker writes its index cache on the way out.
    with serve(command, work, f"start-{kind}", config=config, grace=60.0) as server:
        ready = time.perf_counter() - started
        workers = harness.descendants(server.process.pid)
        after_start = max(harness.memory(p).rss_mb for p in workers)
        paths = feed_paths(server)
        t = time.perf_counter()
        for path in paths:
            status = server.fetch(path, timeout=120).status
            if status != 200:
                raise RuntimeError(f"{path}: {status}")
        all_feeds_s = time.perf_counter() - t
        peak = max(harness.memory(p).peak_mb for p in workers)
    log(
        f"{kind} start: /healthz 200 after {ready:.2f} s; {len(paths)} feeds in {all_feeds_s:.1f} s; "
        f"worker peak RSS {peak:.0f} MB"
    )
    return {
        "ready_s": ready,
        "feeds": len(paths),
        "all_feeds_s": all_feeds_s,
        "rss_after_start_mb": after_start,
        "peak_mb": peak,
    }


def newest_article(config: Path, count: int) -> Path:
    found = list((config.parent / "articles").glob(f"*/*/a{count - 1:06d}.*"))
    if len(found) != 1:
        raise RuntimeError(f"newest article a{count - 1:06d} not found")
    return found[0]


def poll_during(
    server: Server, pollers: int, marker: bytes, write: Callable[[], object]
) -> tuple[list[Answer], float]:
    """Poll FEED on new connections from ``pollers`` threads around ``write()``; stop 0.5 s after
    the first answer with ``marker`` (or 10 s after the write). Returns every answer (sent,
    received, has marker) and when the write was done."""
    seen: list[Answer] = []
    lock, done = threading.Lock(), threading.Event()

    def poll() -> None:
        while not done.is_set():
            sent = time.perf_counter()
            try:
                body = server.fetch(FEED).body
            except (OSError, http.client.HTTPException):
                continue
            with lock:
                seen.append((sent, time.perf_counter(), marker in body))

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(pollers)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    write()
    written = time.perf_counter()
    first = None
    while time.perf_counter() < written + 10:
        time.sleep(0.005)
        with lock:
            hits = [g for _, g, m in seen if m]
        if first is None and hits:
            first = min(hits)
        if first is not None and time.perf_counter() > first + 0.5:
            break
    done.set()
    for thread in threads:
        thread.join()
    return seen, written


def change_latency(config: Path, work: Path, count: int, trials: int = 5, pollers: int = 6) -> Row:
    """Edit the newest article's title; time until every worker serves the new kurz.rss."""
    path = newest_article(config, count)
    original = path.read_bytes()
    out: list[dict[str, float]] = []
    try:
        with serve(
            lambda port: harness.gunicorn_command(port, extra=GUNICORN), work, "change", config=config
        ) as server:
            for _ in range(20):
                server.fetch(FEED, timeout=30)
            for trial in range(trials):
                marker = f"benchmarker{uuid.uuid4().hex[:12]}".encode()
                text = re.sub(rb"^(title: .*)$", rb"\1 " + marker, original, count=1, flags=re.M)
                wait_quiet()
                seen, written = poll_during(server, pollers, marker, partial(path.write_bytes, text))
                out.append(trial_result(trial, seen, written))
                path.write_bytes(original)  # put it back, and wait until that is served too
                restore_deadline = time.perf_counter() + 10
                while time.perf_counter() < restore_deadline:
                    if all(marker not in server.fetch(FEED, timeout=30).body for _ in range(8)):
                        break
                    time.sleep(0.02)
                time.sleep(0.3)
    finally:
        if path.read_bytes() != original:
            path.write_bytes(original)
    return {
        "trials": out,
        "max_first_ms": max(t["first_ms"] for t in out),
        "max_all_ms": max(t["all_ms"] for t in out),
        "pollers": pollers,
    }


def trial_result(trial: int, seen: Iterable[Answer], written: float) -> dict[str, float]:
    after = [(s, g, m) for s, g, m in seen if s >= written]
    stale = [g for _, g, m in after if not m]
    marked = [g for _, g, m in after if m]
    if not marked:
        log(f"change trial {trial + 1}: marker not served within 10 s")
        return {"first_ms": float("inf"), "all_ms": float("inf")}
    first_ms = (min(marked) - written) * 1000
    # stale answers after the write: the last one bounds when every worker had the change
    all_ms = max(first_ms, (max(stale) - written) * 1000) if stale else first_ms
    late_stale = sum(1 for g in stale if g > min(marked))
    log(
        f"change trial {trial + 1}: first served {first_ms:.0f} ms, every worker {all_ms:.0f} ms "
        f"after the write ({len(after)} polls, {late_stale} stale after the first hit)"
    )
    return {"first_ms": first_ms, "all_ms": all_ms}


RENDER_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from feeds.site import Site
config, state = sys.argv[1], Path(sys.argv[2])
order = [key.split(".") for key in sys.argv[3].split(",")]
t = time.perf_counter()
site = Site(config, state_dir=state)
out = {"load_ms": (time.perf_counter() - t) * 1000}
t = time.perf_counter()
site.view()
out["view_ms"] = (time.perf_counter() - t) * 1000
for name, fmt in order:
    t = time.perf_counter()
    site.feed(name, fmt)
    out[f"{name}.{fmt}"] = (time.perf_counter() - t) * 1000
t = time.perf_counter()
site.feed(*order[-1])
out["hit_ms"] = (time.perf_counter() - t) * 1000
print(json.dumps(out))
"""


def render_times(config: Path, work: Path, repeats: int = 3) -> dict[str, float]:
    """Fresh processes over a warm index cache; each measures one order of first renders."""
    orders = {  # the first render in each process has its article bodies cold
        "kurz": "kurz.rss,kurz.atom,thema-000.rss,thema-000.atom",  # atom: bodies warm
        "alle": "alle.rss,alle.atom",
    }
    samples: dict[str, list[float]] = {}
    for _ in range(repeats):
        for label, order in orders.items():
            state = work / "render-state"
            shutil.rmtree(state, ignore_errors=True)
            state.mkdir(parents=True)
            for cache in (config.parent / ".feeds").glob("index-*.pickle"):  # the index cache, not the ledger
                shutil.copy(cache, state)
            wait_quiet()
            run = subprocess.run(
                [sys.executable, "-c", RENDER_SCRIPT, str(config), str(state), order],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=600,
                env={**os.environ, "FEEDS_CONFIG": str(config)},
            )
            if run.returncode:
                raise RuntimeError(f"render timing failed:\n{run.stderr[-3000:]}")
            for key, value in json.loads(run.stdout.strip().splitlines()[-1]).items():
                samples.setdefault(f"{label}:{key}", []).append(value)
    result = {k: statistics.median(v) for k, v in samples.items()}
    log(
        f"render (median of {repeats}): kurz.rss {result['kurz:kurz.rss']:.1f} ms, "
        f"kurz.atom (bodies warm) {result['kurz:kurz.atom']:.1f} ms, "
        f"thema-000.rss (process warm) {result['kurz:thema-000.rss']:.1f} ms, "
        f"alle.rss {result['alle:alle.rss']:.1f} ms, "
        f"alle.atom (bodies warm) {result['alle:alle.atom']:.1f} ms, view {result['kurz:view_ms']:.1f} ms"
    )
    return result


# -- report ------------------------------------------------------------------------------------

Target = tuple[str, str, str]  # target, measured, pass/FAIL


def target(name: str, measured: str, passed: bool) -> Target:
    return name, measured, "pass" if passed else "FAIL"


def fmt_ms(v: float) -> str:
    if v != v:  # nan
        return "–"
    if v == float("inf"):
        return "∞"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def fmt_rps(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def notes_for(name: str, case: str, r: dict[str, Any], row: Row, duration: float) -> str:
    notes = []
    if case == "304" and "all_304" in r:
        notes.append("all 304" if r["all_304"] else f"NOT all 304: {r.get('statuses')}")
    if r.get("errors"):
        notes.append(f"{r['errors']} socket errors")
    if r.get("foreign_cpu_s", 0) > 0.05 * duration:
        notes.append(f"other processes used {r['foreign_cpu_s']:.1f} CPU-s meanwhile")
    if r.get("non2xx3xx"):
        notes.append(f"{r['non2xx3xx']} non-2xx/3xx")
    if case == CASES[0] or len(row["cases"]) == 1:
        if row["headers_ok"] is True:
            notes.append("headers ok" + ("" if name.startswith("nginx") else ", same bytes as the export"))
        elif row["headers_ok"] is False:
            notes.append(f"headers: {row['note']}")
        elif row["note"]:
            notes.append(row["note"])
    return "; ".join(notes)


def polling_report(info: Row, duration: float) -> tuple[list[str], list[Target]]:
    size, rows = info["size"], info["rows"]
    nginx = rows.get("nginx: static export", {}).get("cases", {})
    extra = f"; feed {info.get('feed_bytes', 0):,} B, gzip {info.get('feed_gzip_bytes', 0):,} B"
    extra += f"; `feeds build` took {info['build_s']:.0f} s" if info.get("build_s") else ""
    lines = [
        f"### {size:,} articles{extra}",
        "",
        "| server | case | req/s | p50 ms | p99 ms | vs nginx | worker peak RSS MB | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, row in rows.items():
        for case, r in row["cases"].items():
            share = r["rps"] / nginx[case]["rps"] if case in nginx and nginx[case]["rps"] else None
            ratio = "" if share is None else f"{share:.0%}" if share >= 0.01 else f"{share * 100:.2g}%"
            rss = f"{row['rss_mb']:.0f}" if row.get("rss_mb") and case == next(iter(row["cases"])) else ""
            rps = fmt_rps(r["rps"]) + (" (est.)" if r.get("estimated") else "")
            lines.append(
                f"| {name} | {case} | {rps} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | {ratio} | {rss} "
                f"| {notes_for(name, case, r, row, duration)} |"
            )
    targets = []
    for name, row in rows.items():
        if not name.startswith("project") or not nginx:
            continue
        server, cases = f"{size:,}, {name.split(': ')[1]}", row["cases"]
        shares = [cases[c]["rps"] / nginx[c]["rps"] for c in CASES if c in cases and nginx[c]["rps"]]
        p99 = [cases[c]["p99"] for c in CASES if c in cases]
        ok = bool(cases.get("304", {}).get("all_304")) and bool(row["headers_ok"])
        targets += [
            target(
                f"{server}: polling ≥ 60% of nginx (304 / identity / gzip)",
                " / ".join(f"{v:.0%}" for v in shares),
                bool(shares) and min(shares) >= 0.6,
            ),
            target(
                f"{server}: p99 < 10 ms at 16 connections (304 / identity / gzip)",
                " / ".join(f"{fmt_ms(v)} ms" for v in p99),
                bool(p99) and max(p99) < 10,
            ),
            target(
                f"{server}: every 304 a 304, contract headers intact",
                "yes" if ok else f"no: {row['note'] or cases.get('304', {}).get('statuses')}",
                ok,
            ),
        ]
    return [*lines, ""], targets


def scale_report(scale: Row) -> tuple[list[str], list[Target]]:
    n, cold, warm, change, render = (scale[k] for k in ("size", "cold", "warm", "change", "render"))
    trials, r = len(change["trials"]), render
    lines = [
        f"### Scale: {n:,} articles (gunicorn, 1 sync worker for start and memory; 2 sync workers for "
        "change latency)",
        "",
        "| measurement | value |",
        "| --- | ---: |",
        f"| cold start (no `.feeds` state): process start → `/healthz` 200 | {cold['ready_s']:.2f} s |",
        f"| warm start (index cache present) | {warm['ready_s']:.2f} s |",
        f"| worker RSS right after start, cold / warm | {cold['rss_after_start_mb']:.0f} / "
        f"{warm['rss_after_start_mb']:.0f} MB |",
        f"| worker peak RSS (VmHWM) after every feed once ({cold['feeds']} documents), cold / warm "
        f"| {cold['peak_mb']:.0f} / {warm['peak_mb']:.0f} MB |",
        f"| first request of every feed, one after another, cold / warm | {cold['all_feeds_s']:.1f} / "
        f"{warm['all_feeds_s']:.1f} s |",
        f"| change → served, first response with the change (max of {trials}) "
        f"| {fmt_ms(change['max_first_ms'])} ms |",
        f"| change → served by every worker (max of {trials}; {change['pollers']} polling connections) "
        f"| {fmt_ms(change['max_all_ms'])} ms |",
        f"| change trials, every worker | {', '.join(fmt_ms(t['all_ms']) for t in change['trials'])} ms |",
        "| render kurz.rss (summary): first render in a fresh process, document and article caches cold "
        f"| {r['kurz:kurz.rss']:.1f} ms |",
        f"| render kurz.atom next: article bodies warm | {r['kurz:kurz.atom']:.1f} ms |",
        "| render thema-000.rss next: process warm, document and article caches cold "
        f"| {r['kurz:thema-000.rss']:.1f} ms |",
        f"| render alle.rss (full content): first render in a fresh process | {r['alle:alle.rss']:.1f} ms |",
        f"| render alle.atom next: article bodies warm | {r['alle:alle.atom']:.1f} ms |",
        f"| first `Site.view()` in a process (topics, newest) | {r['kurz:view_ms']:.1f} ms |",
        f"| cached document lookup `Site.feed()` | {r['kurz:hit_ms'] * 1000:.0f} µs |",
        "| `Site(...)` construction with a warm index cache (in process) "
        f"| {r['kurz:load_ms'] / 1000:.2f} s |",
        "",
    ]
    at = "" if n == 100_000 else f" (measured at {n:,}, not 100,000)"
    cold_render = max(render["kurz:kurz.rss"], render["alle:alle.rss"], render["kurz:thema-000.rss"])
    peak = max(cold["peak_mb"], warm["peak_mb"])
    targets = [
        target(f"cold start < 15 s{at}", f"{cold['ready_s']:.2f} s", cold["ready_s"] < 15),
        target(f"warm start < 3 s{at}", f"{warm['ready_s']:.2f} s", warm["ready_s"] < 3),
        target(f"resident memory < 400 MB per worker{at}", f"{peak:.0f} MB peak", peak < 400),
        target(
            f"changed article served within 100 ms{at}",
            f"{fmt_ms(change['max_all_ms'])} ms (every worker, max)",
            change["max_all_ms"] < 100,
        ),
        target(
            f"render a 50-entry feed from a cold cache < 20 ms{at}",
            f"{cold_render:.1f} ms (worst of kurz.rss, alle.rss, thema-000.rss)",
            cold_render < 20,
        ),
    ]
    return lines, targets


MACHINE_KEYS = ("cpus", "cpu", "ram", "kernel", "python", "gunicorn", "granian", "nginx", "wrk", "commit")


def report(
    args: argparse.Namespace,
    mach: dict[str, str],
    polls: list[Row],
    naive_small: list[Row],
    scale: Row | None,
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/run.py', *sys.argv[1:]])}` — {mach['date']}",
        "",
        "| machine | |",
        "| --- | --- |",
        *(
            f"| {k} | {mach.get(k, '?')} |"
            for k in (*MACHINE_KEYS, "load average at start", "load average at end")
        ),
        "",
        f"Polling `{FEED}` (50 entries, summary) with `wrk -t2 -c16 -d{args.duration:g}s "
        "--latency` on the same machine (client and server share the CPUs). `vs nginx`: "
        "requests/s relative to nginx serving the `feeds build` export, same case, same run.",
        "",
    ]
    targets: list[Target] = []
    for info in polls:
        more, found = polling_report(info, args.duration)
        lines, targets = lines + more, targets + found
    for info in naive_small:
        r = info["rows"][NAIVE]["cases"]["200 identity"]
        lines += [
            f"Naive view over {info['size']:,} articles: {fmt_rps(r['rps'])} req/s, "
            f"p50 {fmt_ms(r['p50'])} ms, p99 {fmt_ms(r['p99'])} ms ({r.get('requests', 0)} requests "
            f"in {args.naive_duration:g} s; {NAIVE}).",
            "",
        ]
    if scale:
        more, found = scale_report(scale)
        lines, targets = lines + more, targets + found
    lines += ["### Targets (issue 4)", "", "| target | measured | result |", "| --- | --- | --- |"]
    lines += [f"| {t} | {m} | {r} |" for t, m, r in targets]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--sizes", default="10000,100000", help="archive sizes, comma-separated (default %(default)s)")
    add("--duration", type=float, default=10, help="seconds per wrk run (default %(default)s)")
    add(
        "--naive-duration",
        type=float,
        help="seconds per wrk run of the naive view (default: min(duration, 10))",
    )
    add(
        "--naive-sizes",
        default="1000",
        help="extra small archives measured with the naive view only (default 1000)",
    )
    add(
        "--naive-wrk-max",
        type=int,
        default=10_000,
        help="above this size the naive view gets one timed request",
    )
    add("--work", type=Path, default=Path("/tmp/feeds-bench"), help="work folder; archives are reused")
    add("--out", type=Path, default=BENCH / "results.md")
    add(
        "--quiet-wait", type=float, default=QUIET_WAIT, help="seconds to wait for other processes to go quiet"
    )
    add("--quiet-budget", type=float, default=QUIET_BUDGET[0], help="total seconds of waiting and repeating")
    add("--no-scale", action="store_true", help="skip start, memory, change and render measurements")
    args = parser.parse_args()
    args.naive_duration = args.naive_duration or min(args.duration, 10)
    globals()["QUIET_WAIT"] = args.quiet_wait
    QUIET_BUDGET[0] = args.quiet_budget
    sizes = [int(s) for s in args.sizes.split(",") if s]
    naive_sizes = [int(s) for s in args.naive_sizes.split(",") if s and int(s) not in sizes]

    def interrupted(signum: int, frame: object) -> None:  # servers are stopped on the way out
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    ensure_tools()
    if float(loadavg().split(" / ")[0]) > 1.0:
        log(f"warning: load average {loadavg()} before the start: the numbers will show what else runs")
    args.work.mkdir(parents=True, exist_ok=True)
    mach, started = machine(), time.perf_counter()
    configs = {n: archive(args.work, n) for n in sorted(set(sizes + naive_sizes))}
    polls = [polling_size(configs[n], args.work, args) for n in sizes]
    naive_small = [
        {"size": n, "rows": {NAIVE: naive_view(configs[n], args.work, args.naive_duration, None)}}
        for n in naive_sizes
    ]
    scale = None
    if not args.no_scale:
        n = max(sizes)
        scale = {
            "size": n,
            "cold": start_and_memory(configs[n], args.work, cold=True),
            "warm": start_and_memory(configs[n], args.work, cold=False),
            "render": render_times(configs[n], args.work),
            "change": change_latency(configs[n], args.work, n),
        }
    mach["load average at end"] = loadavg()
    text = report(args, mach, polls, naive_small, scale)
    text += f"\nTotal benchmark time: {(time.perf_counter() - started) / 60:.1f} min.\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
