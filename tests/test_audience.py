"""What a request says about its reader: User-Agents that report subscribers, log lines, the rules.

The User-Agents are the hosted readers' own, as publishers record them in their logs (Buttondown's
list of RSS readers, tonsky's clj-simple-stats tests, the readers' fetcher pages).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest

from feeds.audience import (
    AGENT_CHARS,
    DIRECT,
    LOG_LINE_BYTES,
    MAX_SUBSCRIBERS,
    OTHER,
    SOURCES,
    Report,
    feed_key,
    fetcher_totals,
    parse_agent,
    parse_log_line,
    request_path,
    visitor,
)

# (User-Agent as recorded, the report it makes)
RECORDED = [
    (
        "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 457 subscribers; like FeedFetcher-Google)",
        Report("feedly", "", 457),
    ),
    ("Feedly/1.0 (+http://www.feedly.com/fetcher.html; 131 subscribers; )", Report("feedly", "", 131)),
    ("Feedbin feed-id:1373711 - 142 subscribers", Report("feedbin", "1373711", 142)),
    (
        "NewsBlur Feed Fetcher - 54 subscribers - https://www.newsblur.com/site/6865328/grumpy-website "
        '("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) '
        'Version/14.0.1 Safari/605.1.15")',
        Report("newsblur", "6865328", 54),
    ),
    (
        "NewsBlur Feed Fetcher - 1 subscriber - https://www.newsblur.com/site/1234/beispiel",
        Report("newsblur", "1234", 1),
    ),
    ("Inoreader/1.0 (+http://www.inoreader.com/feed-fetcher; 7 subscribers; )", Report("inoreader", "", 7)),
    ("Mozilla/5.0 (compatible; inoreader.com; 114 subscribers)", Report("inoreader", "", 114)),
    (
        "Mozilla/5.0 (compatible; theoldreader.com; 1 subscribers; feed-id=cead6c3a837650eeefd8fe4a)",
        Report("theoldreader", "cead6c3a837650eeefd8fe4a", 1),
    ),
    (
        "Mozilla/5.0 (compatible; BazQux/2.4; +https://bazqux.com/fetcher; 6 subscribers)",
        Report("bazqux", "", 6),
    ),
    (
        "Dreamwidth Studios (webmaster@dreamwidth.org; for https://www.dreamwidth.org/users/x_feed/; "
        "2 readers)",
        Report("dreamwidth", "", 2),
    ),
    (
        "Feedfetcher-Google; (+http://www.google.com/feedfetcher.html; 3 subscribers; "
        "feed-id=7675226481817637975)",
        Report("google", "7675226481817637975", 3),
    ),
    ("Netvibes (http://www.netvibes.com/; 5 subscribers; feedId: 5404723)", Report("netvibes", "5404723", 5)),
    ("Bloglines/3.1 (http://www.bloglines.com; 1 subscriber)", Report(OTHER, "bloglines:", 1)),
]
# Readers that report nothing: each one is one reader per address and User-Agent.
DIRECT_AGENTS = [
    "Tiny Tiny RSS/23.05-a4543de (Unsupported) (https://tt-rss.org/)",
    "Mozilla/5.0 (compatible; Miniflux/2.1.3; +https://miniflux.app)",
    "NetNewsWire (RSS Reader; https://netnewswire.com/)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "",
]


@pytest.mark.parametrize(("agent", "report"), RECORDED, ids=[r.source for _, r in RECORDED])
def test_hosted_readers_report_their_subscribers(agent: str, report: Report) -> None:
    assert parse_agent(agent) == report
    assert report.source in SOURCES


@pytest.mark.parametrize("agent", DIRECT_AGENTS)
def test_other_clients_report_nothing(agent: str) -> None:
    assert parse_agent(agent) is None


def test_two_unknown_fetchers_do_not_take_each_others_place() -> None:
    one = parse_agent("Bloglines/3.1 (http://www.bloglines.com; 4 subscribers)")
    two = parse_agent("Mozilla/5.0 (compatible; FeedFetcher9; +https://x.example; 4 subscribers)")
    assert one is not None and two is not None and one.source == two.source == OTHER
    assert one.feed_id != two.feed_id


def test_thousands_separators_are_read() -> None:
    assert parse_agent("Feedly/1.0 (+http://www.feedly.com/fetcher.html; 12,345 subscribers; )") == Report(
        "feedly", "", 12345
    )


@pytest.mark.parametrize(
    "agent",
    [
        "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 1000000000000 subscribers; )",  # 10^12
        f"Feedly/1.0 (+http://www.feedly.com/fetcher.html; {MAX_SUBSCRIBERS + 1} subscribers; )",
        "Feedbin feed-id:1 - 99999999999999999999999999999999 subscribers",
        "Feedbin feed-id:1 - 999,999,999,999 subscribers",
    ],
)
def test_absurd_claims_are_not_believed(agent: str) -> None:
    """A request claiming more than anyone has is one reader, like any other."""
    assert parse_agent(agent) is None


def test_only_the_start_of_a_user_agent_is_read() -> None:
    assert parse_agent("x" * AGENT_CHARS + " 5 subscribers") is None
    padded = "Feedbin feed-id:1 - 5 subscribers " + "x" * 100_000
    assert parse_agent(padded) == Report("feedbin", "1", 5)


@pytest.mark.parametrize(
    "agent",
    [
        "1" * 100_000 + " subscribers",
        "1," * 50_000,
        "feed-id:" * 20_000,
        " " * 100_000 + "9 readers",
        "9" * 100_000,
    ],
)
def test_hostile_user_agents_cost_little(agent: str) -> None:
    started = time.perf_counter()
    parse_agent(agent)
    assert time.perf_counter() - started < 0.05


def test_the_url_format_stands_in_for_a_missing_feed_id() -> None:
    assert feed_key(Report("feedly", "", 3), "rss") == "rss"
    assert feed_key(Report("feedbin", "12", 3), "rss") == "12"


def test_visitors_are_one_per_address_and_agent_and_change_with_the_key() -> None:
    key, other = b"k" * 32, b"o" * 32
    one = visitor(key, "192.0.2.1", "Reader/1.0")
    assert one == visitor(key, "192.0.2.1", "Reader/1.0")
    assert len({one, visitor(key, "192.0.2.2", "Reader/1.0"), visitor(key, "192.0.2.1", "Reader/2.0")}) == 3
    assert visitor(other, "192.0.2.1", "Reader/1.0") != one
    assert b"192.0.2.1" not in one


DAY = date(2026, 1, 10)
YESTERDAY = date(2026, 1, 9)


def test_a_report_counts_that_day_and_the_next_the_latest_winning() -> None:
    rows = [
        (YESTERDAY, "alle", "feedly", "rss", 100),
        (DAY, "alle", "feedly", "rss", 120),  # the latest of the feed id wins
        (YESTERDAY, "alle", "feedly", "atom", 30),  # not seen today: yesterday's still counts
        (date(2026, 1, 8), "alle", "feedly", "json", 999),  # too old
        (DAY, "alle", "feedbin", "1", 5),
        (DAY, "alle", "feedbin", "2", 6),  # feed ids of a fetcher add up
        (DAY, "klima", "feedly", "rss", 1),
    ]
    assert fetcher_totals(rows, DAY) == {
        ("alle", "feedly"): 150,
        ("alle", "feedbin"): 11,
        ("klima", "feedly"): 1,
    }
    assert fetcher_totals(rows, date(2026, 1, 12)) == {}


def test_a_source_never_adds_more_than_the_bound_to_a_feed() -> None:
    rows = [(DAY, "alle", "feedly", str(i), MAX_SUBSCRIBERS) for i in range(5)]
    assert fetcher_totals(rows, DAY) == {("alle", "feedly"): MAX_SUBSCRIBERS}
    assert DIRECT not in {s for (_, s) in fetcher_totals(rows, DAY)}


NGINX = (
    '203.0.113.7 - - [10/Jan/2026:23:59:58 +0100] "GET /feeds/alle.rss?utm=x HTTP/1.1" 304 0 "-" '
    '"NewsBlur Feed Fetcher - 12 subscribers - https://www.newsblur.com/site/1234/x (\\x22Mozilla/5.0\\x22)"'
)
VARNISHNCSA = (
    '127.0.0.1 - - [10/Jan/2026:10:00:00 +0000] "GET http://localhost:6081/feeds/klima.atom HTTP/1.1" '
    '200 1234 "-" "Tiny Tiny RSS/23.05 (https://tt-rss.org/)"'
)


def test_combined_log_lines_of_nginx_and_varnishncsa() -> None:
    line = parse_log_line(NGINX)
    assert line is not None
    assert (line.address, line.method, line.path, line.status) == (
        "203.0.113.7",
        "GET",
        "/feeds/alle.rss",
        304,
    )
    assert line.at == datetime(2026, 1, 10, 22, 59, 58, tzinfo=UTC)  # the day is the UTC day
    assert parse_agent(line.agent) == Report("newsblur", "1234", 12)
    other = parse_log_line(VARNISHNCSA + ' "extra" 0.002')  # fields appended to the format are fine
    assert other is not None and other.path == "/feeds/klima.atom" and other.status == 200
    assert other.agent == "Tiny Tiny RSS/23.05 (https://tt-rss.org/)"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        NGINX.replace("Jan", "Foo"),
        NGINX.replace("23:59:58", "25:59:58"),
        NGINX.replace("+0100", "+9900"),
        NGINX.replace("10/Jan", "31/Feb"),
        NGINX.replace('"GET /feeds/alle.rss?utm=x HTTP/1.1"', '"GET"'),
        NGINX.replace("/feeds/alle.rss", "feeds/alle.rss"),
        NGINX.replace(" 304 ", " 30x "),
        NGINX[:-1],
        NGINX + "x" * LOG_LINE_BYTES,
    ],
)
def test_malformed_lines_are_none(line: str) -> None:
    assert parse_log_line(line) is None


def test_hostile_log_lines_cost_little() -> None:
    for line in ('1 - - [x] "' + "\\" * (LOG_LINE_BYTES - 20), "1 - - [" + "]" * 8000, '"' * LOG_LINE_BYTES):
        started = time.perf_counter()
        assert parse_log_line(line) is None
        assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/feeds/alle.rss", "/feeds/alle.rss"),
        ("/feeds/alle.rss?x=1#y", "/feeds/alle.rss"),
        ("http://news.example.org/feeds/alle.rss", "/feeds/alle.rss"),
        ("HTTPS://news.example.org:443/feeds/%61lle.rss", "/feeds/alle.rss"),
        ("http://news.example.org", "/"),
        ("*", None),
        ("news.example.org:443", None),
    ],
)
def test_request_targets_become_paths(target: str, path: str | None) -> None:
    assert request_path(target) == path
