"""What ``feeds stats`` shows: subscribers per feed today, their change, and the chart (pure).

:func:`summarize` turns the stored counts (per day, feed and source) into a :class:`Summary`;
:func:`render_text`, :func:`render_json` and :func:`render_html` print it. The page is one
self-contained file: inline CSS and an inline SVG chart (a line per feed over the days counted),
no script, no request for anything else, so it can be mailed or served as it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from jinja2 import Environment, PackageLoader, select_autoescape

CHANGES = (7, 30)  # days back that the change of each feed is given for
LINES = 8  # feeds drawn in the chart (the most read today); the table lists all
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f3c8d", "#3b3b3b")
WIDTH, HEIGHT = 860, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 48, 16, 44  # margins of the plot inside the chart


@dataclass(frozen=True)
class FeedStats:
    """One feed: subscribers today, their change over :data:`CHANGES` days (None: that day was
    not counted), today's by source (largest first) and the total of every day counted."""

    feed: str
    today: int
    changes: tuple[int | None, ...]
    sources: tuple[tuple[str, int], ...]
    days: tuple[tuple[date, int], ...]


@dataclass(frozen=True)
class Summary:
    today: date
    feeds: tuple[FeedStats, ...]  # most read today first
    counted: tuple[date, ...]  # days with any count, oldest first


def summarize(
    counts: Mapping[tuple[date, str, str], int], current: Mapping[tuple[str, str], int], today: date
) -> Summary:
    """The summary of stored ``counts`` and today's ``current`` ones (the larger of the two wins).

    On a day that was counted, a feed with no count had no subscribers; a day with no count at all
    (no server ran, no log was read) is not counted, and the chart leaves a gap there.
    """
    merged = {key: n for key, n in counts.items() if key[0] <= today}
    for (feed, source), n in current.items():
        merged[today, feed, source] = max(merged.get((today, feed, source), 0), n)
    counted = tuple(sorted({day for day, _, _ in merged}))
    totals: dict[str, dict[date, int]] = {}
    sources: dict[str, dict[str, int]] = {}
    for (day, feed, source), n in merged.items():
        per_day = totals.setdefault(feed, {})
        per_day[day] = per_day.get(day, 0) + n
        if day == today and n:
            sources.setdefault(feed, {})[source] = n
    feeds = []
    for feed, per_day in totals.items():
        now = per_day.get(today, 0)
        changes = tuple(
            now - per_day.get(today - timedelta(days=back), 0)
            if today - timedelta(days=back) in counted
            else None
            for back in CHANGES
        )
        by_source = tuple(sorted(sources.get(feed, {}).items(), key=lambda item: (-item[1], item[0])))
        feeds.append(FeedStats(feed, now, changes, by_source, tuple((d, per_day.get(d, 0)) for d in counted)))
    feeds.sort(key=lambda f: (-f.today, -max((n for _, n in f.days), default=0), f.feed))
    return Summary(today, tuple(feeds), counted)


def _change(value: int | None) -> str:
    return "–" if value is None else f"{value:+d}" if value else "0"


def render_text(summary: Summary) -> str:
    """A table: feed, today, the changes, and today's subscribers by source."""
    if not summary.feeds:
        return (
            f"No subscribers counted up to {summary.today} (UTC). The server counts the requests for\n"
            "feeds it answers; behind a cache, give the cache's access log: feeds stats --log FILE\n"
        )
    head = ("feed", "today", *(f"{days} days" for days in CHANGES), "by source")
    rows = [
        (
            f.feed,
            str(f.today),
            *(_change(c) for c in f.changes),
            ", ".join(f"{source} {n}" for source, n in f.sources) or "–",
        )
        for f in summary.feeds
    ]
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head) - 1)]

    def line(row: Sequence[str]) -> str:
        cells = [
            row[0].ljust(widths[0]),
            *(cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:], strict=True)),
        ]
        return "  ".join([*cells, row[-1]]).rstrip()

    return f"Subscribers on {summary.today} (UTC)\n" + "\n".join(line(row) for row in (head, *rows)) + "\n"


def as_json(summary: Summary) -> dict[str, object]:
    return {
        "day": summary.today.isoformat(),
        "feeds": [
            {
                "feed": f.feed,
                "today": f.today,
                **{f"change_{days}d": c for days, c in zip(CHANGES, f.changes, strict=True)},
                "sources": dict(f.sources),
                "history": {d.isoformat(): n for d, n in f.days},
            }
            for f in summary.feeds
        ],
    }


def render_json(summary: Summary, **extra: object) -> str:
    return json.dumps({**as_json(summary), **extra}, ensure_ascii=False, indent=2) + "\n"


# -- the page and its chart ------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    feed: str
    colour: str
    today: int
    segments: tuple[str, ...]  # SVG polyline points, one string per run of consecutive days
    dots: tuple[tuple[float, float], ...]  # days counted alone (no neighbour to join)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    y_ticks: tuple[tuple[float, str], ...]  # (y, label)
    x_ticks: tuple[tuple[float, str], ...]  # (x, label)
    lines: tuple[Line, ...]
    left_out: int  # feeds in the table but not drawn


def _step(top: int) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving about four gridlines up to ``top``."""
    raw = max(top, 1) / 4
    power = 10 ** max(math.floor(math.log10(raw)), 0) if raw >= 1 else 1
    return next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)


def chart(summary: Summary) -> Chart:
    """Where everything of the chart goes, in SVG user units."""
    drawn = summary.feeds[:LINES]
    peak = max((n for f in drawn for _, n in f.days), default=0)
    step = _step(peak)
    y_max = max(math.ceil(peak / step), 1) * step
    first = summary.counted[0] if summary.counted else summary.today
    span = max((summary.today - first).days, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: date) -> float:
        return round(LEFT + (day - first).days / span * plot_w, 1)

    def y(value: int) -> float:
        return round(TOP + plot_h - value / y_max * plot_h, 1)

    lines = []
    for feed, colour in zip(drawn, COLOURS, strict=False):
        runs: list[list[tuple[float, float]]] = []
        previous: date | None = None
        for day, n in feed.days:
            if previous is None or (day - previous).days != 1:
                runs.append([])
            runs[-1].append((x(day), y(n)))
            previous = day
        segments = tuple(" ".join(f"{px},{py}" for px, py in run) for run in runs if len(run) > 1)
        dots = tuple(run[0] for run in runs if len(run) == 1)
        lines.append(Line(feed.feed, colour, feed.today, segments, dots))
    labels = min(span, 6)
    x_ticks = tuple(
        (
            x(first + timedelta(days=round(i * span / labels))),
            (first + timedelta(days=round(i * span / labels))).isoformat(),
        )
        for i in range(labels + 1)
    )
    y_ticks = tuple((y(v), f"{v:,}") for v in range(0, y_max + 1, step))
    return Chart(
        WIDTH,
        HEIGHT,
        LEFT,
        RIGHT,
        TOP,
        BOTTOM,
        y_ticks,
        x_ticks,
        tuple(lines),
        len(summary.feeds) - len(drawn),
    )


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("feeds", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["change"] = _change
    return env


def render_html(summary: Summary, title: str, language: str = "en") -> bytes:
    """The stats page: the chart, then the table of every feed."""
    page = (
        _env()
        .get_template("stats.html")
        .render(summary=summary, chart=chart(summary), title=title, language=language, changes=CHANGES)
    )
    return page.encode("utf-8")
