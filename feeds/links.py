"""Where each document lives, and what one document links to: shared by every format.

A feed document names itself, its page for people, the WebSub hubs and, for RFC 5005 archived
feeds, its neighbours. All of these are absolute URLs under ``site.url``, computed here once so
that RSS, Atom, JSON Feed, the pages and the export agree on every address.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

from .config import SiteConfig


def feed_url(site: SiteConfig, name: str, fmt: str) -> str:
    """The subscription document: ``/feeds/<name>.<fmt>``."""
    return urljoin(site.url, f"feeds/{name}.{fmt}")


def feed_page_url(site: SiteConfig, name: str) -> str:
    """The feed's page for people: ``/feeds/<name>``."""
    return urljoin(site.url, f"feeds/{name}")


def archive_url(site: SiteConfig, name: str, page: int, fmt: str) -> str:
    """Archive page ``page`` (1 is the oldest) of a feed: ``/feeds/<name>/archive/<page>.<fmt>``."""
    return urljoin(site.url, f"feeds/{name}/archive/{page}.{fmt}")


def opml_url(site: SiteConfig) -> str:
    return urljoin(site.url, "feeds.opml")


@dataclass(frozen=True)
class DocLinks:
    """The links one feed document carries (all absolute).

    ``prev_archive`` points to older entries (JSON Feed calls it ``next_url``), ``next_archive``
    to newer ones; ``current`` and ``archive`` are set only on archive pages (RFC 5005 §4).
    """

    self_url: str
    html_url: str
    hubs: tuple[str, ...] = ()
    prev_archive: str | None = None
    next_archive: str | None = None
    current: str | None = None

    @property
    def archive(self) -> bool:
        return self.current is not None


def subscription_links(site: SiteConfig, name: str, fmt: str, pages: int) -> DocLinks:
    """Links of ``/feeds/<name>.<fmt>`` when the feed has ``pages`` archive pages."""
    return DocLinks(
        self_url=feed_url(site, name, fmt),
        html_url=feed_page_url(site, name),
        hubs=site.hubs,
        prev_archive=archive_url(site, name, pages, fmt) if pages else None,
    )


def archive_links(site: SiteConfig, name: str, fmt: str, page: int, pages: int) -> DocLinks:
    """Links of archive page ``page`` of ``pages``: hubs are for subscription documents only."""
    return DocLinks(
        self_url=archive_url(site, name, page, fmt),
        html_url=feed_page_url(site, name),
        prev_archive=archive_url(site, name, page - 1, fmt) if page > 1 else None,
        next_archive=archive_url(site, name, page + 1, fmt) if page < pages else None,
        current=feed_url(site, name, fmt),
    )
