"""Load and validate ``config.yaml`` into immutable :class:`SiteConfig` and :class:`FeedSpec`.

Validation reports every problem at once, each with file, line and what was expected, because
an operator fixing the config at 2 a.m. should not have to run the check five times.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError, Problem
from .markup import clean_text
from .slugs import slug
from .yamlfile import LineDict, YAMLProblem, line_of, load_yaml

CONTENT_MODES = ("full", "summary")
MAX_BYTES = 1024 * 1024  # a feed document never grows past this (FeedBurner cut at 512 KB-1 MB)
MAX_ARTICLE_BYTES = 2 * 1024 * 1024  # larger article files are left out, not read
FEED_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


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
    limit: int = 50
    max_age: int = 300
    content: str = "full"
    language: str = "en"
    is_topic_feed: bool = False
    max_bytes: int = MAX_BYTES


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
    limit: int = 50
    max_age: int = 300
    content: str = "full"
    topic_feeds: bool = True
    feeds: tuple[FeedSpec, ...] = ()
    path: Path = field(default=Path("config.yaml"))
    max_bytes: int = MAX_BYTES
    max_article_bytes: int = MAX_ARTICLE_BYTES

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


class _Validator:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def error(self, mapping: Any, key: Any, dotted: str, message: str) -> None:
        self.problems.append(Problem(self.path, line_of(mapping, key), f"{dotted}: {message}"))

    def mapping(self, parent: Any, key: str, dotted: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        value = parent.get(key) if isinstance(parent, Mapping) else None
        if value is None:
            return LineDict()
        if not isinstance(value, Mapping):
            self.error(parent, key, dotted, f"expected a mapping of keys, got {_show(value)}")
            return LineDict()
        self.unknown_keys(value, dotted, allowed)
        return value

    def unknown_keys(self, mapping: Mapping[Any, Any], dotted: str, allowed: tuple[str, ...]) -> None:
        for key in mapping:
            if key in allowed:
                continue
            where = f"{dotted}.{key}" if dotted else str(key)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(allowed)}"
            self.error(mapping, key, where, f"unknown key{hint}")

    def get(
        self,
        mapping: Mapping[str, Any],
        key: str,
        dotted: str,
        check: Callable[[Any], Any],
        expected: str,
        default: Any = None,
        required: bool = False,
    ) -> Any:
        if key not in mapping or mapping[key] is None:
            if required:
                self.problems.append(
                    Problem(self.path, line_of(mapping, key), f"{dotted}: required, expected {expected}")
                )
            return default
        value = mapping[key]
        try:
            return check(value)
        except (TypeError, ValueError) as exc:
            detail = f" ({exc})" if str(exc) else ""
            self.error(mapping, key, dotted, f"expected {expected}, got {_show(value)}{detail}")
            return default

    def site_config(self, data: Any, path: Path) -> SiteConfig | None:
        if not isinstance(data, Mapping):
            self.problems.append(
                Problem(self.path, 1, f"expected a mapping with a 'site' section, got {_show(data)}")
            )
            return None
        self.unknown_keys(data, "", ("site", "articles", "defaults", "topic_feeds", "feeds"))
        site = self.mapping(
            data, "site", "site", ("title", "url", "description", "language", "timezone", "author")
        )
        if "site" not in data:
            self.problems.append(
                Problem(self.path, 1, "site: required, expected a mapping with title and url")
            )
        title = self.get(site, "title", "site.title", _text, "a non-empty string", "", required=True)
        url = self.get(
            site,
            "url",
            "site.url",
            _base_url,
            "an absolute http(s) URL such as https://news.example.org",
            "http://localhost/",
            required=True,
        )
        description = self.get(site, "description", "site.description", _any_text, "a string", "")
        language = self.get(
            site,
            "language",
            "site.language",
            _language,
            "a language tag such as de or en-US (quote 'no')",
            "en",
        )
        timezone = self.get(
            site, "timezone", "site.timezone", _timezone, "an IANA time zone such as Europe/Berlin", "UTC"
        )
        author = self.get(site, "author", "site.author", _text, "a non-empty string")

        folder = self.get(
            data, "articles", "articles", _text, "a folder path relative to the config file", "articles"
        )
        articles_dir = (path.parent / folder).resolve()
        if not articles_dir.is_dir():
            self.error(data, "articles", "articles", f"folder {str(articles_dir)!r} does not exist")

        defaults = self.mapping(data, "defaults", "defaults", ("limit", "max_age", "content"))
        limit = self.get(defaults, "limit", "defaults.limit", _positive, "a whole number >= 1", 50)
        max_age = self.get(
            defaults, "max_age", "defaults.max_age", _non_negative, "a whole number of seconds >= 0", 300
        )
        content = self.get(defaults, "content", "defaults.content", _content, "full or summary", "full")
        topic_feeds = self.get(data, "topic_feeds", "topic_feeds", _bool, "true or false", True)

        feeds: list[FeedSpec] = []
        raw_feeds = data.get("feeds")
        if raw_feeds is not None and not isinstance(raw_feeds, Mapping):
            self.error(
                data, "feeds", "feeds", f"expected a mapping of feed names to feeds, got {_show(raw_feeds)}"
            )
        elif raw_feeds:
            for name, raw in raw_feeds.items():
                spec = self.feed(raw_feeds, name, raw, limit, max_age, content, language)
                if spec is not None:
                    feeds.append(spec)
        return SiteConfig(
            title=title,
            url=url,
            description=description,
            language=language,
            timezone=timezone,
            author=author,
            articles_dir=articles_dir,
            limit=limit,
            max_age=max_age,
            content=content,
            topic_feeds=topic_feeds,
            feeds=tuple(feeds),
            path=path,
        )

    def feed(
        self,
        parent: Mapping[str, Any],
        name: Any,
        raw: Any,
        limit: int,
        max_age: int,
        content: str,
        language: str,
    ) -> FeedSpec | None:
        dotted = f"feeds.{name}"
        if not isinstance(name, str) or not FEED_NAME.match(name):
            self.error(
                parent,
                name,
                dotted,
                "a feed name is its URL: lowercase letters, digits, '-' or '_' (e.g. ukraine-krieg)",
            )
            return None
        keys = (
            "title",
            "description",
            "topics",
            "exclude_topics",
            "tags",
            "limit",
            "max_age",
            "content",
            "language",
        )
        if raw is None:
            raw = LineDict()
        if not isinstance(raw, Mapping):
            self.error(parent, name, dotted, f"expected a mapping with title, topics, ..., got {_show(raw)}")
            return None
        self.unknown_keys(raw, dotted, keys)
        return FeedSpec(
            name=name,
            title=self.get(raw, "title", f"{dotted}.title", _text, "a non-empty string", name),
            description=self.get(raw, "description", f"{dotted}.description", _any_text, "a string", ""),
            topics=self.get(raw, "topics", f"{dotted}.topics", _slugs, "a list of topic names", ()),
            exclude_topics=self.get(
                raw, "exclude_topics", f"{dotted}.exclude_topics", _slugs, "a list of topic names", ()
            ),
            tags=self.get(raw, "tags", f"{dotted}.tags", _slugs, "a list of tags", ()),
            limit=self.get(raw, "limit", f"{dotted}.limit", _positive, "a whole number >= 1", limit),
            max_age=self.get(
                raw, "max_age", f"{dotted}.max_age", _non_negative, "a whole number of seconds >= 0", max_age
            ),
            content=self.get(raw, "content", f"{dotted}.content", _content, "full or summary", content),
            language=self.get(
                raw,
                "language",
                f"{dotted}.language",
                _language,
                "a language tag such as de or en-US",
                language,
            ),
        )


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (YAML reads yes/no/on/off as true/false; quote it)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not clean_text(value).strip():
        raise TypeError()
    return clean_text(value).strip()


def _any_text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError()
    return clean_text(value).strip()


def _base_url(value: Any) -> str:
    parts = urlsplit(_text(value))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError()
    if parts.query or parts.fragment:
        raise ValueError("no query or fragment")
    return parts.geturl().rstrip("/") + "/"


def _language(value: Any) -> str:
    if not isinstance(value, str) or not LANGUAGE.match(value):
        raise TypeError()
    return value


def _timezone(value: Any) -> str:
    try:
        ZoneInfo(_text(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone") from None
    return value.strip()


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError()
    return value


def _positive(value: Any) -> int:
    if _whole(value) < 1:
        raise ValueError()
    return int(value)


def _non_negative(value: Any) -> int:
    if _whole(value) < 0:
        raise ValueError()
    return int(value)


def _content(value: Any) -> str:
    if value not in CONTENT_MODES:
        raise ValueError()
    return str(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError()
    return value


def _slugs(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise TypeError()
    return tuple(dict.fromkeys(slug(i) for i in items))
