"""Load and validate ``config.yaml`` into immutable :class:`SiteConfig` and :class:`FeedSpec`.

Validation reports every problem at once, each with file, line and what was expected, because
an operator fixing the config at 2 a.m. should not have to run the check five times.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import fields
from .errors import ConfigError, Problem
from .slugs import slug
from .yamlfile import LineDict, YAMLProblem, line_of, load_yaml

CONTENT_MODES = ("full", "summary")
CONTENT = "full"
LIMIT = 50
MAX_AGE = 300
# RFC 5861: a cache may answer from a stale copy while it refetches, or while the origin fails.
STALE_WHILE_REVALIDATE = 60
STALE_IF_ERROR = 24 * 60 * 60
MAX_BYTES = 1024 * 1024  # a feed document never grows past this (FeedBurner cut at 512 KB-1 MB)
MAX_ARTICLE_BYTES = 2 * 1024 * 1024  # larger article files are left out, not read
# Bounds, so a typo cannot ask for a million entries, a century of caching or a 1 GB feed.
LIMIT_RANGE = (1, 1000)
# RFC 2616 §14.21: servers SHOULD NOT send Expires dates more than one year in the future.
MAX_AGE_RANGE = (0, 365 * 24 * 60 * 60)
MAX_BYTES_RANGE = (16 * 1024, 50 * 1024 * 1024)  # room for a few entries .. more than readers fetch
MAX_ARTICLE_BYTES_RANGE = (1024, 64 * 1024 * 1024)
DELAY_RANGE = (0, 7 * 24 * 60)  # minutes: a partner gets news up to a week late
WINDOW_RANGE = (0, 366 * 24)  # hours
FEED_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
# Each hub and each cache gets a request per change, from a sending thread per host, and every
# hub is named in every feed's Link header: 2,000 hubs made 2,015 threads per worker and a
# 76 KB header on every feed.
MAX_HUBS = 16
MAX_CACHES = 16
LOOPBACK = ("127.0.0.0/8", "::1/128")  # who may read /metrics unless metrics.allow says otherwise
POLLING_RANGE = (1, 24 * 60 * 60)  # seconds between two requests of one client for one document


@dataclass(frozen=True)
class FeedSpec:
    """One published feed: an operator's entry in ``feeds:`` or a topic's own feed.

    Topic and tag filters hold slugs; an empty ``topics`` means every article.
    """

    name: str
    title: str
    description: str
    topics: tuple[str, ...] = ()
    exclude_topics: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    limit: int = LIMIT
    max_age: int = MAX_AGE
    content: str = CONTENT
    language: str = "en"
    is_topic_feed: bool = False
    max_bytes: int = MAX_BYTES
    stale_while_revalidate: int = STALE_WHILE_REVALIDATE
    stale_if_error: int = STALE_IF_ERROR
    delay: int = 0  # minutes after its publication an entry appears in this feed
    window: int = 0  # hours: only entries published within them (0: no window)

    @property
    def behind(self) -> timedelta:
        return timedelta(minutes=self.delay)

    @property
    def span(self) -> timedelta | None:
        return timedelta(hours=self.window) if self.window else None


@dataclass(frozen=True)
class Polling:
    """The polling budget (``polling:``): the seconds one client waits between two requests for
    one document, by the kind of the later request, and the proxies whose X-Forwarded-For names
    the client (networks, normalized)."""

    conditional: int
    unconditional: int
    proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class TopicName:
    """How a topic is shown: its feed's title and description (``topics:`` in the config)."""

    slug: str
    title: str
    description: str = ""
    line: int = field(default=0, compare=False)  # in config.yaml, for warnings about it


