#!/usr/bin/env python3
"""How the origin's costs grow with the archive: 10,000 → 100,000 → 1,000,000 articles.

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000] [--out bench/SCALE.md] [--export]

For each size (archives from bench/generate.py, kept in --work) it measures what bench/run.py
measures at its largest size: cold and warm start to ``/healthz``, peak resident memory of a
worker after serving every feed once, a change served by every worker, and a 50-entry feed
rendered from a cold cache; ``--export`` measures the static export instead (see
:func:`export_costs`). It writes a Markdown table with the growth exponent between sizes
(1.0: linear, 0: flat) and a log-log plot, ``bench/scale.svg``. Not part of the test suite: a
million articles take about 2.5 GB of disk and half an hour.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from run import (
    BENCH,
    BIN,
    COUNT_STATUSES,
    FEED,
    REPO,
    archive,
    change_latency,
    harness,
    loadavg,
    log,
    machine,
    render_times,
    serve,
    start_up,
)

TARGETS = {  # issues 10 and 16, at 1,000,000 articles
    "cold start (s)": 180.0,
    "warm start (s)": 5.0,
    "warm start to checked documents (s)": 15.0,
    "peak memory per worker (MB)": 500.0,
    "change served by every worker (ms)": 100.0,
    "cold 50-entry render (ms)": 20.0,
    # issue 20: 50 ms for all workers; one worker per state folder works it out (feeds.notify)
    "purge set of one edit, CPU of all workers (ms)": 50.0,
    "export: full build peak memory (MB)": 500.0,  # issue 20
    "export: rebuild after one edit (s)": 60.0,
    "export: rebuild peak memory (MB)": 500.0,
    "upgrade, same layout: failed requests": 1.0,  # issue 20: none
    "upgrade, new layout: failed requests": 1.0,
}
EXPORT_AT_100000 = {"export: rebuild after one edit (s)": 10.0}


PURGE = r"""
import json, sys, time
from pathlib import Path
from feeds.notify import Notifier, Outbox
from feeds.site import open_site
config, state = Path(sys.argv[1]), Path(sys.argv[2])
site = open_site(config, state_dir=state, verify=False)
notifier = Notifier(site, Outbox(delays=()))
out = {}
rendering = [0.0]
document = site.document

def timed(*args, **kwargs):  # renders (or cache hits) of the documents whose key moved
    t = time.thread_time()
    try:
        return document(*args, **kwargs)
    finally:
        rendering[0] += time.thread_time() - t

site.document = timed

def swept(name):
    looked = []
    real = notifier._look
    def look(documents, seen, first):
        looked.append(len(documents))
        return real(documents, seen, first)
    notifier._look = look
    t, rendering[0] = time.thread_time(), 0.0
    sent = notifier.sweep()
    out[name] = (time.thread_time() - t) * 1000
    out[name + " rendering"] = rendering[0] * 1000
    out[name + " documents"] = sum(looked)
    out[name + " announced"] = len(sent)
    del notifier._look

swept("first look")
with site.read() as (reader, now):
    newest = reader.page_keys(now, None, 1)[0][0][1]
    oldest = min(reader.paths_under(""))
articles = config.parent / "articles"
kept = {rel: (articles / rel).read_bytes() for rel in (newest, oldest)}
try:
    for name, rel in (("edit of the newest", newest), ("edit of an old article", oldest)):
        with open(articles / rel, "ab") as f:
            f.write(b"\nEin Satz mehr.\n")
        site.apply([rel])
        swept(name)
    fresh = articles / "thema-000" / "zz-bench-new.md"
    fresh.write_text("---\ntitle: Neu\ntopics: [thema-000]\n---\nText.\n")
    site.apply([str(fresh.relative_to(articles))])
    swept("new article")
    fresh.unlink()
    site.apply([str(fresh.relative_to(articles))])
finally:
    for rel, data in kept.items():
        (articles / rel).write_bytes(data)
    site.apply(list(kept))
