"""Every document the site serves, and how to tell that it changed as cheaply as possible.

Caches in front hold every feed, archive page, page, the index and the OPML list; when a change
alters some of them, exactly those must be purged. Feeds, feed pages, the index and the OPML list
are few and rendered anyway: their ETag tells. Article and archive pages can number millions and
are never rendered for this: each comes with a ``key`` of everything its bytes depend on (the
config, and the article files' content digests and dates; for an archive page also whether a
newer page follows). Touching a file without changing its bytes moves no key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from .documents import Document
from .errors import NotFound, Unsettled
from .links import archive_url, feed_page_url, feed_url, opml_url
from .site import FORMATS, Site

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


def feed_urls(site: Site) -> list[str]:
    return [feed_url(site.config, name, fmt) for name in site.specs for fmt in FORMATS]


def subscription_documents(site: Site) -> Iterator[Entry]:
    config = site.config
    for name in list(site.specs):
        for fmt in FORMATS:
            yield Entry(feed_url(config, name, fmt), etag=_etag_of(partial(site.feed, name, fmt)))


def other_documents(site: Site) -> Iterator[Entry]:
    """Every document a cache may hold besides the subscription documents."""
    config = site.config
    setting = digest(config)
    yield Entry(config.url, etag=_etag_of(site.index_page))
    yield Entry(opml_url(config), etag=_etag_of(site.opml))
    for name in list(site.specs):
        try:
            versions = site.archive_versions(name)
        except NotFound:
            continue
        yield Entry(feed_page_url(config, name), etag=_etag_of(partial(site.feed_page, name)))
        for page, version in enumerate(versions, start=1):
            for fmt in FORMATS:
                yield Entry(archive_url(config, name, page, fmt), key=(setting, version))
    for permalink, path, content, published, updated in site.page_keys():  # and its topics' feeds
        yield Entry(permalink, key=(setting, path, content, published, updated))


def path_of(url: str) -> str:
    """What a client asks a cache for: the URL's path (documents have no query)."""
    return urlsplit(url).path or "/"
