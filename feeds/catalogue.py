"""Every kind of document the site serves, described once: where it lives and how it is made.

A :class:`Kind` joins a :class:`~feeds.links.Place` (the path, URL, route and export file of
its documents) with how one of them is made: what its bytes depend on (its *inputs*, compared
to tell whether a cached copy still holds) and how it is rendered. The server
(:mod:`feeds.http`), the export (:mod:`feeds.export`) and the purge inventory
(:mod:`feeds.inventory`) all go through :data:`KINDS`.

:func:`inputs` runs inside one read transaction of the index (``reader``); the render it returns
needs no index, only the entries already selected and their bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from . import links, naming, opml, pages, sitemaps
from .archives import ARCHIVE_MAX_AGE, archive_pages, archive_slice
from .articles import Meta
from .bodies import Bodies
from .config import FeedSpec, SiteConfig
from .documents import HTML, Document, make_document
from .errors import NotFound, Unsettled
from .links import DocLinks, Place, archive_links, subscription_links
from .naming import Names, display
from .render import EPOCH, MEDIA_TYPES, Format, last_modified, render_feed
from .store import TAG, TOPIC, IndexStore, Reader

log = logging.getLogger(__name__)
FORMATS = tuple(Format)
Params = Mapping[str, str]
Made = tuple[Hashable, Callable[[], Document]]


@dataclass(frozen=True)
class View:
    """What every document depends on besides its own entries; replaced on any change.

    ``valid_until``: when selections next change without any file changing (an embargo ends, an
    entry comes out of a feed's ``delay`` or leaves its ``window``, or the news sitemap's oldest
    article turns 48 hours old).
    """

    source: object  # the published snapshot this view was computed from (compared by identity)
    store: IndexStore  # that snapshot's index
    config: SiteConfig
    valid_until: datetime | None
    specs: Mapping[str, FeedSpec]
    newest: datetime

    def spec(self, name: str, fmt: str | None = None) -> FeedSpec:
        spec = self.specs.get(name)
        if spec is None or (fmt is not None and fmt not in FORMATS):
            raise NotFound(f"no feed {name}" + (f".{fmt}" if fmt else ""))
        return spec


@dataclass(frozen=True)
class Making:
    """What making one document may use."""

    view: View
    reader: Reader
    bodies: Bodies
    now: datetime
    sitemap_urls: int = sitemaps.PAGE_URLS  # URLs per sitemap page (lowered in tests)

    @property
    def config(self) -> SiteConfig:
        return self.view.config


@dataclass(frozen=True)
class Kind:
    """One kind of document: where it lives, its ledger key, and how one is made.

    ``recent``: only the most recently asked documents of this kind are kept rendered (there
    may be millions); the others are always kept. ``make``: what the document's bytes depend on
    (compared to tell whether a cached copy still holds) and how to render it. ``override``: an
    operator's own file in ``static/`` that, while it exists, is served in its place.
    """

    place: Place
    key: Callable[[Params], str]
    make: Callable[[Making, Params], Made] | None  # None: a file served as it is (static/)
    recent: bool = False
    override: str | None = None  # a file of static/ served instead while it exists


def _stale(source: FeedSpec | SiteConfig) -> tuple[int, int]:
    return source.stale_while_revalidate, source.stale_if_error


def _versions(entries: list[Meta]) -> tuple[tuple[str, str, object, int], ...]:
    """What the entries' part of a document depends on: the files, and (in the digest) the
    pictures beside them, which change an entry without changing its file."""
    return tuple((m.id, m.path, m.version, m.digest) for m in entries)


def _names(m: Making, entries: list[Meta]) -> Names:
    """The display names of the topics and tags ``entries`` carry (part of a document's inputs)."""
    topics, tags = naming.slugs(entries)
    return naming.names(m.config, m.reader.spellings(TOPIC, topics), m.reader.spellings(TAG, tags))


def feed_document(
    bodies: Bodies,
    config: SiteConfig,
    spec: FeedSpec,
    fmt: Format,
    entries: list[Meta],
    natural: datetime,
    doc_links: DocLinks,
    max_age: int,
    names: Names,
) -> Document:
    """A feed document in one format; incomplete (never kept) if an entry's body is unsettled."""
    articles = [bodies.article(m) for m in entries]
    shown = [display(a, names) for a in articles if a is not None]
    fitted = render_feed(fmt, spec, config, shown, doc_links, natural)
    if fitted.note:
        log.info("%s: %s", doc_links.self_url, fitted.note)
    return make_document(
        fitted.body,
        MEDIA_TYPES[fmt],
        natural,
        max_age,
        complete=len(shown) == len(entries),
        note=fitted.note,
        links=tuple(("hub", hub) for hub in doc_links.hubs)
        + ((("self", doc_links.self_url),) if doc_links.hubs else ()),
        stale=_stale(spec),
    )


def _feed(m: Making, p: Params) -> Made:
    spec, form = m.view.spec(p["name"], p["fmt"]), Format(p["fmt"])
    entries = m.reader.select(spec, m.now)
    doc_links = subscription_links(
        m.config, spec.name, form, archive_pages(m.reader.total(spec, m.now), spec.limit)
    )
    natural = last_modified(entries, m.view.newest)
    names = _names(m, entries)
    key = (m.config, spec, form, natural, doc_links, _versions(entries), names)
    return key, lambda: feed_document(
        m.bodies, m.config, spec, form, entries, natural, doc_links, spec.max_age, names
    )


def _archive(m: Making, p: Params) -> Made:
    spec, form, page = m.view.spec(p["name"], p["fmt"]), Format(p["fmt"]), int(p["page"])
    total = m.reader.total(spec, m.now)
    count = archive_pages(total, spec.limit)
    if not 1 <= page <= count:
        raise NotFound(f"no archive page {page} of feed {spec.name}")
    part = archive_slice(total, spec.limit, page)
    entries = m.reader.window(spec, m.now, part.start, part.stop)
    doc_links = archive_links(m.config, spec.name, form, page, count)
    natural = last_modified(entries)
    max_age = ARCHIVE_MAX_AGE if page < count else spec.max_age
    names = _names(m, entries)
    key = (m.config, spec, form, doc_links, _versions(entries), names)
    return key, lambda: feed_document(
        m.bodies, m.config, spec, form, entries, natural, doc_links, max_age, names
    )


def _feed_page(m: Making, p: Params) -> Made:
    spec = m.view.spec(p["name"])
    entries = m.reader.select(spec, m.now)
    archived = archive_pages(m.reader.total(spec, m.now), spec.limit)
    natural = last_modified(entries, m.view.newest)
    names = _names(m, entries)
    key = (m.config, spec, archived, _versions(entries), names)
    return key, lambda: make_document(
        pages.render_feed_page(m.config, spec, [display(e, names) for e in entries], archived),
        HTML,
        natural,
        spec.max_age,
        stale=_stale(spec),
    )


def _opml(m: Making, p: Params) -> Made:
    specs, newest = tuple(m.view.specs.values()), m.view.newest
    return (m.config, specs, newest), lambda: make_document(
        opml.render_opml(m.config, specs, newest),
        opml.OPML_MEDIA_TYPE,
        newest,
        m.config.max_age,
        stale=_stale(m.config),
    )


def _article(m: Making, p: Params) -> Made:
    meta = m.reader.article(p["id"], m.now)
    if meta is None:
        raise NotFound(f"no article {p['id']}")
    slugs = meta.topic_slugs  # a property: a set made per call, and a site has hundreds of feeds
    feeds = [s for s in m.view.specs.values() if s.is_topic_feed and s.topics[0] in slugs]
    names = _names(m, [meta])
    key = (m.config, meta.id, meta.path, meta.version, meta.digest, tuple(s.name for s in feeds), names)

    def render() -> Document:
        article = m.bodies.article(meta)
        if article is None:
            raise Unsettled(f"article {meta.id} is being written; try again in a moment")
        body = pages.render_article(m.config, display(article, names), feeds)
        return make_document(body, HTML, meta.updated, m.config.max_age, stale=_stale(m.config))

    return key, render


def _index(m: Making, p: Params) -> Made:
    shown, _ = m.reader.published(m.now, None, m.config.limit)
    specs = list(m.view.specs.values())
    names = _names(m, shown)
    key = (m.config, tuple(specs), m.view.newest, _versions(shown), names)
    return key, lambda: make_document(
        pages.render_index(m.config, specs, [display(e, names) for e in shown]),
        HTML,
        m.view.newest,
        m.config.max_age,
        stale=_stale(m.config),
    )


def _site_urls(m: Making) -> list[sitemaps.Url]:
    """The pages besides articles, listed after them: the index, then each feed's page."""
    return [(links.INDEX.url(m.config), m.view.newest)] + [
        (links.feed_page_url(m.config, name), None) for name in sorted(m.view.specs)
    ]


def _sitemap_urls(m: Making, start: int, stop: int, articles: int) -> Iterator[sitemaps.Url]:
    """URLs ``start`` to ``stop`` of the sitemap: articles oldest first, then the site's pages.

    Articles that live elsewhere (``link``) are left out: their page names that URL canonical.
    """
    if start < articles:
        for permalink, updated, here in m.reader.oldest_first(m.now, start, min(stop, articles) - start):
            if here:
                yield permalink, datetime.fromtimestamp(updated, UTC)
    yield from _site_urls(m)[max(start - articles, 0) : max(stop - articles, 0)]


def sitemap_size(view: View, reader: Reader, now: datetime, per_page: int) -> tuple[int, int, int]:
    """(articles, URLs in all, pages: 0 while ``/sitemap.xml`` holds them all itself)."""
    articles = reader.published_count(now)
    total = articles + 1 + len(view.specs)
    return articles, total, sitemaps.page_count(total, per_page)


def _sitemap_size(m: Making) -> tuple[int, int, int]:
    return sitemap_size(m.view, m.reader, m.now, m.sitemap_urls)


def _xml(m: Making, body: bytes, modified: datetime, max_age: int | None = None) -> Document:
    return make_document(
        body,
        sitemaps.MEDIA_TYPE,
        modified,
        m.config.max_age if max_age is None else max_age,
        stale=_stale(m.config),
    )


def _sitemap(m: Making, p: Params) -> Made:
    articles, total, count = _sitemap_size(m)
    if count:
        key: Hashable = (m.config, count)
        body = sitemaps.render_index(m.config, count)
    else:  # rendered here, in the read transaction: 50,000 URLs are kept as bytes, never as rows
        body = sitemaps.render_urlset(_sitemap_urls(m, 0, total, articles))
        key = (m.config, body)
    return key, lambda: _xml(m, body, m.view.newest)


def _sitemap_page(m: Making, p: Params) -> Made:
    page = int(p["page"])
    articles, total, count = _sitemap_size(m)
    if not 1 <= page <= count:
        raise NotFound(f"no sitemap page {page}")
    part = sitemaps.page_slice(total, m.sitemap_urls, page)
    newest = [EPOCH]
    body = sitemaps.render_urlset(_noting(_sitemap_urls(m, part.start, part.stop, articles), newest))
    full = part.stop <= articles  # articles only, each older than any to come: kept a day
    return (m.config, body), lambda: _xml(m, body, newest[0], ARCHIVE_MAX_AGE if full else None)


def _noting(urls: Iterator[sitemaps.Url], newest: list[datetime]) -> Iterator[sitemaps.Url]:
    """``urls`` as they are, noting the newest lastmod in ``newest[0]`` on the way."""
    for url, lastmod in urls:
        if lastmod is not None and lastmod > newest[0]:
            newest[0] = lastmod
        yield url, lastmod


def _news(m: Making, p: Params) -> Made:
    entries = m.reader.recent(m.now, m.now - sitemaps.NEWS_WINDOW, sitemaps.NEWS_MAX)
    key = (m.config, tuple(entries))
    natural = last_modified(entries, m.view.newest)
    return key, lambda: _xml(m, sitemaps.render_news(m.config, entries), natural)


def _robots(m: Making, p: Params) -> Made:
    return m.config, lambda: make_document(
        sitemaps.render_robots(m.config),
        sitemaps.ROBOTS_MEDIA_TYPE,
        m.view.newest,
        m.config.max_age,
        stale=_stale(m.config),
    )


FEED = Kind(links.FEED, lambda p: f"{p['name']}.{p['fmt']}", _feed)
ARCHIVE = Kind(links.ARCHIVE, lambda p: f"{p['name']}/{p['page']}.{p['fmt']}", _archive, recent=True)
FEED_PAGE = Kind(links.FEED_PAGE, lambda p: p["name"], _feed_page)
OPML = Kind(links.OPML, lambda p: "", _opml)
ARTICLE = Kind(links.ARTICLE, lambda p: p["id"], _article, recent=True)
INDEX = Kind(links.INDEX, lambda p: "", _index)
STATIC = Kind(links.STATIC, lambda p: p["rel"], None)  # read by feeds.assets
MEDIA = Kind(links.MEDIA, lambda p: p["rel"], None)  # pictures beside the articles, read by feeds.assets
ROBOTS = Kind(links.ROBOTS, lambda p: "", _robots, override="robots.txt")
SITEMAP = Kind(links.SITEMAP, lambda p: "", _sitemap)
SITEMAP_PAGE = Kind(links.SITEMAP_PAGE, lambda p: p["page"], _sitemap_page)
NEWS_SITEMAP = Kind(links.NEWS_SITEMAP, lambda p: "", _news)
KINDS = (
    FEED,
    ARCHIVE,
    FEED_PAGE,
    OPML,
    ARTICLE,
    INDEX,
    STATIC,
    MEDIA,
    ROBOTS,
    SITEMAP,
    SITEMAP_PAGE,
    NEWS_SITEMAP,
)


def route(path: str) -> tuple[Kind, dict[str, str]] | None:
    """The kind and parameters of a request path ('/feeds/alle.rss'), if it names a document."""
    if not path.startswith("/"):
        return None
    rel = path[1:]
    for kind in KINDS:
        found = kind.place.match(rel)
        if found is not None:
            return kind, found
    return None
