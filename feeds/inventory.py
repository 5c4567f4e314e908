"""Every document the site serves, and how to tell that it changed without rendering it.

Caches in front hold every feed, archive page, page, the index, the OPML list, the sitemaps,
robots.txt and the pictures entries show; when a change alters some of them, exactly those must
be purged. Each document comes with a ``key`` of what its bytes show, read from the index
(:class:`~feeds.store.queries.Version`): the config, and of each entry only what that kind of
document writes of it. A feed carrying content keys its entries with their body's digest, a
summary-only feed with their summary's, a feed's page and the index with their titles, dates
and topics; an article page with everything of its article but the tags. So a key moves when,
and only when, the document's bytes change: an edit of a body below its summary moves no
summary-only feed, no page listing it and not the index; touching a file without changing it
moves nothing. The notifier trusts a moved key (see :mod:`feeds.notify`) and renders nothing
but robots.txt, which a file of ``static/`` may stand in for. Pictures beside the articles that
entries show are known by their file's version.

The one exception is a feed trimmed to its ``max_bytes`` (see :func:`version`): an edit of
what it left out moves its key, a purge too many.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from urllib.parse import unquote, urlsplit

from .archives import archive_pages, archive_slice
from .catalogue import (
    ARCHIVE,
    FEED,
    FEED_PAGE,
    FORMATS,
    INDEX,
    NEWS_SITEMAP,
    OPML,
    ROBOTS,
    SITEMAP,
    SITEMAP_PAGE,
    Kind,
    sitemap_size,
)
from .config import FeedSpec, SiteConfig
from .documents import Document
from .errors import NotFound, Unsettled
from .pictures import media_url
from .site import Site
from .sitemaps import NEWS_MAX, NEWS_WINDOW, page_slice
from .store import TAG, TOPIC, PageKey, Reader, Slugs
from .store.queries import Version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One document, known by its ``key``, or else by ``etag()``, which renders it if needed
    (None: it cannot be had whole right now). ``exact``: the key moves only when the bytes do,
    so a moved key is trusted; otherwise a moved key has the document rendered (if it can be:
    ``etag``). ``recorded``: one of the few documents (feeds, their pages, the site's) whose
    version the ledger keeps from the first look on, so that a worker taking over the
    announcing finds what changed since its predecessor's last look; the many (article and
    archive pages) get a row when they first change."""

    url: str
    key: Hashable | None = None
    etag: Callable[[], str | None] | None = None
    recorded: bool = False
    exact: bool = True


def _etag_of(render: Callable[[], Document]) -> Callable[[], str | None]:
    def etag() -> str | None:
        try:
            doc = render()
        except (NotFound, Unsettled):  # gone since the list was taken, or being written
            return None
        return doc.etag if doc.complete else None

    return etag


def digest(value: Hashable) -> str:
    """The same in every worker of the machine: ``repr`` is stable where ``hash()`` is not."""
    return hashlib.sha256(repr(value).encode()).hexdigest()[:32]


Spelled = tuple[dict[str, str], dict[str, str]]  # display names of topics and of tags, by slug


def spelled(site: Site) -> Spelled:
    with site.read() as (reader, _):
        return reader.all_spellings(TOPIC), reader.all_spellings(TAG)


def shown(slugs: Slugs, names: Spelled) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names an entry's topics and tags are shown under: a page changes when they do."""
    return tuple(names[0].get(s, s) for s in slugs[0]), tuple(names[1].get(s, s) for s in slugs[1])


def archive_versions(
    site: Site, name: str, names: Spelled | None = None
) -> list[tuple[bool, tuple[object, ...]]]:
    """For each archive page of the feed (1 first), what its bytes depend on, without rendering.

    Equal tuples mean equal documents; a purge needs to know which of thousands of pages
    changed, and rendering them all to find out would cost more than the purge.
    """
    spec = site.view().spec(name)
    names = names or spelled(site)
    with site.read() as (reader, now):
        history = [version(v, names, spec) for v in reader.versions(spec, now)]
    count = archive_pages(len(history), spec.limit)
    return [
        (page < count, tuple(history[archive_slice(len(history), spec.limit, page)]))
        for page in range(1, count + 1)
    ]