print(json.dumps(out))
"""


def purge_set(config: Path, work: Path) -> dict[str, float]:
    """CPU milliseconds of one worker's notifier thread working out what one change purges:
    the first look (every document, as every change cost before the journal), then the edit
    of the newest article, of an old one, and a new article. A copy of the config names a
    cache to purge (nothing listens there; sending is another thread's work)."""
    purging = config.parent / "config-purge.yaml"
    purging.write_text(config.read_text() + "cache:\n  purge: [http://127.0.0.1:9/]\n")
    argv = [sys.executable, "-c", PURGE, str(purging), str(config.parent / ".feeds")]
    run = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    if run.returncode:
        raise RuntimeError(f"purge-set timing failed:\n{run.stderr[-3000:]}")
    result: dict[str, float] = json.loads(run.stdout.splitlines()[-1])
    log("purge set: " + ", ".join(f"{key} {value:.1f}" for key, value in result.items()))
    return result


COLD = r"""
import json, sys, time
from pathlib import Path
from feeds.site import open_site
t = time.perf_counter()
site = open_site(sys.argv[1], state_dir=Path(sys.argv[2]))
print(json.dumps({"cold": time.perf_counter() - t, "articles": site.article_count()}))
"""


def drop_page_cache() -> bool:
    """Whether the kernel dropped its page cache (root only): the next read of every file
    comes from the disk, as after a reboot."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def cold_side_by_side(config: Path, work: Path, against: Path, rounds: int = 1) -> dict[str, float]:
    """Seconds to build the index from nothing (``open_site`` with an empty state folder), with
    the page cache dropped before each, for this tree and for ``against`` (another checkout with
    its own ``.venv``), alternating, so both meet the same machine."""
    found: dict[str, list[float]] = {"this": [], "against": []}
    for _ in range(rounds):
        for name, tree in (("against", against), ("this", REPO)):
            state = work / f"cold-{name}"
            subprocess.run(["rm", "-rf", str(state)], check=True)
            state.mkdir(parents=True)
            dropped = drop_page_cache()
            argv = [str(tree / ".venv" / "bin" / "python"), "-c", COLD, str(config), str(state)]
            run = subprocess.run(argv, capture_output=True, text=True, cwd=tree)
            if run.returncode:
                raise RuntimeError(f"cold start of {tree} failed:\n{run.stderr[-3000:]}")
            seconds = json.loads(run.stdout.splitlines()[-1])["cold"]
            found[name].append(seconds)
            log(f"cold start, {name} ({tree}): {seconds:.1f} s (page cache dropped: {dropped})")
            subprocess.run(["rm", "-rf", str(state)], check=True)
    return {name: min(values) for name, values in found.items()}


UPGRADE_WRK = "function delay() return 5 end\n" + COUNT_STATUSES  # 5 ms between requests


def _polling(port: int, work: Path, name: str) -> subprocess.Popen[str]:
    """wrk on the feed until interrupted (it prints its summary on SIGINT), counting statuses;
    each of its 16 keep-alive connections waits 5 ms between requests (about 3,000 requests a
    second in all, leaving the cores to the build as aggregators polling would)."""
    script = work / "lua" / "upgrade.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(UPGRADE_WRK)
    argv = ["wrk", "-t2", "-c16", "-d3600s", "--latency", "--timeout", "10s", "-s", str(script)]
    out = (work / "logs" / f"{name}.wrk").open("w")
    return subprocess.Popen([*argv, f"http://{harness.HOST}:{port}{FEED}"], stdout=out, stderr=out, text=True)


def _stopped(wrk: subprocess.Popen[str], work: Path, name: str) -> dict[str, float]:
    wrk.send_signal(signal.SIGINT)
    wrk.wait(60)
    out = (work / "logs" / f"{name}.wrk").read_text()
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    statuses = {int(s): int(n) for s, n in re.findall(r"^STATUS (\d+) (\d+)$", out, re.M)}
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "requests": requests,
        "failed": sum(n for s, n in statuses.items() if s >= 400)
        + (sum(int(n) for n in errors.groups()) if errors else 0),
        "p99 (ms)": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
    }


def _all_upgraded(server: harness.Server, before: set[int], bound: float = 3600) -> float:
    """Seconds until 20 answers in a row of /healthz come from new workers that serve their own
    index, checked (each fresh connection lands on any worker)."""
    started, in_a_row = time.perf_counter(), 0
    while in_a_row < 20:
        if time.perf_counter() - started > bound:
            raise RuntimeError("the new workers never served their own index")
        try:
            health = json.loads(server.fetch("/healthz", timeout=60).body)
        except (OSError, ValueError):
            health = {}
        done = health.get("pid") not in before and not {"upgrading", "checking"} & health.keys()
        in_a_row = in_a_row + 1 if done else 0
        time.sleep(0.005 if done else 0.2)
    return time.perf_counter() - started


def upgrade_costs(config: Path, work: Path, size: int) -> dict[str, float]:
    """Rolling restarts onto new code with wrk polling the feed throughout (granian ×2 as in
    production, its workers importing feeds from a copy, the release). The same layout: a
    comment added to parsing.py (another version, rows still readable), then SIGHUP: the new
    workers serve the earlier index while they build theirs. A new layout: a comment added to
    store/rows.py, ``feeds index`` with that code, then SIGHUP (docs/operations.md, "Upgrades").
    The archive's state folder keeps the last version's index (earlier ones are deleted)."""
    release = work / "upgrade-release"
    shutil.rmtree(release, ignore_errors=True)  # ours: the bench's work folder
    shutil.copytree(REPO / "feeds", release / "feeds", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(release)}
    command = lambda port: harness.production_command(port, extra=("--log-level", "warning"))  # noqa: E731
    server = serve(command, work, f"upgrade-{size}", config=config, env=env, cwd=release, timeout=3600.0)
    found: dict[str, float] = {}
    try:
        for case, module in (("same layout", "parsing.py"), ("new layout", "store/rows.py")):
            name = f"upgrade-{size}-{case.replace(' ', '-')}"
            before = set(server.workers())
            wrk = _polling(server.port, work, name)
            time.sleep(10)  # the polling rate before
            source = release / "feeds" / module
            source.write_text(source.read_text(encoding="utf-8") + "\n# the next version\n", encoding="utf-8")
            if case == "new layout":
                started = time.perf_counter()
                argv = [
                    sys.executable,
                    "-c",
                    "import feeds.cli as c; c.cli()",
                    "--config",
                    str(config),
                    "index",
                ]
                subprocess.run(argv, cwd=release, env={**os.environ, **env}, capture_output=True, check=False)
                found[f"upgrade, {case}: feeds index building it first (s)"] = time.perf_counter() - started
            os.kill(server.process.pid, signal.SIGHUP)
            found[f"upgrade, {case}: reload until every worker serves its own index (s)"] = _all_upgraded(
                server, before
            )
            time.sleep(10)  # the polling rate after
            polled = _stopped(wrk, work, name)
            log(f"upgrade at {size:,}, {case}: {polled}")
            found[f"upgrade, {case}: requests answered"] = polled["requests"]
            found[f"upgrade, {case}: failed requests"] = polled["failed"]
            found[f"upgrade, {case}: p99 latency meanwhile (ms)"] = polled["p99 (ms)"]
    finally:
        harness.stop(server)
    return found


PARTS = ("start", "change", "render", "purge", "cold", "export", "upgrade")


def measure(
    config: Path, work: Path, size: int, parts: tuple[str, ...] = PARTS[:4], against: Path | None = None
) -> dict[str, float]:
    found: dict[str, float] = {}
    if "cold" in parts and against is not None:
        cold = cold_side_by_side(config, work, against)
        found["cold index build, page cache dropped (s)"] = cold["this"]
        found[f"the same with {against.name} (s)"] = cold["against"]
    if "start" in parts:
        cold, _, peak_cold, _ = start_up(config, work)
        warm, checked, peak_warm, _ = start_up(config, work, cold=False)
        found["cold start (s)"] = cold
        found["warm start (s)"] = warm
        found["warm start to checked documents (s)"] = checked
        found["peak memory per worker (MB)"] = max(peak_cold, peak_warm)
    if "change" in parts:
        found["change served by every worker (ms)"] = max(change_latency(config, work, size, trials=3))
    if "render" in parts:
        render = render_times(config, work, repeats=1 if size >= 1_000_000 else 3)
        found["cold 50-entry render (ms)"] = max(
            render["kurz.rss"], render["alle.rss"], render["thema-000.rss"]
        )
        found["open_site checking every file (no watcher), warm (s)"] = render["load"] / 1000
    if "purge" in parts:
        purge = purge_set(config, work)
        found["purge set of one edit, CPU of all workers (ms)"] = purge["edit of the newest"]
        found["of which rendering what changed (ms)"] = purge["edit of the newest rendering"]
        found["purge set of an old article's edit, CPU of all workers (ms)"] = purge["edit of an old article"]
        found["purge set of a new article, CPU of all workers (ms)"] = purge["new article"]
        found["documents looked at for one edit"] = purge["edit of the newest documents"]
        found["every document looked at (the first look), CPU (ms)"] = purge["first look"]
    if "upgrade" in parts:
        found.update(upgrade_costs(config, work, size))
    return found


SEEDED = r"""
import sys
from datetime import datetime, timezone
from feeds import catalogue
from feeds.cli import cli
from feeds.documents import make_document
from feeds.site import Site

real = Site.document
placeholders = (catalogue.ARTICLE, catalogue.ARCHIVE)
when = datetime(2020, 1, 1, tzinfo=timezone.utc)

def document(self, kind, params, keep=True):
    if kind in placeholders:
        body = f"placeholder {kind.place.kind} {sorted(params.items())}".encode()
        return make_document(body, "text/html", when, 0)
    return real(self, kind, params, keep=keep)

Site.document = document
cli(sys.argv[1:])
"""


def _build(
    config: Path, out: Path, *extra: str, seeded: bool = False
) -> tuple[float, float, dict[str, int], float]:
    """``feeds build`` in a process of its own: (seconds, its peak RSS in MB, the counts it
    prints, the peak of the RSS of it and its processes together, sampled twice a second).
    ``seeded``: article and archive pages are written as placeholders, not rendered (a first
    export of a million articles takes hours to render; what a rebuild costs does not depend
    on the bytes of the pages it takes over)."""
    feeds = [sys.executable, "-c", SEEDED] if seeded else [str(BIN / "feeds")]
    command = [*feeds, "--config", str(config), "build", str(out), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            tree = [process.pid, *harness.descendants(process.pid)]
            peaks.append(sum(harness.memory(pid).rss_mb for pid in tree))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    together = max(peaks)
    assert process.stdout is not None and process.stderr is not None
    printed, errors = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {process.returncode}\n{errors}")
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (documents|rendered|written|unchanged)", printed)}
    return seconds, usage.ru_maxrss / 1024, counts, max(together, usage.ru_maxrss / 1024)


def export_costs(
    config: Path, work: Path, size: int, seeded: bool = False, jobs: int = 1
) -> dict[str, float]:
    """The static export: a full build into an empty folder (every document rendered and
    written); a second build with nothing changed, which links every file of the first into a
    new tree and keeps the first as its spare; then the newest article edited and the export
    rebuilt a third time, which brings the spare up to date from the index's journal (only what
    changed is rendered and written) and swaps it in. The article is put back afterwards.
    ``seeded``: the first build writes placeholders for article and archive pages (see
    :func:`_build`); its time is then not a full build's. ``jobs``: ``feeds build --jobs``
    (the peak memory is then of every process of the build together)."""
    out = work / f"export-{size}"
    for leftover in (out, out.parent / f".{out.name}.feeds-spare"):
        shutil.rmtree(leftover, ignore_errors=True)  # ours: the bench's work folder
    extra = ("--jobs", str(jobs))
    full, full_peak, counts, full_together = _build(config, out, *extra, seeded=seeded)
    kind = "seeded first" if seeded else f"full (--jobs {jobs})"
    together = f" ({full_together:.0f} MB together)" if jobs > 1 else ""
    log(f"export: {kind} build {full:.1f} s, peak {full_peak:.0f} MB{together}, {counts}")
    linked, linked_peak, relinked, _ = _build(config, out, *extra)
    log(f"export: second build, nothing changed {linked:.1f} s, peak {linked_peak:.0f} MB, {relinked}")
    article = next((config.parent / "articles").glob(f"*/*/a{size - 1:06d}.*"))
    original = article.read_bytes()
    try:
        article.write_bytes(original + b"\nEin Satz mehr.\n")
        again, again_peak, after, _ = _build(config, out, *extra)
    finally:
        article.write_bytes(original)
    log(f"export: rebuild after one edit {again:.1f} s, peak {again_peak:.0f} MB, {after}")
    for leftover in (out, out.parent / f".{out.name}.feeds-spare"):
        shutil.rmtree(leftover, ignore_errors=True)
    first = "seeded first build (article and archive pages placeholders)" if seeded else "full build"
    if jobs > 1:
        first += f" on {jobs} processes"
    return {
        f"export: {first} (s)": full,
        f"export: {first} peak memory (MB)": full_together if jobs > 1 else full_peak,
        "export: second build, every file linked (s)": linked,
        "export: rebuild after one edit (s)": again,
        "export: rebuild peak memory (MB)": again_peak,
        "export: documents rewritten by the rebuild": after.get("written", -1),
        "export: documents rendered by the rebuild": after.get("rendered", -1),
    }


def exponent(a: float, b: float, n_a: int, n_b: int) -> str:
    if a <= 0 or b <= 0:
        return "—"
    return f"{math.log(b / a) / math.log(n_b / n_a):.2f}"


def table(sizes: list[int], results: dict[int, dict[str, float]]) -> list[str]:
    head = ["measure", *(f"{n:,}" for n in sizes)]
    head += [f"growth {a:,}→{b:,}" for a, b in zip(sizes, sizes[1:], strict=False)] + ["target at 1,000,000"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in results[sizes[0]]:
        values = [results[n][name] for n in sizes]
        cells = [name, *(f"{v:,.1f}" for v in values)]
        cells += [exponent(values[i], values[i + 1], sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)]
        target = TARGETS.get(name)
        if name in EXPORT_AT_100000 and 100_000 in results:
            met = results[100_000][name] < EXPORT_AT_100000[name]
            cells[0] += f" (< {EXPORT_AT_100000[name]:g} at 100,000: {'met' if met else 'NOT met'})"
        if target is None or 1_000_000 not in results:
            cells.append("—" if target is None else f"< {target:g}")
        else:
            met = results[1_000_000][name] < target
            cells.append(f"< {target:g}: {'met' if met else 'NOT met'}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(sizes: list[int], results: dict[int, dict[str, float]], path: Path) -> None:
    """One log-log panel per measure; a dashed line marks the target at 1,000,000 when there is one."""
    names = [n for n in results[sizes[0]] if n in TARGETS]
    width, height, pad = 260, 200, 46
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(names)}" height="{height + 40}" '
        'font-family="sans-serif" font-size="11">'
    ]
    xs = [math.log10(n) for n in sizes]
    for i, name in enumerate(names):
        left = i * width
        values = [min(results[n][name], 1e9) for n in sizes]  # a change never seen plots at the top
        target = TARGETS[name]
        low = math.floor(math.log10(max(min(values + [target]), 1e-3)))
        high = math.ceil(math.log10(max(values + [target])))
        high = high if high > low else low + 1

        def x(v: float, left: int = left) -> float:
            return left + pad + (v - xs[0]) / ((xs[-1] - xs[0]) or 1) * (width - pad - 14)

        def y(v: float, low: int = low, high: int = high) -> float:
            return 20 + (high - math.log10(max(v, 1e-3))) / (high - low) * (height - 40)

        out.append(f'<text x="{left + width / 2}" y="14" text-anchor="middle">{name}</text>')
        out.append(
            f'<rect x="{left + pad}" y="20" width="{width - pad - 14}" height="{height - 40}" '
            'fill="none" stroke="#999"/>'
        )
        for decade in range(low, high + 1):
            label = f"{10**decade:g}"
            out.append(f'<text x="{left + pad - 4}" y="{y(10**decade) + 4}" text-anchor="end">{label}</text>')
        for n in sizes:
            out.append(
                f'<text x="{x(math.log10(n))}" y="{height - 6}" text-anchor="middle">{n // 1000:,}k</text>'
            )
        out.append(
            f'<line x1="{left + pad}" x2="{left + width - 14}" y1="{y(target)}" y2="{y(target)}" '
            'stroke="#c00" stroke-dasharray="4 3"/>'
        )
        points = " ".join(f"{x(math.log10(n))},{y(v)}" for n, v in zip(sizes, values, strict=True))
        out.append(f'<polyline points="{points}" fill="none" stroke="#0b5394" stroke-width="2"/>')
        for n, v in zip(sizes, values, strict=True):
            out.append(f'<circle cx="{x(math.log10(n))}" cy="{y(v)}" r="3" fill="#0b5394"/>')
    out.append(
        f'<text x="8" y="{height + 30}">articles (log) → ; values (log); '
        "dashed red: target at 1,000,000</text>"
    )
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--work", type=Path, default=Path("/tmp/feeds-bench"))
    parser.add_argument("--out", type=Path, default=BENCH / "SCALE.md")
    parser.add_argument("--parts", default=",".join(PARTS[:4]), help="what to measure: " + ", ".join(PARTS))
    parser.add_argument("--against", type=Path, help="cold: another checkout (with .venv) to compare")
    parser.add_argument(
        "--export", action="store_true", help="measure the static export only (--parts export)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="export: feeds build --jobs")
    parser.add_argument(
        "--seeded-from",
        type=int,
        default=1_000_000,
        help="export: from this size on, the first build writes placeholder article and archive pages",
    )
    args = parser.parse_args()
    parts = ("export",) if args.export else tuple(args.parts.split(","))
    args.export = parts == ("export",)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    started, load = time.perf_counter(), loadavg()
    results = {}
    for size in sizes:
        log(f"scale: {size:,} articles")
        config = archive(args.work, size)
        results[size] = measure(config, args.work, size, parts, args.against)
        if "export" in parts:
            results[size].update(
                export_costs(config, args.work, size, seeded=size >= args.seeded_from, jobs=args.jobs)
            )
    command = " ".join(["bench/scale.py", *sys.argv[1:]])
    svg = args.out.with_name(f"{args.out.stem.lower()}.svg") if args.export else BENCH / "scale.svg"
    what = (
        "Export: `feeds build` into an empty folder (peak RSS of the process), then the newest "
        "article edited and `feeds build` over that export (what it rendered and rewrote; the rest "
        "is linked from the earlier export); the article is put back after."
        if args.export
        else "Start-up and memory: gunicorn with 1 sync worker (peak RSS, VmHWM, after every feed was "
        "served once); change: gunicorn with 2 workers, the newest article edited, until every worker "
        "serves it (max of 3 trials); render: the worst first render of kurz.rss, alle.rss and "
        "thema-000.rss in a fresh process with a warm index and cold article bodies."
    )
    lines = [
        "# How the origin's costs grow with the archive\n",
        f"`.venv/bin/python {command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n",
        f"Machine: {machine()}.\n",
        f"{what} Growth is the exponent between two sizes: 1.0 grows linearly with the archive, 0 "
        "stays flat.\n",
        *table(sizes, results),
        "",
        f"![log-log plot]({svg.name})",
        "",
        f"Load average {load} at the start, {loadavg()} at the end. "
        f"Total: {(time.perf_counter() - started) / 60:.1f} min.",
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot(sizes, results, svg)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
