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
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from procs import descendants

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
FEED = "/feeds/kurz.rss"
CASES = ("304", "200 identity", "200 gzip")
CONTRACT_HEADERS = ("etag", "last-modified", "cache-control", "vary")


# -- the bare WSGI yardstick (imported by gunicorn / granian as run:bare_app) ------------------

_BARE: tuple[str, list[tuple[str, str]], bytes] | None = None


def bare_app(environ, start_response):  # noqa: ANN001, ANN201 - WSGI
    """Returns the same bytes as the project's feed, with the same headers: a dict lookup's worth."""
    global _BARE
    if _BARE is None:
        body = Path(os.environ["BENCH_BARE_BODY"]).read_bytes()
        _BARE = ("200 OK", [
            ("Content-Type", "application/rss+xml; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("ETag", '"bare"'),
            ("Last-Modified", "Mon, 01 Jan 2018 00:00:00 GMT"),
            ("Cache-Control", "public, max-age=300"),
            ("Vary", "Accept-Encoding"),
        ], body)
    status, headers, body = _BARE
    start_response(status, headers)
    return [body]


# -- processes ---------------------------------------------------------------------------------

STARTED: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], logfile: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd or ROOT,
                                start_new_session=True)
    proc.logfile = logfile  # type: ignore[attr-defined]
    STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group (master and workers), SIGKILL what is left after ``grace``."""
    if proc in STARTED:
        STARTED.remove(proc)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:  # workers that outlived the master, or a master that did not listen
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def stop_all() -> None:
    for proc in list(STARTED):
        stop(proc, grace=5)


def log_tail(proc: subprocess.Popen, n: int = 3000) -> str:
    try:
        return proc.logfile.read_text(errors="replace")[-n:]  # type: ignore[attr-defined]
    except OSError:
        return ""


def proc_mem(pid: int) -> dict[str, float]:
    """VmHWM (peak) and VmRSS of a process, in MB."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def foreign_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process that is not this benchmark or one of its children."""
    ours = {os.getpid(), *descendants(os.getpid())}
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
    for pid, (start, cpu) in foreign_cpu().items():
        old = before.get(pid)
        used += cpu - old[1] if old and old[0] == start else cpu if pid not in before else 0.0
    return used


QUIET_WAIT = 90.0  # seconds to wait for other processes to go quiet before a measurement
QUIET_BUDGET = [600.0]  # seconds of waiting and repeating left for the whole run


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


def worker_peak_mb(proc: subprocess.Popen) -> float | None:
    """The largest peak RSS among the server's worker processes (the master if it has none)."""
    pids = descendants(proc.pid) or [proc.pid]
    peaks = [proc_mem(p).get("VmHWM", 0.0) for p in pids]
    return max(peaks) if peaks else None


# -- HTTP --------------------------------------------------------------------------------------

def fetch(port: int, path: str, headers: dict[str, str] | None = None,
          timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, port: int, path: str, timeout: float) -> float:
    """Seconds until ``path`` answers 200 (a request waits in the backlog until a worker is up)."""
    started = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_tail(proc)}")
        left = timeout - (time.perf_counter() - started)
        if left <= 0:
            raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{log_tail(proc)}")
        try:
            status, _, _ = fetch(port, path, timeout=min(left, 5))
            if status == 200:
                return time.perf_counter() - started
            time.sleep(0.05)
        except (OSError, http.client.HTTPException):
            time.sleep(0.01)


# -- wrk ---------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def parse_wrk(out: str) -> dict[str, float]:
    result: dict[str, float] = {}
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
    result["timeouts"] = int(m.group(4)) if m else 0
    statuses = re.findall(r"^STATUS (\d+) (\d+)$", out, re.M)
    if statuses:
        result["statuses"] = {int(s): int(n) for s, n in statuses}  # type: ignore[assignment]
    return result


def lua(work: Path, name: str, headers: dict[str, str], count: bool = False) -> Path:
    lines = [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if count:  # slows wrk down: only for the short verification runs
        lines += [
            "local threads = {}",
            "function setup(thread) table.insert(threads, thread) end",
            "function init(args) statuses = {} end",
            "function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end",
            "function done(summary, latency, requests)",
            "  local total = {}",
            "  for _, t in ipairs(threads) do",
            "    for s, n in pairs(t:get('statuses')) do total[s] = (total[s] or 0) + n end",
            "  end",
            "  for s, n in pairs(total) do io.write(string.format('STATUS %d %d\\n', s, n)) end",
            "end",
        ]
    path = work / "lua" / f"{name}.lua"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(port: int, path: str, duration: float, script: Path | None = None,
        connections: int = 16, threads: int = 2, timeout: str = "10s") -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency",
           "--timeout", timeout]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    result = parse_wrk(run.stdout)
    result["raw"] = run.stdout + run.stderr  # type: ignore[assignment]
    return result