def version(v: Version, names: Spelled, spec: FeedSpec) -> tuple[object, ...]:
    """What an entry shows in a feed's documents: everything a feed writes of it (the names of
    its topics and tags) and its body and summary: where the feed carries content, the body by
    digest with its path (pictures are found from there) and the summary given in front matter,
    which make the summary too; in a summary-only feed the summary by digest. A summary-only
    feed does not change with an edit of the body that leaves the summary as it was, and so is
    not purged.

    Not exact (see :func:`exact`) while an entry's summary digest is unknown (a cold start does
    not work it out): a summary-only feed then keys it by its body, which may change below the
    summary. And a feed trimmed to its ``max_bytes`` leaves out what its key still holds (the
    content of its oldest entries, or the entries themselves), so an edit of those purges a feed
    whose bytes stayed (one purge too many, never one missed).
    """
    shows = (
        v.id,
        v.published,
        v.updated,
        shown(v.slugs, names),
        v.title,
        v.url,
        v.authors,
        v.language,
        v.image,
        v.image_type,
        v.image_length,
        v.image_alt,
        v.dated_by,
    )
    if spec.content == "full":
        return (*shows, v.path, v.body, v.summary)
    return (*shows, v.teaser or ("body", v.path, v.body, v.summary))


def exact(versions: Iterable[Version], spec: FeedSpec) -> bool:
    """Whether a document of ``spec`` showing ``versions`` has a key that moves only when its
    bytes do: not while an entry of a summary-only feed has no summary digest yet."""
    return spec.content == "full" or all(v.teaser for v in versions)


def listed(v: Version, names: Spelled, picture: bool) -> tuple[object, ...]:
    """What a page listing entries (a feed's page, with their pictures; the index, without)
    shows of one: its link (by id), title, language, date and the names of its topics."""
    line = (v.id, v.title, v.language, v.published, shown((v.slugs[0], ()), names)[0])
    return (*line, v.image, v.image_alt) if picture else line


def feed_documents(
    site: Site, reader: Reader, now: datetime, name: str, spec: FeedSpec, setting: str, names: Spelled
) -> list[Entry]:
    """A feed's subscription documents and its page, each by what it shows: its newest entries
    (the page only their titles, dates and pictures), and whether (and how far) an archive lies
    behind them. A feed without entries is dated by the site's newest change."""
    latest = reader.latest(spec, now)
    archived = 0 if spec.span else archive_pages(reader.total(spec, now), spec.limit)
    shows = tuple(version(v, names, spec) for v in latest)
    key = (setting, name, archived, shows, None if latest else site.view().newest)
    page = (setting, name, archived, tuple(listed(v, names, True) for v in latest))
    whole = exact(latest, spec)
    found = [made(site, FEED, key, whole, name=name, fmt=fmt) for fmt in FORMATS]
    return [*found, made(site, FEED_PAGE, page, name=name)]


def site_documents(
    site: Site, reader: Reader, now: datetime, setting: str, names: Spelled, listing: bool = True
) -> list[Entry]:
    """The index, the OPML list, robots.txt and the sitemaps, by what they show: the index its
    feeds and newest articles, the OPML list the feeds and the site's newest change (its date).
    ``listing`` False: no article came, went, moved or changed its URL or date, so nothing
    ``/sitemap.xml`` lists changed, and it is left out (keying it reads up to 50,000 rows)."""
    config, view = site.config, site.view()
    newest = view.newest
    shows = tuple(listed(v, names, False) for v in reader.newest_versions(now, config.limit))
    recent = reader.recent_digest(now, now - NEWS_WINDOW, NEWS_MAX)
    titles = tuple(names[0].get(s.topics[0]) for s in view.specs.values() if s.is_topic_feed)  # by topic name
    found = [
        made(site, INDEX, (setting, titles, shows)),
        made(site, OPML, (setting, newest, titles)),
        made(site, ROBOTS),  # static/robots.txt may stand in for it: looked at each time
        made(site, NEWS_SITEMAP, (setting, recent)),
    ]
    if listing:
        articles, _, count = sitemap_size(view, reader, now, site.sitemap_urls)
        pages = tuple(sorted(view.specs))  # each feed's page is listed after the articles
        whole = (count,) if count else (newest, pages, reader.page_digest(now, 0, articles, articles))
        found.append(made(site, SITEMAP, (setting, *whole)))
    return found


def article_page(key: PageKey, setting: str, names: Spelled) -> Entry:
    """An article page, by what it shows: the article (its title, link, authors, picture,
    sources, dates, its body and summary by digest, and the names of its topics; its tags are
    not on the page)."""
    _, path, shows, published, updated, slugs = key
    topics = shown((slugs[0], ()), names)[0]
    return Entry(key[0], key=(setting, path, shows, published, updated, topics))