@dataclass(frozen=True)
class SiteConfig:
    """The whole validated configuration; ``url`` always ends with a slash."""

    title: str
    url: str
    description: str
    language: str
    timezone: str
    author: str | None
    articles_dir: Path
    limit: int = LIMIT
    max_age: int = MAX_AGE
    content: str = CONTENT
    topic_feeds: bool = True
    feeds: tuple[FeedSpec, ...] = ()
    path: Path = field(default=Path("config.yaml"))
    max_bytes: int = MAX_BYTES
    max_article_bytes: int = MAX_ARTICLE_BYTES
    stale_while_revalidate: int = STALE_WHILE_REVALIDATE
    stale_if_error: int = STALE_IF_ERROR
    icon: str | None = None  # absolute URLs
    logo: str | None = None
    topic_names: tuple[TopicName, ...] = ()
    hubs: tuple[str, ...] = ()  # WebSub hubs
    purge: tuple[str, ...] = ()  # HTTP caches that take PURGE
    metrics_allow: tuple[str, ...] = LOOPBACK  # networks whose clients may read /metrics
    polling: Polling | None = None  # the polling budget; off unless configured

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    @property
    def path_prefix(self) -> str:
        """The URL path the site lives under, without trailing slash ('' at the root)."""
        return urlsplit(self.url).path.rstrip("/")


def config_path_from_env(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--config`` wins, then ``FEEDS_CONFIG``, then ``./config.yaml``."""
    return Path(explicit or os.environ.get("FEEDS_CONFIG") or "config.yaml")


def load_config(path: str | os.PathLike[str]) -> SiteConfig:
    """Read and validate a config file; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), None, "config file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), None, f"cannot read config: {exc}")]) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> SiteConfig:
    try:
        data = load_yaml(text)
    except YAMLProblem as exc:
        raise ConfigError([Problem(str(path), exc.line, exc.message)]) from None
    v = _Validator(str(path))
    config = v.site_config(data, path)
    if v.problems or config is None:
        raise ConfigError(sorted(v.problems, key=lambda p: (p.line or 0, p.message)))
    return config


def _base_url(value: object) -> str:
    """Every link in a feed is joined to this, so a query or fragment would end up in the middle."""
    url = fields.http_url(value)
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"{fields.URL_FORM} (no query or fragment)")
    return url.rstrip("/") + "/"


def _asset(value: object) -> str:
    """A picture's path under the site (``/static/icon.png``) or absolute http(s) URL; kept as given.

    Made absolute against ``site.url`` once the whole section is read (:func:`_absolute`).
    """
    form = "a path such as /static/icon.png or an http(s) URL"
    if not isinstance(value, str) or not value.strip():
        raise TypeError(form)
    given = value.strip()
    try:
        fields.http_url(urljoin("https://example.org/", given))
    except ValueError as exc:
        raise ValueError(f"{form} ({str(exc).rpartition('(')[2].rstrip(')')})") from None
    return given


def _absolute(site: Mapping[str, Any], key: str) -> str | None:
    given = site.get(key)
    return None if given is None else fields.http_url(urljoin(site["url"], given))


