"""A published site at one moment: every document it serves, rendered once and cached.

A :class:`Site` is an immutable snapshot of config, articles and the time it was taken for;
its documents (feeds, pages, index) are rendered on first use with their validators, so a
request only looks bytes up. The :class:`Store` swaps in a new snapshot when an embargo lifts.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import pages
from .articles import Article, load_articles
from .config import FeedSpec, SiteConfig, load_config
from .errors import NotFound, Problem
from .render import EPOCH, MEDIA_TYPES, RENDERERS, last_modified
from .selection import feed_specs, next_release, published_at, select

Clock = Callable[[], datetime]
HTML = "text/html; charset=utf-8"
FORMATS = ("rss", "atom")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Document:
    """Bytes ready to send, in both encodings, with validators computed from the bytes.

    ``etag`` is the unquoted strong tag of the identity bytes; the gzip bytes are served as
    ``<etag>-gzip`` so the two representations never share a strong tag (RFC 9110 8.8.3).
    """

    body: bytes
    gzipped: bytes
    etag: str
    last_modified: datetime
    mimetype: str
    max_age: int


def make_document(body: bytes, mimetype: str, modified: datetime, max_age: int) -> Document:
    return Document(
        body=body,
        # mtime=0 keeps the gzip header free of the clock: same bytes on every machine.
        gzipped=gzip.compress(body, compresslevel=6, mtime=0),
        etag=hashlib.sha256(body).hexdigest()[:32],
        last_modified=modified.replace(microsecond=0),
        mimetype=mimetype,
        max_age=max_age,
    )


@dataclass
class Site:
    """Everything readers can see at ``now``; build with :func:`build_site`."""

    config: SiteConfig
    articles: tuple[Article, ...]
    problems: tuple[Problem, ...]
    now: datetime
    visible: tuple[Article, ...] = ()
    specs: dict[str, FeedSpec] = field(default_factory=dict)
    next_release: datetime | None = None
    _by_id: dict[str, Article] = field(default_factory=dict)
    _cache: dict[tuple[str, str], Document] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def newest(self) -> datetime:
        return last_modified(self.visible, EPOCH)

    def feed_entries(self, spec: FeedSpec) -> list[Article]:
        return select(spec, self.visible)

    def feed(self, name: str, fmt: str) -> Document:
        spec = self.specs.get(name)
        if spec is None or fmt not in FORMATS:
            raise NotFound(f"no feed {name}.{fmt}")
        return self._cached(("feed", f"{name}.{fmt}"), lambda: self._render_feed(spec, fmt))

    def page(self, article_id: str) -> Document:
        article = self._by_id.get(article_id)
        if article is None:
            raise NotFound(f"no article {article_id}")
        return self._cached(("page", article_id), lambda: make_document(
            pages.render_article(self.config, article, self._feeds_of(article)),
            HTML, article.updated, self.config.max_age))

    def index(self) -> Document:
        return self._cached(("index", ""), lambda: make_document(
            pages.render_index(self.config, list(self.specs.values()), self.visible),
            HTML, self.newest, self.config.max_age))

    def _render_feed(self, spec: FeedSpec, fmt: str) -> Document:
        entries = self.feed_entries(spec)
        # An empty feed still needs a date: the site's newest change is the honest one.
        updated = last_modified(entries, self.newest)
        body = RENDERERS[fmt](spec, self.config, entries, updated)
        return make_document(body, MEDIA_TYPES[fmt], updated, spec.max_age)

    def _feeds_of(self, article: Article) -> list[FeedSpec]:
        return [s for s in self.specs.values() if s.is_topic_feed and s.topics[0] in article.topic_slugs]

    def _cached(self, key: tuple[str, str], make: Callable[[], Document]) -> Document:
        doc = self._cache.get(key)
        if doc is None:
            with self._lock:
                doc = self._cache.get(key)
                if doc is None:
                    doc = self._cache[key] = make()
        return doc


def build_site(config: SiteConfig, articles: list[Article] | tuple[Article, ...],
               problems: list[Problem] | tuple[Problem, ...], now: datetime) -> Site:
    visible = tuple(published_at(articles, now))
    specs = feed_specs(config, visible)  # a draft's topic must not show up as a feed
    return Site(
        config=config,
        articles=tuple(articles),
        problems=tuple(problems),
        now=now,
        visible=visible,
        specs={s.name: s for s in specs},
        next_release=next_release(articles, now),
        _by_id={a.id: a for a in visible},
    )


def load_site(config_path: str, clock: Clock = utc_now) -> Site:
    """Read config and articles from disk; raises ConfigError when the config is unusable."""
    config = load_config(config_path)
    articles, problems = load_articles(config)
    return build_site(config, articles, problems, clock())


class Store:
    """Hands out the current snapshot; re-selects when an embargoed article's time comes."""

    def __init__(self, site: Site, clock: Clock = utc_now) -> None:
        self._site = site
        self._clock = clock
        self._lock = threading.Lock()

    def current(self) -> Site:
        site = self._site
        if site.next_release is not None and self._clock() >= site.next_release:
            with self._lock:
                site = self._site
                now = self._clock()
                if site.next_release is not None and now >= site.next_release:
                    site = self._site = build_site(site.config, site.articles, site.problems, now)
        return site