# -- machine -----------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        mem = f"{kb / 1024**2:.1f} GiB"
    except (OSError, StopIteration):
        pass

    def version(cmd: list[str]) -> str:
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (run.stdout + run.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    commit = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "feeds"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "ram": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gunicorn": version([str(BIN / "gunicorn"), "--version"]),
        "granian": version([str(BIN / "granian"), "--version"]),
        "nginx": version(["nginx", "-v"]),
        "wrk": version(["wrk", "--version"]).split(" [")[0],
        "commit": commit + (" + uncommitted changes in feeds/" if dirty else ""),
        "load average at start": loadavg(),
    }


def loadavg() -> str:
    """1/5/15-minute load: anything well above 0 before the run means the numbers are shared."""
    try:
        return " / ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


# -- setup -------------------------------------------------------------------------------------

def ensure_tools() -> None:
    missing = [m for m in ("granian", "markdown") if shutil.which(m, path=str(BIN)) is None
               and subprocess.run([sys.executable, "-c", f"import {m}"], capture_output=True).returncode]
    if missing:
        log(f"installing {', '.join(missing)} into {BIN.parent}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    if not shutil.which("wrk") or not Path("/usr/sbin/nginx").exists():
        script = ROOT / "scripts" / "install-system-packages.sh"
        log(f"nginx or wrk missing: running {script}")
        subprocess.run(["bash", str(script)], check=True)


def archive(work: Path, count: int) -> Path:
    """The generated archive of ``count`` articles, reused when complete."""
    sys.path.insert(0, str(BENCH))
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


def export(config: Path, force: bool = False) -> tuple[Path, float | None]:
    """``feeds build`` of the archive, reused when present; returns (folder, seconds or None)."""
    out = config.parent / "export"
    if out.joinpath("feeds", "kurz.rss").exists() and not force:
        return out, None
    log(f"feeds build {out}")
    started = time.perf_counter()
    subprocess.run([str(BIN / "feeds"), "--config", str(config), "build", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    log(f"  built in {elapsed:.1f} s")
    return out, elapsed


# -- servers -----------------------------------------------------------------------------------

def gunicorn(app: str, port: int, workers: int = 2, threads: int = 0, extra: tuple[str, ...] = ()) -> list[str]:
    cmd = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
           "--log-level", "warning", "--timeout", "300", *extra]
    if threads:
        cmd += ["--worker-class", "gthread", "--threads", str(threads)]
    return [*cmd, app]


def granian(app: str, port: int, factory: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    return [str(BIN / "granian"), "--interface", "wsgi", "--workers", "2", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", *(["--factory"] if factory else []),
            *extra, app]


PROJECT_SERVERS = {
    "project: gunicorn sync ×2": lambda port: gunicorn("feeds:create_app()", port),
    "project: gunicorn gthread 2×4": lambda port: gunicorn("feeds:create_app()", port, threads=4),
    "project: granian wsgi ×2": lambda port: granian("feeds:create_app", port, factory=True),
}
BARE_SERVERS = {
    "bare WSGI: gunicorn sync ×2": lambda port: gunicorn("run:bare_app", port, extra=("--pythonpath", str(BENCH))),
    "bare WSGI: granian wsgi ×2": lambda port: granian("run:bare_app", port, extra=("--working-dir", str(BENCH))),
}


def nginx_command(work: Path, root: Path, port: int) -> list[str]:
    scratch = work / f"nginx-{port}"
    scratch.mkdir(parents=True, exist_ok=True)
    conf = (BENCH / "nginx.conf.template").read_text()
    conf = conf.replace("@WORK@", str(scratch)).replace("@ROOT@", str(root)).replace("@PORT@", str(port))
    path = scratch / "nginx.conf"
    path.write_text(conf)
    return ["/usr/sbin/nginx", "-p", str(scratch), "-e", str(scratch / "error.log"), "-c", str(path)]


def check_headers(port: int, expect_body: bytes | None) -> tuple[bool, str, str]:
    """One request of each kind: the contract's headers on 200 and 304. Returns (ok, etag, note)."""
    notes = []
    status, h200, body = fetch(port, FEED)
    etag = h200.get("etag", "")
    status_gz, hgz, gz = fetch(port, FEED, {"Accept-Encoding": "gzip"})
    status304, h304, body304 = fetch(port, FEED, {"If-None-Match": etag})
    if status != 200 or status_gz != 200 or status304 != 304:
        notes.append(f"statuses {status}/{status_gz}/{status304}")
    for name, headers in (("200", h200), ("200 gzip", hgz), ("304", h304)):
        missing = [h for h in CONTRACT_HEADERS if h not in headers]
        if missing:
            notes.append(f"{name} lacks {', '.join(missing)}")
    if h304.get("etag") != etag:
        notes.append("304 ETag differs from 200's")
    if body304:
        notes.append("304 has a body")
    if hgz.get("content-encoding") != "gzip" or gzip.decompress(gz) != body:
        notes.append("gzip body is not the identity body gzipped")
    if expect_body is not None and body != expect_body:
        notes.append("bytes differ from the export")
    return not notes, etag, "; ".join(notes)


def measure_polling(name: str, proc: subprocess.Popen, port: int, work: Path, duration: float,
                    cases: tuple[str, ...], etag: str) -> dict[str, dict]:
    results: dict[str, dict] = {}
    scripts = {
        "304": lua(work, f"inm-{port}", {"If-None-Match": etag}),
        "200 identity": None,
        "200 gzip": lua(work, "gzip", {"Accept-Encoding": "gzip"}),
    }
    wrk(port, FEED, 1, scripts["200 gzip"])  # warm up: every worker renders the feed once
    wrk(port, FEED, 1)
    for case in cases:
        for attempt in range(3):  # a run that shared the CPUs with someone else is repeated
            wait_quiet()
            others = foreign_cpu()
            r = wrk(port, FEED, duration, scripts[case])
            r["foreign_cpu_s"] = foreign_since(others)
            if r["foreign_cpu_s"] <= 0.05 * duration or QUIET_BUDGET[0] <= 0:
                break
            QUIET_BUDGET[0] -= duration
            log(f"  {name} {case}: other processes used {r['foreign_cpu_s']:.1f} CPU-s; repeating")
        if case == "304":  # every response really a 304? count statuses in a short extra run
            check = wrk(port, FEED, 1, lua(work, f"inm-count-{port}", {"If-None-Match": etag}, count=True))
            r["statuses"] = check.get("statuses", {})
            r["all_304"] = (set(r["statuses"]) == {304} and not r["non2xx3xx"]
                            and r.get("bytes_per_response", 1e9) < 1000)
        results[case] = r
        log(f"  {name:32s} {case:13s} {r['rps']:10.0f} req/s  p50 {r['p50']:7.2f} ms  "
            f"p99 {r['p99']:7.2f} ms  errors {r['errors']}  non-2xx/3xx {r['non2xx3xx']}"
            + (f"  statuses {r['statuses']}" if "statuses" in r else "")
            + (f"  OTHER PROCESSES used {r['foreign_cpu_s']:.1f} CPU-s" if r["foreign_cpu_s"] > 0.05 * duration else ""))
    return results


def polling_size(config: Path, work: Path, duration: float, naive_duration: float,
                 with_bare: bool, naive_single_timeout: float, naive_wrk_max: int) -> dict:
    size = int(next(config.parent.glob(".complete-*")).name.split("-")[1])
    env = {"FEEDS_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    logs = work / "logs"
    rows: dict[str, dict] = {}
    info: dict[str, object] = {"size": size}
    exported, build_s = export(config)
    if build_s is not None:
        info["build_s"] = build_s
    served = exported / "feeds" / "kurz.rss"

    for name, command in PROJECT_SERVERS.items():
        port = free_port()
        proc = start(command(port), logs / f"{size}-{name.split(': ')[1].split()[0]}-{port}.log", env)
        try:
            ready = wait_ready(proc, port, "/healthz", timeout=900)
            log(f"{name} up in {ready:.1f} s on :{port}")
            ok, etag, note = check_headers(port, served.read_bytes())
            if "bytes differ from the export" in note and not info.get("rebuilt"):
                log("  export is stale (feeds/ changed?): rebuilding it")
                exported, build_s = export(config, force=True)
                info["rebuilt"] = True
                info["build_s"] = build_s
                ok, etag, note = check_headers(port, served.read_bytes())
            body = fetch(port, FEED)[2]
            info["feed_bytes"] = len(body)
            info["feed_gzip_bytes"] = len(fetch(port, FEED, {"Accept-Encoding": "gzip"})[2])
            res = measure_polling(name, proc, port, work, duration, CASES, etag)
            rows[name] = {"cases": res, "headers_ok": ok, "note": note, "rss_mb": worker_peak_mb(proc)}
        finally:
            stop(proc)

    port = free_port()
    proc = start(nginx_command(work, exported, port), logs / f"{size}-nginx-{port}.log")
    try:
        wait_ready(proc, port, FEED, timeout=30)
        ok, etag, note = check_headers(port, None)
        res = measure_polling("nginx (feeds build export)", proc, port, work, duration, CASES, etag)
        rows["nginx: static export"] = {"cases": res, "headers_ok": ok, "note": note,
                                        "rss_mb": worker_peak_mb(proc)}
    finally:
        stop(proc)

    if with_bare:
        for name, command in BARE_SERVERS.items():
            port = free_port()
            proc = start(command(port), logs / f"{size}-bare-{port}.log", {"BENCH_BARE_BODY": str(served)})
            try:
                wait_ready(proc, port, FEED, timeout=60)
                res = measure_polling(name, proc, port, work, duration, ("200 identity",), "")
                rows[name] = {"cases": res, "headers_ok": None, "note": "always 200, fixed headers",
                              "rss_mb": worker_peak_mb(proc)}
            finally:
                stop(proc)

    port = free_port()
    name = "naive Flask+feedgen: gunicorn sync ×2"
    proc = start(gunicorn("naive_app:app", port, extra=("--pythonpath", str(BENCH))),
                 logs / f"{size}-naive-{port}.log", env)
    try:
        wait_ready(proc, port, "/healthz", timeout=60)
        if size <= naive_wrk_max:
            fetch(port, FEED, timeout=300)
            wait_quiet()  # import and warm both ... at least one worker
            r = wrk(port, FEED, naive_duration, timeout="60s")
            log(f"  {name:32s} 200 identity {r['rps']:10.2f} req/s  p50 {r['p50']:.0f} ms  "
                f"p99 {r['p99']:.0f} ms  ({r.get('requests', 0)} requests)")
            rows[name] = {"cases": {"200 identity": r}, "headers_ok": None,
                          "note": f"no 304, no gzip: every request rebuilds; {r.get('requests', 0)} "
                                  f"requests in wrk -d{naive_duration:g}s",
                          "rss_mb": worker_peak_mb(proc)}
        else:
            started = time.perf_counter()
            try:
                fetch(port, FEED, timeout=naive_single_timeout)
                took = time.perf_counter() - started
                note = (f"too slow for wrk: one request alone took {took:.1f} s "
                        f"(≈ {2 / took:.2f} req/s with 2 workers, estimated)")
                est = {"rps": 2 / took, "p50": took * 1000, "p99": float("nan"), "estimated": True}
            except (OSError, http.client.HTTPException):
                note = f"too slow for wrk: one request took > {naive_single_timeout:.0f} s"
                est = {"rps": 0.0, "p50": float("nan"), "p99": float("nan"), "estimated": True}
            log(f"  {name}: {note}")
            rows[name] = {"cases": {"200 identity": est}, "headers_ok": None, "note": note,
                          "rss_mb": worker_peak_mb(proc)}
    finally:
        stop(proc)
    info["rows"] = rows
    return info


def naive_only(config: Path, work: Path, naive_duration: float) -> dict:
    """The naive view on a small archive (the issue's 1,000-article yardstick)."""
    size = int(next(config.parent.glob(".complete-*")).name.split("-")[1])
    port = free_port()
    name = "naive Flask+feedgen: gunicorn sync ×2"
    proc = start(gunicorn("naive_app:app", port, extra=("--pythonpath", str(BENCH))),
                 work / "logs" / f"{size}-naive-{port}.log", {"FEEDS_CONFIG": str(config)})
    try:
        wait_ready(proc, port, "/healthz", timeout=60)
        fetch(port, FEED, timeout=300)
        wait_quiet()
        r = wrk(port, FEED, naive_duration, timeout="60s")
        log(f"  {name} over {size:,}: {r['rps']:.2f} req/s  p50 {r['p50']:.0f} ms")
        return {"size": size, "rows": {name: {"cases": {"200 identity": r}, "headers_ok": None,
                "note": f"no 304, no gzip: every request rebuilds; wrk -d{naive_duration:g}s",
                "rss_mb": worker_peak_mb(proc)}}}
    finally:
        stop(proc)


# -- scale: start, memory, change latency, render ----------------------------------------------

def feed_paths(port: int) -> list[str]:
    _, _, index = fetch(port, "/", timeout=120)
    names = sorted(set(re.findall(r'/feeds/([a-z0-9][a-z0-9_-]*\.(?:rss|atom))"', index.decode())))
    return [f"/feeds/{n}" for n in names]


def start_and_memory(config: Path, work: Path, cold: bool) -> dict:
    state = config.parent / ".feeds"
    if cold:
        shutil.rmtree(state, ignore_errors=True)
    port = free_port()
    kind = "cold" if cold else "warm"
    wait_quiet()
    started = time.perf_counter()
    proc = start(gunicorn("feeds:create_app()", port, workers=1),
                 work / "logs" / f"start-{kind}-{port}.log",
                 {"FEEDS_CONFIG": str(config), "PYTHONUNBUFFERED": "1"})
    try:
        ready = wait_ready(proc, port, "/healthz", timeout=900)
        ready = time.perf_counter() - started
        workers = descendants(proc.pid)
        after_start = max(proc_mem(p).get("VmRSS", 0) for p in workers)
        paths = feed_paths(port)
        t = time.perf_counter()
        for path in paths:
            status, _, _ = fetch(port, path, timeout=120)
            if status != 200:
                raise RuntimeError(f"{path}: {status}")
        all_feeds_s = time.perf_counter() - t
        mem = [proc_mem(p) for p in workers]
        result = {"ready_s": ready, "feeds": len(paths), "all_feeds_s": all_feeds_s,
                  "rss_after_start_mb": after_start,
                  "peak_mb": max(m.get("VmHWM", 0) for m in mem),
                  "rss_mb": max(m.get("VmRSS", 0) for m in mem),
                  "master_mb": proc_mem(proc.pid).get("VmHWM", 0)}
        log(f"{kind} start: /healthz 200 after {ready:.2f} s; {len(paths)} feeds in {all_feeds_s:.1f} s; "
            f"worker peak RSS {result['peak_mb']:.0f} MB")
        return result
    finally:
        stop(proc, grace=60)  # let the worker write its index cache


def newest_article(config: Path, count: int) -> Path:
    found = list((config.parent / "articles").glob(f"*/*/a{count - 1:06d}.*"))
    if len(found) != 1:
        raise RuntimeError(f"newest article a{count - 1:06d} not found")
    return found[0]


def change_latency(config: Path, work: Path, count: int, trials: int = 5, pollers: int = 6) -> dict:
    """Edit the newest article's title; time until every worker serves the new kurz.rss."""
    path = newest_article(config, count)
    original = path.read_bytes()
    port = free_port()
    proc = start(gunicorn("feeds:create_app()", port), work / "logs" / f"change-{port}.log",
                 {"FEEDS_CONFIG": str(config), "PYTHONUNBUFFERED": "1"})
    out: list[dict] = []
    try:
        wait_ready(proc, port, "/healthz", timeout=900)
        for _ in range(20):
            fetch(port, FEED)
        for trial in range(trials):
            marker = f"benchmarker{uuid.uuid4().hex[:12]}"
            text = re.sub(rb"^(title: .*)$", lambda m: m.group(1) + b" " + marker.encode(),
                          original, count=1, flags=re.M)
            seen: list[tuple[float, float, bool]] = []  # (sent, received, has marker)
            lock = threading.Lock()
            done = threading.Event()
            t_write = [float("inf")]

            def poll() -> None:
                while not done.is_set():
                    sent = time.perf_counter()
                    try:
                        _, _, body = fetch(port, FEED, timeout=10)
                    except (OSError, http.client.HTTPException):
                        continue
                    got = time.perf_counter()
                    with lock:
                        seen.append((sent, got, marker.encode() in body))

            wait_quiet()
            threads = [threading.Thread(target=poll, daemon=True) for _ in range(pollers)]
            for t in threads:
                t.start()
            time.sleep(0.2)
            with open(path, "wb") as fh:
                fh.write(text)
            t_write[0] = time.perf_counter()
            deadline = t_write[0] + 10
            first = None
            while time.perf_counter() < deadline:
                time.sleep(0.005)
                with lock:
                    hits = [g for s, g, m in seen if m]
                    if hits and first is None:
                        first = min(hits)
                    # done once 0.5 s of responses after the first hit all carry the marker
                    if first is not None and time.perf_counter() > first + 0.5:
                        break
            done.set()
            for t in threads:
                t.join()
            after = [(s, g, m) for s, g, m in seen if s >= t_write[0]]
            stale = [g for s, g, m in after if not m]
            marked = [g for s, g, m in after if m]
            if not marked:
                out.append({"first_ms": float("inf"), "all_ms": float("inf"), "polls": len(after)})
                log(f"change trial {trial + 1}: marker not served within 10 s")
                continue
            first_ms = (min(marked) - t_write[0]) * 1000
            # stale answers after the write: the last one bounds when every worker had the change
            all_ms = max(first_ms, (max(stale) - t_write[0]) * 1000) if stale else first_ms
            late_stale = sum(1 for g in stale if g > min(marked))
            out.append({"first_ms": first_ms, "all_ms": all_ms, "polls": len(after),
                        "stale_after_first": late_stale})
            log(f"change trial {trial + 1}: first served {first_ms:.0f} ms, every worker {all_ms:.0f} ms "
                f"after the write ({len(after)} polls, {late_stale} stale after the first hit)")
            with open(path, "wb") as fh:  # put it back, and wait until that is served too
                fh.write(original)
            restore_deadline = time.perf_counter() + 10
            while time.perf_counter() < restore_deadline:
                if all(marker.encode() not in fetch(port, FEED)[2] for _ in range(8)):
                    break
                time.sleep(0.02)
            time.sleep(0.3)
    finally:
        if path.read_bytes() != original:
            path.write_bytes(original)
        stop(proc)
    return {"trials": out, "max_first_ms": max(t["first_ms"] for t in out),
            "max_all_ms": max(t["all_ms"] for t in out), "pollers": pollers}


RENDER_SCRIPT = r"""
import json, shutil, sys, time
from pathlib import Path
from feeds.site import Site
config, state, order = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(",")
t = time.perf_counter(); site = Site(config, state_dir=state); out = {"load_ms": (time.perf_counter() - t) * 1000}
t = time.perf_counter(); site.view(); out["view_ms"] = (time.perf_counter() - t) * 1000
for key in order:
    name, fmt = key.split(".")
    t = time.perf_counter(); site.feed(name, fmt); out[key] = (time.perf_counter() - t) * 1000
t = time.perf_counter(); site.feed(*order[-1].split(".")); out["hit_ms"] = (time.perf_counter() - t) * 1000
print(json.dumps(out))
"""


def render_times(config: Path, work: Path, repeats: int = 3) -> dict:
    """Fresh processes over a warm index cache; each measures one order of first renders."""
    state_src = config.parent / ".feeds"
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
            for cache in state_src.glob("index-*.pickle"):  # the index cache, not the ledger
                shutil.copy(cache, state)
            wait_quiet()
            run = subprocess.run([sys.executable, "-c", RENDER_SCRIPT, str(config), str(state), order],
                                 capture_output=True, text=True, cwd=ROOT, timeout=600,
                                 env={**os.environ, "FEEDS_CONFIG": str(config)})
            if run.returncode:
                raise RuntimeError(f"render timing failed:\n{run.stderr[-3000:]}")
            data = json.loads(run.stdout.strip().splitlines()[-1])
            for key, value in data.items():
                samples.setdefault(f"{label}:{key}", []).append(value)
    result = {k: statistics.median(v) for k, v in samples.items()}
    log("render (median of %d): kurz.rss %.1f ms, kurz.atom (bodies warm) %.1f ms, thema-000.rss "
        "(process warm) %.1f ms, alle.rss %.1f ms, alle.atom (bodies warm) %.1f ms, view %.1f ms" % (
            repeats, result["kurz:kurz.rss"], result["kurz:kurz.atom"], result["kurz:thema-000.rss"],
            result["alle:alle.rss"], result["alle:alle.atom"], result["kurz:view_ms"]))
    return result


# -- report ------------------------------------------------------------------------------------

def fmt_ms(v: float) -> str:
    if v != v:  # nan
        return "–"
    if v == float("inf"):
        return "∞"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def fmt_rps(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def report(args: argparse.Namespace, mach: dict, polls: list[dict], naive_small: list[dict],
           scale: dict | None) -> str:
    lines = ["# Benchmark results", ""]
    lines.append(f"`{' '.join(['.venv/bin/python', 'bench/run.py', *sys.argv[1:]])}` — {mach['date']}")
    lines += ["", "| machine | |", "| --- | --- |"]
    for key in ("cpus", "cpu", "ram", "kernel", "python", "gunicorn", "granian", "nginx", "wrk", "commit",
                "load average at start", "load average at end"):
        lines.append(f"| {key} | {mach.get(key, '?')} |")
    lines += ["", f"Polling `{FEED}` (50 entries, summary) with `wrk -t2 -c16 -d{args.duration:g}s "
              "--latency` on the same machine (client and server share the CPUs). `vs nginx`: "
              "requests/s relative to nginx serving the `feeds build` export, same case, same run.", ""]
    targets: list[tuple[str, str, str]] = []
    for info in polls:
        size = info["size"]
        rows = info["rows"]
        nginx = rows.get("nginx: static export", {}).get("cases", {})
        extra = f"; feed {info.get('feed_bytes', 0):,} B, gzip {info.get('feed_gzip_bytes', 0):,} B"
        if info.get("build_s"):
            extra += f"; `feeds build` took {info['build_s']:.0f} s"
        lines += [f"### {size:,} articles{extra}", "",
                  "| server | case | req/s | p50 ms | p99 ms | vs nginx | worker peak RSS MB | notes |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for name, row in rows.items():
            for case, r in row["cases"].items():
                ratio = ""
                if case in nginx and nginx[case]["rps"]:
                    share = r["rps"] / nginx[case]["rps"]
                    ratio = f"{share:.0%}" if share >= 0.01 else f"{share * 100:.2g}%"
                notes = []
                if case == "304" and "all_304" in r:
                    notes.append("all 304" if r["all_304"] else f"NOT all 304: {r.get('statuses')}")
                if r.get("errors"):
                    notes.append(f"{r['errors']} socket errors")
                if r.get("foreign_cpu_s", 0) > 0.05 * args.duration:
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
                rss = f"{row['rss_mb']:.0f}" if row.get("rss_mb") and case == next(iter(row["cases"])) else ""
                rps = fmt_rps(r["rps"]) + (" (est.)" if r.get("estimated") else "")
                lines.append(f"| {name} | {case} | {rps} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} "
                             f"| {ratio} | {rss} | {'; '.join(notes)} |")
        lines.append("")
        for name, row in rows.items():
            if not name.startswith("project") or not nginx:
                continue
            server = name.split(": ")[1]
            cases = row["cases"]
            shares = {c: cases[c]["rps"] / nginx[c]["rps"] for c in CASES if c in cases and nginx[c]["rps"]}
            targets.append((f"{size:,}, {server}: polling ≥ 60% of nginx (304 / identity / gzip)",
                            " / ".join(f"{v:.0%}" for v in shares.values()),
                            "pass" if shares and min(shares.values()) >= 0.6 else "FAIL"))
            p99 = [cases[c]["p99"] for c in CASES if c in cases]
            targets.append((f"{size:,}, {server}: p99 < 10 ms at 16 connections (304 / identity / gzip)",
                            " / ".join(f"{fmt_ms(v)} ms" for v in p99),
                            "pass" if p99 and max(p99) < 10 else "FAIL"))
            ok = bool(cases.get("304", {}).get("all_304")) and bool(row["headers_ok"])
            targets.append((f"{size:,}, {server}: every 304 a 304, contract headers intact",
                            "yes" if ok else f"no: {row['note'] or cases.get('304', {}).get('statuses')}",
                            "pass" if ok else "FAIL"))
    for info in naive_small:
        for name, row in info["rows"].items():
            r = row["cases"]["200 identity"]
            lines += [f"Naive view over {info['size']:,} articles: {fmt_rps(r['rps'])} req/s, "
                      f"p50 {fmt_ms(r['p50'])} ms, p99 {fmt_ms(r['p99'])} ms ({r.get('requests', 0)} requests "
                      f"in {args.naive_duration:g} s; {name}).", ""]
    if scale:
        n = scale["size"]
        cold, warm, change, render = scale["cold"], scale["warm"], scale["change"], scale["render"]
        lines += [f"### Scale: {n:,} articles (gunicorn, 1 sync worker for start and memory; "
                  "2 sync workers for change latency)", "",
                  "| measurement | value |", "| --- | ---: |",
                  f"| cold start (no `.feeds` state): process start → `/healthz` 200 | {cold['ready_s']:.2f} s |",
                  f"| warm start (index cache present) | {warm['ready_s']:.2f} s |",
                  f"| worker RSS right after start, cold / warm | {cold['rss_after_start_mb']:.0f} / "
                  f"{warm['rss_after_start_mb']:.0f} MB |",
                  f"| worker peak RSS (VmHWM) after every feed once ({cold['feeds']} documents), cold / warm "
                  f"| {cold['peak_mb']:.0f} / {warm['peak_mb']:.0f} MB |",
                  f"| first request of every feed, one after another, cold / warm | {cold['all_feeds_s']:.1f} / "
                  f"{warm['all_feeds_s']:.1f} s |",
                  f"| change → served, first response with the change (max of {len(change['trials'])}) "
                  f"| {fmt_ms(change['max_first_ms'])} ms |",
                  f"| change → served by every worker (max of {len(change['trials'])}; {change['pollers']} "
                  f"polling connections) | {fmt_ms(change['max_all_ms'])} ms |",
                  "| change trials, every worker | " + ", ".join(fmt_ms(t["all_ms"]) for t in change["trials"])
                  + " ms |",
                  f"| render kurz.rss (summary): first render in a fresh process, document and article "
                  f"caches cold | {render['kurz:kurz.rss']:.1f} ms |",
                  f"| render kurz.atom next: article bodies warm | {render['kurz:kurz.atom']:.1f} ms |",
                  f"| render thema-000.rss next: process warm, document and article caches cold "
                  f"| {render['kurz:thema-000.rss']:.1f} ms |",
                  f"| render alle.rss (full content): first render in a fresh process | {render['alle:alle.rss']:.1f} ms |",
                  f"| render alle.atom next: article bodies warm | {render['alle:alle.atom']:.1f} ms |",
                  f"| first `Site.view()` in a process (topics, newest) | {render['kurz:view_ms']:.1f} ms |",
                  f"| cached document lookup `Site.feed()` | {render['kurz:hit_ms'] * 1000:.0f} µs |",
                  f"| `Site(...)` construction with a warm index cache (in process) | {render['kurz:load_ms'] / 1000:.2f} s |",
                  ""]
        at = "" if n == 100_000 else f" (measured at {n:,}, not 100,000)"
        cold_render = max(render["kurz:kurz.rss"], render["alle:alle.rss"], render["kurz:thema-000.rss"])
        targets += [
            (f"cold start < 15 s{at}", f"{cold['ready_s']:.2f} s", "pass" if cold["ready_s"] < 15 else "FAIL"),
            (f"warm start < 3 s{at}", f"{warm['ready_s']:.2f} s", "pass" if warm["ready_s"] < 3 else "FAIL"),
            (f"resident memory < 400 MB per worker{at}", f"{max(cold['peak_mb'], warm['peak_mb']):.0f} MB peak",
             "pass" if max(cold["peak_mb"], warm["peak_mb"]) < 400 else "FAIL"),
            (f"changed article served within 100 ms{at}", f"{fmt_ms(change['max_all_ms'])} ms (every worker, max)",
             "pass" if change["max_all_ms"] < 100 else "FAIL"),
            (f"render a 50-entry feed from a cold cache < 20 ms{at}",
             f"{cold_render:.1f} ms (worst of kurz.rss, alle.rss, thema-000.rss)",
             "pass" if cold_render < 20 else "FAIL"),
        ]
    lines += ["### Targets (issue 4)", "", "| target | measured | result |", "| --- | --- | --- |"]
    lines += [f"| {t} | {m} | {r} |" for t, m, r in targets]
    lines.append("")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000",
                        help="archive sizes, comma-separated (default 10000,100000)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--naive-duration", type=float, default=None,
                        help="seconds per wrk run of the naive view (default: min(duration, 10))")
    parser.add_argument("--naive-sizes", default="1000",
                        help="extra small archives measured with the naive view only (default 1000)")
    parser.add_argument("--naive-wrk-max", type=int, default=10_000,
                        help="above this size the naive view gets one timed request instead of wrk")
    parser.add_argument("--naive-single-timeout", type=float, default=120)
    parser.add_argument("--work", type=Path, default=Path("/tmp/feeds-bench"),
                        help="work folder; archives are reused (default /tmp/feeds-bench)")
    parser.add_argument("--out", type=Path, default=BENCH / "results.md")
    parser.add_argument("--quiet-wait", type=float, default=QUIET_WAIT,
                        help="seconds to wait for other processes to go quiet before each measurement "
                             f"(default {QUIET_WAIT:g}); a wrk run they disturbed is repeated up to twice")
    parser.add_argument("--quiet-budget", type=float, default=QUIET_BUDGET[0],
                        help="total seconds the run may spend waiting and repeating (default %(default)g)")
    parser.add_argument("--no-scale", action="store_true",
                        help="skip start, memory, change and render measurements")
    args = parser.parse_args()
    args.naive_duration = args.naive_duration or min(args.duration, 10)
    globals()["QUIET_WAIT"] = args.quiet_wait
    QUIET_BUDGET[0] = args.quiet_budget
    sizes = [int(s) for s in args.sizes.split(",") if s]
    naive_sizes = [int(s) for s in args.naive_sizes.split(",") if s and int(s) not in sizes]

    def interrupted(signum, frame):  # noqa: ANN001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    ensure_tools()
    if float(loadavg().split(" / ")[0]) > 1.0:
        log(f"warning: load average {loadavg()} before the start: something else is running, "
            "and the numbers will show it")
    args.work.mkdir(parents=True, exist_ok=True)
    mach = machine()
    started = time.perf_counter()
    try:
        configs = {n: archive(args.work, n) for n in sorted(set(sizes + naive_sizes))}
        polls = [polling_size(configs[n], args.work, args.duration, args.naive_duration,
                              True, args.naive_single_timeout, args.naive_wrk_max) for n in sizes]
        naive_small = [naive_only(configs[n], args.work, args.naive_duration) for n in naive_sizes]
        scale = None
        if not args.no_scale:
            n = max(sizes)
            config = configs[n]
            scale = {"size": n}
            scale["cold"] = start_and_memory(config, args.work, cold=True)
            scale["warm"] = start_and_memory(config, args.work, cold=False)
            scale["render"] = render_times(config, args.work)
            scale["change"] = change_latency(config, args.work, n)
    finally:
        stop_all()
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