def _url_list(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise TypeError(f"a list of URLs, each {fields.URL_FORM}")
    return tuple(dict.fromkeys(fields.http_url(item) for item in items))


def _timezone(value: object) -> str:
    """A zone known to this machine's tz database; an unknown one would only fail while rendering."""
    form = "an IANA time zone such as Europe/Berlin"
    if not isinstance(value, str):
        raise TypeError(form)
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise ValueError(form) from None
    return value.strip()


def _interval(value: object) -> int:
    """``polling.min_interval`` as one number (a mapping is read key by key, with its lines)."""
    form = f"a whole number of seconds from {POLLING_RANGE[0]} to {POLLING_RANGE[1]}"
    try:
        return fields.whole(*POLLING_RANGE, "seconds")(value)
    except TypeError:
        raise TypeError(f"{form}, or a mapping with conditional and unconditional") from None


def _folder(value: object) -> str:
    try:
        return fields.non_empty_text(value)
    except TypeError:
        raise TypeError("a folder path relative to the config file") from None


@dataclass(frozen=True)
class _Key:
    """How one config key is checked, and what it is when not given (unless a caller passes it on).

    A required key has no default: with it missing there is no config to build.
    """

    check: fields.Check[Any]
    default: Any = None
    required: bool = False


# Each table's keys are the names of SiteConfig / FeedSpec fields and the allowed YAML keys.
_TOP = {
    "articles": _Key(_folder, "articles"),
    "topic_feeds": _Key(fields.boolean, True),
    "max_article_bytes": _Key(fields.whole(*MAX_ARTICLE_BYTES_RANGE, "bytes"), MAX_ARTICLE_BYTES),
}
_TOP_KEYS = ("site", *_TOP, "defaults", "feeds", "topics", "websub", "cache", "metrics", "polling")
_SITE = {
    "title": _Key(fields.non_empty_text, required=True),
    "url": _Key(_base_url, required=True),
    "description": _Key(fields.text, ""),
    "language": _Key(fields.language_tag, "en"),
    "timezone": _Key(_timezone, "UTC"),
    "author": _Key(fields.non_empty_text),
    "icon": _Key(_asset),
    "logo": _Key(_asset),
}
_TOPIC = {
    "title": _Key(fields.non_empty_text, required=True),
    "description": _Key(fields.text, ""),
}
_WEBSUB = {"hubs": _Key(_url_list, ())}
_HUB_ROLE = "each hub is sent a request for every changed feed and named in every feed's Link header"
_CACHE_ROLE = "each cache is sent a PURGE for every changed document"
_CACHE = {"purge": _Key(_url_list, ())}
_METRICS = {"allow": _Key(fields.networks, LOOPBACK)}
_SECONDS = _Key(fields.whole(*POLLING_RANGE, "seconds"), required=True)
_INTERVALS = {"conditional": _SECONDS, "unconditional": _SECONDS}
_POLLING = {"min_interval": _Key(_interval, required=True), "proxies": _Key(fields.networks, ())}
_DEFAULTS = {
    "limit": _Key(fields.whole(*LIMIT_RANGE), LIMIT),
    "max_age": _Key(fields.whole(*MAX_AGE_RANGE, "seconds"), MAX_AGE),
    "content": _Key(fields.one_of(*CONTENT_MODES), CONTENT),
    "max_bytes": _Key(fields.whole(*MAX_BYTES_RANGE, "bytes"), MAX_BYTES),
    "stale_while_revalidate": _Key(fields.whole(*MAX_AGE_RANGE, "seconds"), STALE_WHILE_REVALIDATE),
    "stale_if_error": _Key(fields.whole(*MAX_AGE_RANGE, "seconds"), STALE_IF_ERROR),
}
_FEED = {  # defaults come from the feed's name, defaults: and site.language
    "title": _Key(fields.non_empty_text),
    "description": _Key(fields.text, ""),
    "topics": _Key(fields.slug_list("topic names"), ()),
    "exclude_topics": _Key(fields.slug_list("topic names"), ()),
    "tags": _Key(fields.slug_list("tags"), ()),
    **_DEFAULTS,
    "language": _Key(fields.language_tag),
    "delay": _Key(fields.whole(*DELAY_RANGE, "minutes"), 0),
    "window": _Key(fields.whole(*WINDOW_RANGE, "hours"), 0),
}


class _Validator:
    """Collects every problem instead of stopping at the first; a bad value falls back to its default."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def error(self, mapping: Any, key: Any, dotted: str, message: str) -> None:
        self.problems.append(Problem(self.path, line_of(mapping, key), f"{dotted}: {message}"))

    def site_config(self, data: Any, path: Path) -> SiteConfig | None:
        if not isinstance(data, Mapping):
            message = f"expected a mapping with a 'site' section, got {_show(data)}"
            self.problems.append(Problem(self.path, 1, message))
            return None
        self.unknown_keys(data, "", _TOP_KEYS)
        top = self.values(data, "", _TOP)
        site = self.site(data)
        defaults = self.values(self.section(data, "defaults", _DEFAULTS), "defaults", _DEFAULTS)
        feeds = self.feeds(data, {**defaults, "language": site["language"]})
        articles_dir = self.articles_dir(data, path, top["articles"])
        topic_names = self.topic_names(data)
        websub_section = self.section(data, "websub", _WEBSUB)
        websub = self.values(websub_section, "websub", _WEBSUB)
        self.destinations(websub_section, "websub.hubs", websub["hubs"], MAX_HUBS, _HUB_ROLE)
        cache_section = self.section(data, "cache", _CACHE)
        cache = self.values(cache_section, "cache", _CACHE)
        self.destinations(cache_section, "cache.purge", cache["purge"], MAX_CACHES, _CACHE_ROLE, plain=True)
        metrics = self.values(self.section(data, "metrics", _METRICS), "metrics", _METRICS)
        polling = self.polling(data)
        if self.problems:
            return None
        return SiteConfig(
            **{**site, "icon": _absolute(site, "icon"), "logo": _absolute(site, "logo")},
            **defaults,
            topic_names=topic_names,
            hubs=websub["hubs"],
            purge=cache["purge"],
            metrics_allow=metrics["allow"],
            polling=polling,
            articles_dir=articles_dir,
            topic_feeds=top["topic_feeds"],
            max_article_bytes=top["max_article_bytes"],
            feeds=feeds,
            path=path,
        )

    def destinations(
        self,
        section: Mapping[Any, Any],
        dotted: str,
        urls: tuple[str, ...],
        most: int,
        role: str,
        plain: bool = False,
    ) -> None:
        """At most ``most`` URLs; with ``plain``, none with a query or fragment.

        A cache is sent ``PURGE <its URL + a document's path>``: after a query or fragment the
        path would land inside it (``/prefix?x=1/feeds/a.rss``) and purge nothing, while the
        cache still answers 200.
        """
        key = dotted.rpartition(".")[2]
        if len(urls) > most:
            message = f"{len(urls)} URLs, expected at most {most} ({role})"
            self.error(section, key, dotted, message)
        for url in urls if plain else ():
            parts = urlsplit(url)
            what = "a query" if parts.query else "a fragment" if parts.fragment else ""
            if what:
                address = f"{parts.scheme}://{parts.netloc}{parts.path}"
                message = (
                    f"{url!r} has {what}; expected the cache's address without query or fragment, "
                    f"such as {address!r} (each PURGE goes to it with the document's path appended)"
                )
                self.error(section, key, dotted, message)

    def polling(self, data: Mapping[Any, Any]) -> Polling | None:
        """``polling:``: off when absent or empty; ``min_interval`` one number for both kinds of
        request, or a mapping with one for each."""
        section = self.section(data, "polling", _POLLING)
        if not section:
            return None
        given = section.get("min_interval")
        if isinstance(given, Mapping):
            self.unknown_keys(given, "polling.min_interval", tuple(_INTERVALS))
            intervals = self.values(given, "polling.min_interval", _INTERVALS)
        else:
            one = self.value(section, "min_interval", "polling.min_interval", _POLLING["min_interval"], None)
            intervals = dict.fromkeys(_INTERVALS, one)
        proxies = self.value(section, "proxies", "polling.proxies", _POLLING["proxies"], ())
        if None in intervals.values():
            return None
        return Polling(**intervals, proxies=proxies)

    def site(self, data: Mapping[Any, Any]) -> dict[str, Any]:
        if "site" not in data:
            missing = "site: required, expected a mapping with title and url"
            self.problems.append(Problem(self.path, 1, missing))
        return self.values(self.section(data, "site", _SITE), "site", _SITE)

    def topic_names(self, data: Mapping[Any, Any]) -> tuple[TopicName, ...]:
        """``topics:``, keyed by topic name (compared by slug); a bare string is the title."""
        raw = data.get("topics")
        if raw is None:
            return ()
        if not isinstance(raw, Mapping):
            self.error(
                data, "topics", "topics", f"expected a mapping of topic slugs to titles, got {_show(raw)}"
            )
            return ()
        found: dict[str, TopicName] = {}
        for key, given in raw.items():
            dotted = f"topics.{key}"
            if not isinstance(key, str) or not key.strip():
                self.error(raw, key, dotted, "a topic name such as klima or ukraine-krieg")
                continue
            if isinstance(given, str):
                given = LineDict({"title": given})
            if not isinstance(given, Mapping):
                self.error(
                    raw,
                    key,
                    dotted,
                    f"expected a title or a mapping with title and description, got {_show(given)}",
                )
                continue
            self.unknown_keys(given, dotted, tuple(_TOPIC))
            values = self.values(given, dotted, _TOPIC)
            topic_slug = slug(key)
            if topic_slug in found:
                self.error(
                    raw, key, dotted, f"names topic {topic_slug!r} a second time (topics compare by slug)"
                )
            elif values["title"] is not None:
                found[topic_slug] = TopicName(
                    topic_slug, values["title"], values["description"], line_of(raw, key) or 0
                )
        return tuple(found.values())

    def articles_dir(self, data: Mapping[Any, Any], path: Path, folder: str) -> Path:
        """A missing folder is an error now rather than a site with no articles later.

        Kept as configured (absolute, symlinks not resolved): a release link switched later, or a
        folder swapped, is whatever the path names then.
        """
        articles_dir = Path(os.path.abspath(path.parent / folder))
        try:
            problem = "" if articles_dir.is_dir() else "does not exist"
        except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
            problem = f"cannot be used ({exc})"
        if problem:
            self.error(data, "articles", "articles", f"folder {str(articles_dir)!r} {problem}")
        return articles_dir

    def feeds(self, data: Mapping[Any, Any], inherited: Mapping[str, Any]) -> tuple[FeedSpec, ...]:
        raw_feeds = data.get("feeds")
        if raw_feeds is None:
            return ()
        if not isinstance(raw_feeds, Mapping):
            expected = f"expected a mapping of feed names to feeds, got {_show(raw_feeds)}"
            self.error(data, "feeds", "feeds", expected)
            return ()
        specs = [self.feed(raw_feeds, name, inherited) for name in raw_feeds]
        return tuple(spec for spec in specs if spec is not None)

    def feed(self, parent: Mapping[Any, Any], name: Any, inherited: Mapping[str, Any]) -> FeedSpec | None:
        dotted = f"feeds.{name}"
        if not isinstance(name, str) or not FEED_NAME.fullmatch(name):
            rule = "a feed name is its URL: lowercase letters, digits, '-' or '_' (e.g. ukraine-krieg)"
            self.error(parent, name, dotted, rule)
            return None
        raw = LineDict() if parent[name] is None else parent[name]
        if not isinstance(raw, Mapping):
            self.error(parent, name, dotted, f"expected a mapping with title, topics, ..., got {_show(raw)}")
            return None
        self.unknown_keys(raw, dotted, tuple(_FEED))
        return FeedSpec(name=name, **self.values(raw, dotted, _FEED, {**inherited, "title": name}))

    def section(self, parent: Mapping[Any, Any], key: str, table: Mapping[str, _Key]) -> Mapping[Any, Any]:
        value = parent.get(key)
        if value is None:
            return LineDict()
        if not isinstance(value, Mapping):
            self.error(parent, key, key, f"expected a mapping of keys, got {_show(value)}")
            return LineDict()
        self.unknown_keys(value, key, tuple(table))
        return value

    def unknown_keys(self, mapping: Mapping[Any, Any], dotted: str, allowed: tuple[str, ...]) -> None:
        for key in mapping:
            if key not in allowed:
                hint = fields.did_you_mean(key, allowed) or f"; allowed: {', '.join(allowed)}"
                self.error(mapping, key, _join(dotted, key), f"unknown key{hint}")

    def values(
        self,
        mapping: Mapping[Any, Any],
        dotted: str,
        table: Mapping[str, _Key],
        inherited: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Every key of the table, checked; what a caller passes on replaces the table's default."""
        inherited = inherited or {}
        return {
            key: self.value(mapping, key, _join(dotted, key), spec, inherited.get(key, spec.default))
            for key, spec in table.items()
        }

    def value(self, mapping: Mapping[Any, Any], key: str, dotted: str, spec: _Key, default: Any) -> Any:
        given = mapping.get(key)
        if given is None:  # "limit:" with nothing after it is as good as leaving it out
            if spec.required:
                self.error(mapping, key, dotted, f"required, expected {fields.expected(spec.check)}")
            return default
        try:
            return spec.check(given)
        except (TypeError, ValueError) as exc:
            self.error(mapping, key, dotted, f"expected {exc}, got {_show(given)}")
            return default


def _join(dotted: str, key: Any) -> str:
    return f"{dotted}.{key}" if dotted else str(key)


def _show(value: Any) -> str:
    """The value as the operator wrote it, cut short: a pasted blob should not bury the message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (YAML reads yes/no/on/off as true/false)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    shown = repr(value)
    return shown if len(shown) <= 80 else f"{shown[:76]}...{shown[-1]}"
