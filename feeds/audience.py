"""Who reads each feed: what a request says about its reader, and the rules that count them.

Hosted readers fetch a feed once for all their users and say how many in the User-Agent::

    Feedly/1.0 (+http://www.feedly.com/fetcher.html; 457 subscribers; like FeedFetcher-Google)
    Feedbin feed-id:1373711 - 142 subscribers
    NewsBlur Feed Fetcher - 54 subscribers - https://www.newsblur.com/site/6865328/x ("Mozilla/5.0 ...")
    Mozilla/5.0 (compatible; theoldreader.com; 1 subscribers; feed-id=cead6c3a837650eeefd8fe4a)

Such a request is a :class:`Report`: N subscribers of that fetcher, for that feed id (a fetcher
that names none: for the URL it fetched). Every other request is one reader per distinct
(client address, User-Agent) per day, known only by a keyed hash (:func:`visitor`) whose key
changes daily, so the addresses are never stored. The same rules count the server's requests
and the lines of a cache's access log (combined format: nginx, ``varnishncsa``;
:func:`parse_log_line`). Pure: no clock, no files, no state.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from urllib.parse import unquote

DIRECT = "direct"  # readers counted one per (address, User-Agent) per day
OTHER = "other"  # fetchers that report subscribers but are none of FETCHERS
# Fetchers known to report subscribers: (source name, what their User-Agent contains). The first
# match wins: Feedly's says "like FeedFetcher-Google".
FETCHERS = (
    ("feedly", "feedly"),
    ("feedbin", "feedbin"),
    ("newsblur", "newsblur"),
    ("inoreader", "inoreader"),
    ("theoldreader", "theoldreader"),
    ("bazqux", "bazqux"),
    ("feedhq", "feedhq"),
    ("feedsubs", "feedsubs"),
    ("netvibes", "netvibes"),
    ("dreamwidth", "dreamwidth"),
    ("google", "feedfetcher-google"),
)
SOURCES = frozenset({DIRECT, OTHER, *(name for name, _ in FETCHERS)})
# A claim above this is not believed (the largest feeds have a few million readers in one
# service): the request counts as one reader, like any other. Also the most one source may add
# to one feed, whatever number of feed ids it names.
MAX_SUBSCRIBERS = 10_000_000
FEED_IDS = 64  # feed ids remembered per feed, source and day; more are not counted
AGENT_CHARS = 512  # of a User-Agent, only this much is read or hashed
LOG_LINE_BYTES = 8192  # a longer access log line is skipped
VISITOR_BYTES = 16

_COUNT = re.compile(r"(?<![\w,.])(\d{1,3}(?:,\d{3})+|\d{1,15})\s*(?:subscribers?|readers?)\b", re.IGNORECASE)
_FEED_ID = re.compile(r"feed-?id\s*[:=]\s*([A-Za-z0-9_-]{1,64})", re.IGNORECASE)
_NEWSBLUR_SITE = re.compile(r"newsblur\.com/site/(\d{1,20})", re.IGNORECASE)
_PRODUCT = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_LINE = re.compile(
    r"(?P<address>[^ ]{1,255}) [^ ]* [^ ]* \[(?P<time>[^\]]{1,40})\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?:\d+|-) '
    r'"(?:[^"\\]|\\.)*" "(?P<agent>(?:[^"\\]|\\.)*)"'
)
_TIME = re.compile(r"(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})")
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
# Answers that mean the reader got (or already holds) the feed; a reader refused for polling too
# often (429) is a reader all the same.
COUNTED_STATUSES = frozenset({200, 203, 206, 304, 429})


@dataclass(frozen=True)
class Report:
    """A fetcher's own count of its subscribers to the URL it fetched (``feed_id``: '' if unnamed)."""

    source: str
    feed_id: str
    subscribers: int


def parse_agent(agent: str) -> Report | None:
    """The report a User-Agent makes, or None: not a fetcher's report, or one not believed."""
    agent = agent[:AGENT_CHARS]
    found = _COUNT.search(agent)
    if found is None:
        return None
    subscribers = int(found[1].replace(",", ""))
    if subscribers > MAX_SUBSCRIBERS:
        return None
    lowered = agent.lower()
    source = next((name for name, token in FETCHERS if token in lowered), OTHER)
    feed_id = _FEED_ID.search(agent) or _NEWSBLUR_SITE.search(agent)
    ident = feed_id[1] if feed_id else ""
    if source == OTHER:  # two unknown fetchers must not take each other's place
        ident = f"{_product(lowered)}:{ident}"
    return Report(source, ident, subscribers)


