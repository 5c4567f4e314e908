"""Every document the site serves, and how to learn its ETag as cheaply as possible.

Caches in front hold every feed, archive page, page, the index and the OPML list; when a change
alters some of them, exactly those must be purged. Feeds, feed pages, the index and the OPML list
are few and rendered anyway. Article and archive pages can number millions: each comes with a
``key`` of what its bytes depend on (the article file's version and the config; the page's
entries and whether a newer page follows), and is rendered only when its key moved, so touching
a file without changing it, or an edit that leaves a page's bytes alone, purges nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from .articles import permalink
from .documents import Document
from .errors import NotFound, Unsettled
from .links import archive_url, feed_page_url, feed_url, opml_url
from .site import FORMATS, Site

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One document: ``etag()`` renders it if needed (None: it cannot be had whole right now)."""

    url: str
    key: Hashable | None  # None: no cheaper test than the ETag itself
    etag: Callable[[], str | None]


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


def feed_urls(site: Site) -> list[str]:
    return [feed_url(site.config, name, fmt) for name in site.specs for fmt in FORMATS]


def subscription_documents(site: Site) -> Iterator[Entry]:
    config = site.config
    for name in list(site.specs):
        for fmt in FORMATS:
            yield Entry(feed_url(config, name, fmt), None, _etag_of(partial(site.feed, name, fmt)))


def other_documents(site: Site) -> Iterator[Entry]:
    """Every document a cache may hold besides the subscription documents."""
    config = site.config
    setting = digest(config)
    yield Entry(config.url, None, _etag_of(site.index_page))
    yield Entry(opml_url(config), None, _etag_of(site.opml))
    for name in list(site.specs):
        try:
            versions = site.archive_versions(name)
        except NotFound:
            continue
        yield Entry(feed_page_url(config, name), None, _etag_of(partial(site.feed_page, name)))
        for page, version in enumerate(versions, start=1):
            for fmt in FORMATS:
                render = _etag_of(partial(site.archive, name, page, fmt))
                yield Entry(archive_url(config, name, page, fmt), (setting, version), render)
    for meta in site.published():  # a page shows its article and the feeds of its topics
        render = _etag_of(partial(site.page, meta.id))
        yield Entry(permalink(config, meta.id), (setting, meta.path, meta.version), render)


def path_of(url: str) -> str:
    """What a client asks a cache for: the URL's path (documents have no query)."""
    return urlsplit(url).path or "/"
