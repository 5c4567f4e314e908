#!/usr/bin/env python3
"""How the origin's costs grow with the archive: 10,000 → 100,000 → 1,000,000 articles.

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000] [--out bench/SCALE.md]

For each size (archives from bench/generate.py, kept in --work) it measures what bench/run.py
measures at its largest size: cold and warm start to ``/healthz``, peak resident memory of a
worker after serving every feed once, a change served by every worker, and a 50-entry feed
rendered from a cold cache. It writes a Markdown table with the growth exponent between sizes
(1.0: linear, 0: flat) and a log-log plot, ``bench/scale.svg``. Not part of the test suite: a
million articles take about 2.5 GB of disk and half an hour.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from run import BENCH, archive, change_latency, loadavg, log, machine, render_times, start_up

TARGETS = {  # issues 10 and 16, at 1,000,000 articles
    "cold start (s)": 180.0,
    "warm start (s)": 5.0,
    "warm start to checked documents (s)": 15.0,
    "peak memory per worker (MB)": 500.0,
    "change served by every worker (ms)": 100.0,
    "cold 50-entry render (ms)": 20.0,
}


def measure(config: Path, work: Path, size: int) -> dict[str, float]:
    cold, _, peak_cold, _ = start_up(config, work)
    warm, checked, peak_warm, _ = start_up(config, work, cold=False)
    changes = change_latency(config, work, size, trials=3)
    render = render_times(config, work, repeats=1 if size >= 1_000_000 else 3)
    return {
        "cold start (s)": cold,
        "warm start (s)": warm,
        "warm start to checked documents (s)": checked,
        "peak memory per worker (MB)": max(peak_cold, peak_warm),
        "change served by every worker (ms)": max(changes),
        "cold 50-entry render (ms)": max(render["kurz.rss"], render["alle.rss"], render["thema-000.rss"]),
        "open_site checking every file (no watcher), warm (s)": render["load"] / 1000,
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
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    started, load = time.perf_counter(), loadavg()
    results = {}
    for size in sizes:
        log(f"scale: {size:,} articles")
        results[size] = measure(archive(args.work, size), args.work, size)
    command = " ".join(["bench/scale.py", *sys.argv[1:]])
    lines = [
        "# How the origin's costs grow with the archive\n",
        f"`.venv/bin/python {command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n",
        f"Machine: {machine()}.\n",
        "Start-up and memory: gunicorn with 1 sync worker (peak RSS, VmHWM, after every feed was served "
        "once); change: gunicorn with 2 workers, the newest article edited, until every worker serves "
        "it (max of 3 trials); render: the worst first render of kurz.rss, alle.rss and thema-000.rss "
        "in a fresh process with a warm index and cold article bodies. Growth is the exponent "
        "between two sizes: 1.0 grows linearly with the archive, 0 stays flat.\n",
        *table(sizes, results),
        "",
        "![log-log plot](scale.svg)",
        "",
        f"Load average {load} at the start, {loadavg()} at the end. "
        f"Total: {(time.perf_counter() - started) / 60:.1f} min.",
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot(sizes, results, BENCH / "scale.svg")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