def _product(agent: str) -> str:
    """The name a User-Agent gives itself ('bazqux' in 'Mozilla/5.0 (compatible; BazQux/2.4; ...)')."""
    _, compatible, rest = agent.partition("compatible;")
    text = rest if compatible else agent
    found = _PRODUCT.search(text.strip())
    return found[0] if found else "?"


def visitor(key: bytes, address: str, agent: str) -> bytes:
    """One reader of one day: the address and User-Agent, hashed with that day's key."""
    message = f"{address}\n{agent[:AGENT_CHARS]}".encode("utf-8", "replace")
    return hmac.digest(key, message, "sha256")[:VISITOR_BYTES]


def feed_key(report: Report, fmt: str) -> str:
    """What one report is the latest of: the fetcher's feed id, or else the URL's format.

    A fetcher that names no feed id but fetches both /feeds/x.rss and /feeds/x.atom has two sets
    of subscribers, one per URL; both count.
    """
    return report.feed_id or fmt


def fetcher_totals(reports: list[tuple[date, str, str, str, int]], day: date) -> dict[tuple[str, str], int]:
    """Subscribers per (feed, source) on ``day`` from (day, feed, source, feed id, subscribers)
    rows, each the latest report of its day: for every feed id, the latest report of ``day``,
    else of the day before (a fetcher polling once a day is still counted the next day);
    summed over the feed ids of a source, at most :data:`MAX_SUBSCRIBERS`."""
    latest: dict[tuple[str, str, str], tuple[date, int]] = {}
    for seen, feed, source, feed_id, subscribers in reports:
        if seen not in (day, day - timedelta(days=1)):
            continue
        key = (feed, source, feed_id)
        known = latest.get(key)
        if known is None or seen > known[0]:
            latest[key] = (seen, subscribers)
    totals: dict[tuple[str, str], int] = {}
    for (feed, source, _), (_, subscribers) in latest.items():
        totals[feed, source] = min(totals.get((feed, source), 0) + subscribers, MAX_SUBSCRIBERS)
    return totals


@dataclass(frozen=True)
class LogLine:
    """One request of an access log, as far as counting readers needs it."""

    address: str
    at: datetime  # aware, UTC
    method: str
    path: str  # percent-decoded, without query string
    status: int
    agent: str


def parse_log_line(line: str) -> LogLine | None:
    """A combined-format line (``%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"``, as
    nginx and varnishncsa write it, with anything after it), or None if it is not one."""
    if len(line) > LOG_LINE_BYTES:
        return None
    found = _LINE.match(line)
    if found is None:
        return None
    at = _log_time(found["time"])
    parts = found["request"].split(" ")
    if at is None or len(parts) not in (2, 3):
        return None
    path = request_path(parts[1])
    if path is None:
        return None
    return LogLine(found["address"], at, parts[0], path, int(found["status"]), found["agent"])


def _log_time(text: str) -> datetime | None:
    """``10/Oct/2000:13:55:36 -0700`` in UTC (month names are English whatever the locale)."""
    found = _TIME.fullmatch(text)
    if found is None:
        return None
    day, month, year, hour, minute, second, sign, zh, zm = found.groups()
    number = _MONTHS.get(month.lower())
    offset = timedelta(hours=int(zh), minutes=int(zm)) * (1 if sign == "+" else -1)
    if number is None or abs(offset) >= timedelta(hours=24):
        return None
    try:
        local = datetime(int(year), number, int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    return local.replace(tzinfo=timezone(offset)).astimezone(UTC)


def request_path(target: str) -> str | None:
    """The path of a request target: origin form, or absolute form as varnishncsa logs it
    (``http://host/feeds/x.rss``); query and fragment dropped, percent-decoded."""
    lowered = target[:8].lower()
    if lowered.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    if not target.startswith("/"):
        return None
    return unquote(target.split("?", 1)[0].split("#", 1)[0], errors="replace")
