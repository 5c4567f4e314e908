#!/usr/bin/env python3
"""Polling through Varnish: the project behind the shipped VCL against the cache's own ceiling.

    .venv/bin/python bench/cache.py [--size 10000] [--duration 10] [--out bench/CACHE.md]

Three setups, same run, same feed (/feeds/kurz.rss), gzip-accepting clients (wrk -t2 -c16):

* **Varnish → feeds**: Varnish with deploy/varnish.vcl in front of two production origins
  (granian ×2 each, separate state folders) over one archive;
* **Varnish → nginx** (the ceiling): the same Varnish and VCL in front of nginx serving the
  ``feeds build`` export, so the origin costs nothing;
* **nginx alone** serving the export (the machine's limit for a static file).

For each it measures 200s (gzip) and 304s (If-None-Match), and counts the requests that reached
the project's origins during the runs (their access logs): behind the cache they should see only
the first fetch and revalidations. Writes a Markdown report to --out.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from run import FEED, GRANIAN, archive, export, loadavg, log, machine, ms, nginx_command, rps, serve, wrk

from support import harness  # run put tests/ on sys.path
from support.harness import REPO, Server

BENCH = REPO / "bench"
VCL = REPO / "deploy" / "varnish.vcl"
VSL_QUIET = (
    "ReqHeader", "RespHeader", "BereqHeader", "BerespHeader", "Timestamp", "VCL_call", "VCL_return",
    "ReqUnset", "RespUnset", "ReqStart", "ReqMethod", "ReqURL", "ReqProtocol", "RespProtocol",
    "RespStatus", "RespReason", "Link", "Begin", "End", "Hit", "VCL_acl", "VCL_Log",
)  # fmt: skip
VARNISH_PARAMS = (  # tuned for a 2-CPU machine that also runs the client (bench/README.md)
    *("-p", "thread_pools=2", "-p", "thread_pool_min=32", "-p", "thread_pool_max=500"),
    *("-p", "timeout_idle=10", "-p", "vsl_space=16m", "-s", "malloc,256m"),
    # The shared-memory log records every header of every request; keeping only what varnishlog
    # needs to show errors and purges gives 5-15% more requests on this machine.
    *("-p", f"vsl_mask={','.join('-' + tag for tag in VSL_QUIET)}"),
)


def vcl_for(ports: list[int], probe: str = "/healthz") -> str:
    """The shipped VCL with its two backends on ``ports`` (one port: both on it)."""
    text = VCL.read_text()
    text = text.replace('.port = "8000";', f'.port = "{ports[0]}";')
    text = text.replace('.port = "8001";', f'.port = "{ports[-1]}";')
    return text.replace('.url = "/healthz";', f'.url = "{probe}";')


@contextmanager
def varnish(work: Path, name: str, vcl: str) -> Iterator[Server]:
    folder = work / f"varnish-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "feeds.vcl").write_text(vcl)

    def command(port: int) -> list[str]:
        return [
            shutil.which("varnishd") or "/usr/sbin/varnishd",
            *("-j", "none"),  # as root it would run as vcache, which cannot read the work folder
            *("-F", "-a", f"{harness.HOST}:{port}", "-f", str(folder / "feeds.vcl"), "-n", str(folder / "n")),
            *VARNISH_PARAMS,
        ]

    with harness.start(command, work / "logs" / f"varnish-{name}.log", ready=FEED, timeout=60) as server:
        yield server


def origin(config: Path, work: Path, number: int) -> Server:
    """A production server with its own state folder and an access log (to count what reaches it)."""
    return serve(
        lambda port: harness.production_command(port, extra=GRANIAN),
        work,
        f"cache-origin-{number}",
        config=config,
        env={"FEEDS_ACCESS_LOG": "1"},
        state_dir=work / f"cache-state-{number}",
    )


def origin_requests(logs: list[Path]) -> int:
    return sum(len(re.findall(r'"GET /feeds/kurz\.rss', path.read_text(errors="replace"))) for path in logs)


def poll(server: Server, work: Path, seconds: float) -> dict[str, tuple[float, float, float]]:
    """(req/s, p50 ms, p99 ms) for gzip 200s and 304s, after a warm-up."""
    etag = server.fetch(FEED, {"Accept-Encoding": "gzip"}).headers.get("etag", "")
    cases = {
        "200 gzip": {"Accept-Encoding": "gzip"},
        "304": {"Accept-Encoding": "gzip", "If-None-Match": etag},
    }
    wrk(server.port, 1, work, cases["200 gzip"])
    out = {}
    for case, headers in cases.items():
        r = wrk(server.port, seconds, work, headers)
        out[case] = (r.rps, r.p50, r.p99)
        log(f"{server.log.stem}: {case} {r.rps:,.0f} req/s p99 {ms(r.p99)} ms")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/feeds-bench"))
    parser.add_argument("--out", type=Path, default=BENCH / "CACHE.md")
    args = parser.parse_args()
    started, load = time.perf_counter(), loadavg()
    config, work = archive(args.work, args.size), args.work
    out = export(config)
    results: dict[str, dict[str, tuple[float, float, float]]] = {}
    logs = [work / "logs" / f"cache-origin-{i}.log" for i in (1, 2)]
    with origin(config, work, 1) as one, origin(config, work, 2) as two:
        with varnish(work, "feeds", vcl_for([one.port, two.port])) as cache:
            before = origin_requests(logs)
            results["Varnish → feeds (2 origins)"] = poll(cache, work, args.duration)
            reached = origin_requests(logs) - before
        alone = {case: poll(one, work, args.duration)[case] for case in ("200 gzip",)}
    with serve(nginx_command(work, out), work, "cache-nginx", ready=FEED, timeout=30) as nginx:
        with varnish(work, "nginx", vcl_for([nginx.port], probe=FEED)) as cache:
            results["Varnish → nginx (the cache's ceiling)"] = poll(cache, work, args.duration)
        results["nginx alone (static export)"] = poll(nginx, work, args.duration)
    ceiling = results["Varnish → nginx (the cache's ceiling)"]
    plain = results["nginx alone (static export)"]
    lines = [
        "# Polling through Varnish\n",
        f"`.venv/bin/python bench/cache.py {' '.join(sys.argv[1:])}` — "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n",
        f"Machine: {machine()}. Varnish {varnish_version('varnishd')}: `varnishd -j none -F "
        f"-f deploy/varnish.vcl {' '.join(VARNISH_PARAMS)}`.\n",
        f"{args.size:,} articles; `{FEED}` polled by `wrk -t2 -c16 -d{args.duration:g}s` with "
        "`Accept-Encoding: gzip` (304: plus `If-None-Match`). Client, cache and origins share the CPUs.\n",
        "| setup | case | req/s | p50 ms | p99 ms | vs ceiling | vs nginx |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, cases in results.items():
        for case, (r, p50, p99) in cases.items():
            lines.append(
                f"| {name} | {case} | {rps(r)} | {ms(p50)} | {ms(p99)} | {r / ceiling[case][0]:.0%} "
                f"| {r / plain[case][0]:.0%} |"
            )
    lines += [
        "",
        f"Requests for `{FEED}` that reached the two origins during the Varnish → feeds runs: {reached} "
        f"(of {sum(int(r * args.duration) for r, _, _ in results['Varnish → feeds (2 origins)'].values()):,} "
        "answered). One origin alone, no cache: "
        f"{rps(alone['200 gzip'][0])} req/s (200 gzip).",
        "",
        f"Load average {load} at the start, {loadavg()} at the end. "
        f"Total: {(time.perf_counter() - started) / 60:.1f} min.",
    ]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


def varnish_version(binary: str) -> str:
    found = shutil.which(binary) or f"/usr/sbin/{binary}"
    run = subprocess.run([found, "-V"], capture_output=True, text=True)
    match = re.search(r"varnish-([\d.]+)", run.stderr + run.stdout)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    sys.exit(main())
