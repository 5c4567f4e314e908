"""Every document the site serves, and how to tell that it changed as cheaply as possible.

Caches in front hold every feed, archive page, page, the index, the OPML list, the sitemaps,
robots.txt and the pictures entries show; when a change alters some of them, exactly those must
be purged. Feeds, feed pages, the index, the OPML list, robots.txt, ``/sitemap.xml`` and the news
sitemap are few and rendered anyway: their ETag tells. Article and archive pages can number
millions and are never rendered for this: each comes with a ``key`` of everything its bytes
depend on (the config, and the article files' content digests and dates; for an archive page
also whether a newer page follows). So do the full pages of a large sitemap (50,000 articles
each), keyed on the way through the article pages' keys. Touching a file without changing its
bytes moves no key. Pictures beside the articles that entries show are known by their file's
version.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
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
from .documents import Document
from .errors import NotFound, Unsettled
from .pictures import media_url
from .site import Site
from .sitemaps import page_slice
from .store import TAG, TOPIC, Slugs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One document, known by its ``key``, or else by ``etag()``, which renders it if needed
    (None: it cannot be had whole right now)."""

    url: str
    key: Hashable | None = None
    etag: Callable[[], str | None] | None = None


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


def _shown(slugs: Slugs, names: Spelled) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names an entry's topics and tags are shown under: a page changes when they do."""
    return tuple(names[0].get(s, s) for s in slugs[0]), tuple(names[1].get(s, s) for s in slugs[1])


def archive_versions(site: Site, name: str, names: Spelled | None = None) -> list[tuple[object, ...]]:
    """For each archive page of the feed (1 first), what its bytes depend on, without rendering.

    Equal tuples mean equal documents; a purge needs to know which of thousands of pages
    changed, and rendering them all to find out would cost more than the purge.
    """
    spec = site.view().spec(name)
    names = names or spelled(site)
    with site.read() as (reader, now):
        history = [(*v[:4], _shown(v[4], names)) for v in reader.versions(spec, now)]
    count = archive_pages(len(history), spec.limit)
    return [
        (page < count, tuple(history[archive_slice(len(history), spec.limit, page)]))
        for page in range(1, count + 1)
    ]


def _made(site: Site, kind: Kind, **params: object) -> Entry:
    """A document known by its ETag, rendered (or taken from the cache) when asked."""
    text = {key: str(value) for key, value in params.items()}
    return Entry(kind.place.url(site.config, **params), etag=_etag_of(partial(site.document, kind, text)))


def feed_urls(site: Site) -> list[str]:
    return [FEED.place.url(site.config, name=name, fmt=fmt) for name in site.specs for fmt in FORMATS]


def subscription_documents(site: Site) -> Iterator[Entry]:
    for name in list(site.specs):
        for fmt in FORMATS:
            yield _made(site, FEED, name=name, fmt=fmt)


def other_documents(site: Site) -> Iterator[Entry]:
    """Every document a cache may hold besides the subscription documents."""
    config = site.config
    setting = digest(config)
    names = spelled(site)
    yield _made(site, INDEX)
    yield _made(site, OPML)
    for name in list(site.specs):
        try:
            versions = archive_versions(site, name, names)
        except NotFound:
            continue
        yield _made(site, FEED_PAGE, name=name)
        for page, version in enumerate(versions, start=1):
            for fmt in FORMATS:
                yield Entry(ARCHIVE.place.url(config, name=name, page=page, fmt=fmt), key=(setting, version))
    yield _made(site, ROBOTS)
    yield _made(site, SITEMAP)
    yield _made(site, NEWS_SITEMAP)
    pages = _SitemapPages(site)
    for permalink, path, content, published, updated, slugs in site.page_keys():
        pages.note(permalink, content, updated)
        yield Entry(permalink, key=(setting, path, content, published, updated, _shown(slugs, names)))
    yield from pages.entries(setting)
    yield from picture_documents(site)


def picture_documents(site: Site) -> Iterator[Entry]:
    """The pictures beside the articles that entries show, and those this worker saw change
    (a picture only a body shows is in no row), known by their file's version (one ``stat``
    each): a picture replaced in place is purged like a changed document."""
    config = site.config
    prefix = media_url(config, "")
    with site.read() as (reader, _):
        urls = {image for _, image, _, _ in reader.pictured(prefix)}
    urls |= {media_url(config, rel) for rel in site.live.pictures_seen}
    for url in sorted(urls):
        try:
            st = os.stat(config.articles_dir / unquote(url[len(prefix) :]))
        except (OSError, ValueError):
            continue  # gone: purged as a vanished document
        yield Entry(url, key=(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


class _SitemapPages:
    """The pages of a large sitemap, keyed from the article pages' walk (newest first) where
    they hold articles only; the last pages, which also list the site's pages, are rendered."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.per_page = site.sitemap_urls
        view = site.view()
        with site.read() as (reader, now):
            self.articles, _, self.count = sitemap_size(view, reader, now, self.per_page)
        self.full = self.articles // self.per_page if self.count else 0  # pages of articles only
        self.digests = [hashlib.sha256() for _ in range(self.full)]
        self.seen = 0

    def note(self, permalink: str, content: int, updated: int) -> None:
        position = self.articles - 1 - self.seen  # oldest first
        self.seen += 1
        if 0 <= position < self.full * self.per_page:
            self.digests[position // self.per_page].update(f"{permalink}\0{content}\0{updated}\n".encode())

    def entries(self, setting: str) -> Iterator[Entry]:
        config = self.site.config
        keyed = self.full if self.seen == self.articles else 0  # else changed mid-walk: render all
        for page in range(1, self.count + 1):
            if page <= keyed:
                part = page_slice(self.articles, self.per_page, page)
                key = (setting, part.start, part.stop, self.digests[page - 1].hexdigest())
                yield Entry(SITEMAP_PAGE.place.url(config, page=page), key=key)
            else:
                yield _made(self.site, SITEMAP_PAGE, page=page)


def path_of(url: str) -> str:
    """What a client asks a cache for: the URL's path (documents have no query)."""
    return urlsplit(url).path or "/"
