"""``feeds stats``: the table, the JSON and the page whose chart a real Chromium draws."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner

from feeds import create_app
from feeds.cli import cli
from feeds.stats import COLOURS, LINES, chart, render_html, render_text, summarize
from feeds.store import AudienceStore

from conftest import MakeSite
from support import browser
from support.browser import CHROMIUM

TODAY = date(2026, 1, 31)
FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 140 subscribers; )"
INOREADER = "Inoreader/1.0 (+http://www.inoreader.com/feed-fetcher; 7 subscribers; )"
HOSTILE = '<script>alert(1)</script> & "Titel"'


def days_ago(n: int) -> date:
    return TODAY - timedelta(days=n)


def history(days: int = 31, skip: tuple[int, ...] = ()) -> dict[tuple[date, str, str], int]:
    counts = {}
    for n in range(days):
        if n in skip:
            continue
        counts[days_ago(n), "alle", "feedly"] = 100 - n  # grows by one a day
        counts[days_ago(n), "alle", "direct"] = 5
        counts[days_ago(n), "klima", "inoreader"] = 7
    return counts


def test_today_the_changes_and_the_sources_of_every_feed() -> None:
    counts = history()
    counts[days_ago(3), "politik", "direct"] = 2  # read three days ago, not today
    summary = summarize(counts, {("alle", "feedbin"): 56, ("alle", "feedly"): 90}, TODAY)
    alle, klima, politik = summary.feeds
    assert (alle.feed, alle.today, alle.changes) == ("alle", 161, (63, 86))  # today's feedly: the larger
    assert alle.sources == (("feedly", 100), ("feedbin", 56), ("direct", 5))
    assert (klima.today, klima.changes, klima.sources) == (7, (0, 0), (("inoreader", 7),))
    assert (politik.today, politik.changes, politik.sources) == (0, (0, 0), ())
    assert dict(politik.days)[days_ago(3)] == 2 and dict(politik.days)[days_ago(4)] == 0


def test_a_day_nothing_was_counted_has_no_change_and_leaves_a_gap() -> None:
    summary = summarize(history(days=10, skip=(7,)), {}, TODAY)
    assert summary.feeds[0].changes == (None, None)  # 7 days ago: not counted; 30: no data yet
    lines = chart(summary).lines
    assert [len(line.segments) for line in lines] == [2, 2]  # days 9-8, then 6-0
    lone = chart(summarize(history(days=3, skip=(1,)), {}, TODAY)).lines[0]
    assert len(lone.segments) == 0 and len(lone.dots) == 2


def test_the_text_table(tmp_path: Path) -> None:
    text = render_text(summarize(history(), {}, TODAY))
    assert text.splitlines() == [
        "Subscribers on 2026-01-31 (UTC)",
        "feed   today  7 days  30 days  by source",
        "alle     105      +7      +30  feedly 100, direct 5",
        "klima      7       0        0  inoreader 7",
    ]
    assert "No subscribers counted" in render_text(summarize({}, {}, TODAY))


def test_the_page_is_one_self_contained_file() -> None:
    counts = history()
    for i in range(LINES + 2):  # more feeds than lines in the chart
        counts[TODAY, f"feed{i}", "direct"] = 1
    page = render_html(summarize(counts, {}, TODAY), HOSTILE)
    doc = lxml.html.fromstring(page)
    assert doc.findtext(".//title") == f"Subscribers – {HOSTILE}"
    assert not doc.xpath("//script") and not doc.xpath("//@src") and not doc.xpath("//link")
    assert b"http://" not in page.replace(b"http://www.w3.org/2000/svg", b"")  # nothing fetched
    feeds = doc.xpath("//svg//g[@class='feed']/@data-feed")
    assert len(feeds) == LINES and feeds[:2] == ["alle", "klima"]
    assert len(doc.xpath("//svg//g[@data-feed='alle']/polyline")) == 1
    assert len(doc.xpath("//table/tbody/tr")) == LINES + 4
    assert "the table lists 4 more" in doc.text_content()
    labels = [t.text for t in doc.xpath("//svg/text")]
    assert labels[:4] == ["0", "50", "100", "150"]  # round steps up to the peak (105)
    assert labels[4] == days_ago(30).isoformat() and labels[-1] == TODAY.isoformat()


# -- a real browser ----------------------------------------------------------------------------------


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows) of an 8-bit, non-interlaced RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and interlace == 0 and colour in (2, 6), (depth, colour, interlace)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):  # RFC 2083 6.2-6.6: None, Sub, Up, Average, Paeth
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                corner = previous[i - bpp] if i >= bpp else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, bpp, rows


def columns_in(png: tuple[int, int, int, list[bytes]], colour: str) -> set[int]:
    """The x of every pixel column holding ``colour`` (#rrggbb, within anti-aliasing)."""
    width, _, bpp, rows = png
    want = bytes.fromhex(colour[1:])
    found = set()
    for row in rows:
        for x in range(width):
            r, g, b = row[x * bpp : x * bpp + 3]
            if abs(r - want[0]) + abs(g - want[1]) + abs(b - want[2]) < 40:
                found.add(x)
    return found


def screenshot(page: Path, profile: Path, out: Path, size: tuple[int, int] = (960, 640)) -> bytes:
    run = subprocess.run(
        browser.command(
            profile,
            "--hide-scrollbars",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={out}",
            page.as_uri(),
        ),  # fmt: skip
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0 and out.is_file(), run.stderr.decode(errors="replace")[-2000:]
    return out.read_bytes()


def seed(state: Path, counts: Mapping[tuple[date, str, str], int]) -> None:
    store = AudienceStore(state / "audience.sqlite")
    store.merge(counts)
    store.close()


def test_a_real_browser_draws_the_chart(make_site: MakeSite, tmp_path: Path) -> None:
    """The page as ``feeds stats --html`` writes it, after a month of counts and today's requests,
    in headless Chromium: every feed's line is drawn across the chart, in its own colour."""
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip("chromium is not installed")
    config = make_site()
    today = datetime.now(UTC).date()
    seed(config.parent / ".feeds", {
        (today - timedelta(days=n), feed, "feedly"): base + 3 * (30 - n)
        for n in range(1, 31) for feed, base in (("alle", 40), ("klima", 10))
    })  # fmt: skip
    app = create_app(config, watch=False)
    client = app.test_client()
    client.get(
        "/feeds/alle.rss",
        headers={"User-Agent": "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 140 subscribers; )"},
    )
    client.get(
        "/feeds/klima.atom",
        headers={"User-Agent": "Inoreader/1.0 (+http://www.inoreader.com/feed-fetcher; 7 subscribers; )"},
    )
    app.extensions["feeds"].audience.close()
    page = tmp_path / "www" / "stats.html"
    page.parent.mkdir()
    result = CliRunner().invoke(cli, ["--config", str(config), "stats", "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert f"wrote {page}" in result.output and "alle" in result.output
    doc = lxml.html.fromstring(page.read_bytes())
    drawn = {g.get("data-feed"): g.get("stroke") for g in doc.xpath("//svg//g[@class='feed']")}
    assert drawn == {"alle": COLOURS[0], "klima": COLOURS[1]}
    png = decode_png(screenshot(page, tmp_path / "profile", tmp_path / "shot.png"))
    width = png[0]
    for feed, colour in drawn.items():
        columns = columns_in(png, colour)
        # The legend's swatch is 22 pixels wide; the line crosses most of the chart's 800.
        assert len(columns) > width // 2, (
            f"{feed}: its line is not drawn ({len(columns)} columns in {colour})"
        )


def test_stats_json_and_text_from_the_command(make_site: MakeSite) -> None:
    config = make_site()
    today = datetime.now(UTC).date()
    seed(
        config.parent / ".feeds",
        {(today - timedelta(days=7), "alle", "direct"): 3, (today, "alle", "direct"): 5},
    )
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config), "stats", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["day"] == today.isoformat()
    assert report["feeds"] == [
        {
            "feed": "alle",
            "today": 5,
            "change_7d": 2,
            "change_30d": None,
            "sources": {"direct": 5},
            "history": {(today - timedelta(days=7)).isoformat(): 3, today.isoformat(): 5},
        }
    ]
    text = runner.invoke(cli, ["--config", str(config), "stats"]).output
    assert "alle" in text and "+2" in text


def test_the_page_replaces_a_link_never_what_it_points_to(make_site: MakeSite, tmp_path: Path) -> None:
    config = make_site()
    elsewhere = tmp_path / "elsewhere.html"
    elsewhere.write_text("not yours")
    page = tmp_path / "stats.html"
    page.symlink_to(elsewhere)
    result = CliRunner().invoke(cli, ["--config", str(config), "stats", "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert elsewhere.read_text() == "not yours"
    assert not page.is_symlink() and b"<h1>Subscribers</h1>" in page.read_bytes()
    unwritable = tmp_path / "missing" / "stats.html"
    result = CliRunner().invoke(cli, ["--config", str(config), "stats", "--html", str(unwritable)])
    assert result.exit_code == 1 and f"could not write {unwritable}" in result.output