def archive_entries(
    config: SiteConfig, name: str, page: int, version: tuple[bool, tuple[object, ...]], setting: str
) -> Iterator[Entry]:
    """An archive page in each format. JSON Feed links only to older entries: whether a newer
    page follows is not in its bytes."""
    for fmt in FORMATS:
        key = (setting, version if fmt != "json" else version[1])
        yield Entry(ARCHIVE.place.url(config, name=name, page=page, fmt=fmt), key=key)


def made(site: Site, kind: Kind, key: Hashable | None = None, exact: bool = True, **params: object) -> Entry:
    """A document known by ``key``, what it shows; ``exact``: a key that moves exactly when its
    bytes do, so that it is never rendered to find out. Rendered (or taken from the cache) to
    tell by its ETag when the key moved and is not exact, and at each look without a key
    (robots.txt, which a file of ``static/`` may stand in for)."""
    text = {name: str(value) for name, value in params.items()}
    etag = _etag_of(partial(site.document, kind, text))
    return Entry(kind.place.url(site.config, **params), key, etag, True, exact and key is not None)


def feed_urls(site: Site) -> list[str]:
    return [FEED.place.url(site.config, name=name, fmt=fmt) for name in site.specs for fmt in FORMATS]


def subscription_documents(site: Site) -> Iterator[Entry]:
    """The feeds and their pages (what WebSub hubs are told of, and the cache holds)."""
    view, setting, names = site.view(), digest(site.config), spelled(site)
    with site.read() as (reader, now):
        for name, spec in view.specs.items():
            yield from feed_documents(site, reader, now, name, spec, setting, names)


def other_documents(site: Site) -> Iterator[Entry]:
    """Every document a cache may hold besides the subscription documents."""
    config = site.config
    setting = digest(config)
    names = spelled(site)
    with site.read() as (reader, now):
        yield from site_documents(site, reader, now, setting, names)
    for name in list(site.specs):
        try:
            versions = archive_versions(site, name, names)
        except NotFound:
            continue
        for page, v in enumerate(versions, start=1):
            yield from archive_entries(config, name, page, v, setting)
    for key in site.page_keys():
        yield article_page(key, setting, names)
    yield from sitemap_documents(site, setting)
    yield from picture_documents(site)


def picture_documents(site: Site) -> Iterator[Entry]:
    """The pictures beside the articles that entries show, and those this worker saw change
    (a picture only a body shows is in no row), known by their file's version (one ``stat``
    each): a picture replaced in place is purged like a changed document."""
    prefix = media_url(site.config, "")
    with site.read() as (reader, _):
        images = {image for _, image, _, _ in reader.pictured(prefix)}
    return pictures_of(site, images)


def pictures_of(site: Site, images: Iterable[str]) -> Iterator[Entry]:
    """Those of ``images`` (URLs) that are pictures beside the articles, and those this worker
    saw change, by their file's version."""
    config = site.config
    prefix = media_url(config, "")
    urls = {image for image in images if image.startswith(prefix)}
    urls |= {media_url(config, rel) for rel in site.live.pictures_seen}
    for url in sorted(urls):
        try:
            st = os.stat(config.articles_dir / unquote(url[len(prefix) :]))
        except (OSError, ValueError):
            continue  # gone: purged as a vanished document
        yield Entry(url, key=(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


def sitemap_documents(site: Site, setting: str) -> Iterator[Entry]:
    """The pages of a large sitemap, each keyed by what it lists (one read of its rows, never
    rendered)."""
    per_page = site.sitemap_urls
    view = site.view()
    with site.read() as (reader, now):
        articles, _, count = sitemap_size(view, reader, now, per_page)
        for page in range(1, count + 1):
            yield sitemap_page(site, reader, now, articles, page, setting)


def sitemap_page(site: Site, reader: Reader, now: datetime, articles: int, page: int, setting: str) -> Entry:
    """A page of a large sitemap, by what it lists: articles, and on the last pages the index
    (its ``lastmod``: the newest change) and every feed's page."""
    per_page = site.sitemap_urls
    part = page_slice(articles + 1 + len(site.view().specs), per_page, page)
    stop = min(part.stop, articles)
    rows = reader.page_digest(now, part.start, stop - part.start, articles) if part.start < articles else ""
    view = site.view()
    index = view.newest if part.start <= articles < part.stop else None  # its lastmod: the newest change
    pages = (index, tuple(sorted(view.specs)), part.start - articles) if part.stop > articles else None
    return made(site, SITEMAP_PAGE, (setting, part.start, part.stop, rows, pages), page=page)


def path_of(url: str) -> str:
    """What a client asks a cache for: the URL's path (documents have no query)."""
    return urlsplit(url).path or "/"
