"""Where every document lives, and what one feed document links to.

Each kind of document has one :class:`Place`: a template of its path under ``site.url``, from
which its absolute URL, the route that answers it (the same path, matched whole) and its file in
a static export all follow, so the server, the export, the purge inventory, the pages and every
feed format agree on every address. :mod:`feeds.catalogue` adds how each kind is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, urljoin

from .config import SiteConfig

FEED_FORMATS = ("rss", "atom", "json")
_PARTS = {
    "name": r"[a-z0-9][a-z0-9_-]*",  # a feed's name (a topic slug or an operator's name)
    "fmt": "|".join(FEED_FORMATS),
    "page": r"[1-9][0-9]{0,8}",
    "id": r".+",  # an article id: any text, "/" included (the path arrives decoded)
    "rel": r".+",  # a file under static/, or a picture under the articles folder
}
_FIELD = re.compile(r"\{(\w+)\}")


def id_path(article_id: str) -> str:
    """An article id as it appears in URLs and entry ids (ids may hold any Unicode)."""
    return quote(article_id, safe="/~.-_")


# A relative path of plain segments (what id_path and the templates make): nothing in it that
# urljoin resolves (no "." or ".." segment, no empty one, no query, fragment or scheme).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_~%-][A-Za-z0-9_.~%-]*(?:/[A-Za-z0-9_~%-][A-Za-z0-9_.~%-]*)*")


def join(base: str, path: str) -> str:
    """``urljoin(base, path)``, without its parsing where the answer is ``base + path`` (a cold
    start makes a million permalinks; urljoin was a fifteenth of parsing an article)."""
    if _PLAIN_PATH.fullmatch(path) and _appends(base):
        return base + path
    return urljoin(base, path)


@lru_cache(maxsize=16)
def _appends(base: str) -> bool:
    """Whether urljoin appends plain paths to ``base`` as they are. What it does to the base's
    own part (drop a query, a last segment without "/", resolve dot or empty segments) does not
    depend on a plain path, so one such path tells for all."""
    return urljoin(base, "a/b.c") == base + "a/b.c"


@dataclass(frozen=True)
class Place:
    """Where documents of one kind live: ``template`` under the site, ``export`` in an export."""

    kind: str
    template: str
    export: str
    route: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "route", re.compile(_pattern(self.template)))

    def path(self, **params: object) -> str:
        """The path under the site, without the leading '/' (percent-encoded)."""
        return self.template.format(**{k: id_path(str(v)) if k == "id" else v for k, v in params.items()})

    def url(self, site: SiteConfig, **params: object) -> str:
        return join(site.url, self.path(**params))

    def file(self, **params: object) -> str:
        """The file of this document in a static export (ids as they are: a file system's name)."""
        return self.export.format(**params)

    def match(self, path: str) -> dict[str, str] | None:
        """The parameters of ``path`` (decoded, after the site's root), if it is one of ours."""
        found = self.route.fullmatch(path)
        return found.groupdict() if found is not None else None


def _pattern(template: str) -> str:
    out, last = [], 0
    for found in _FIELD.finditer(template):
        out.append(re.escape(template[last : found.start()]))
        out.append(f"(?P<{found[1]}>{_PARTS[found[1]]})")
        last = found.end()
    out.append(re.escape(template[last:]))
    return "".join(out)


FEED = Place("feed", "feeds/{name}.{fmt}", "feeds/{name}.{fmt}")
ARCHIVE = Place("archive", "feeds/{name}/archive/{page}.{fmt}", "feeds/{name}/archive/{page}.{fmt}")
FEED_PAGE = Place("feedpage", "feeds/{name}", "feeds/{name}.html")  # the export serves it for /feeds/<name>
OPML = Place("opml", "feeds.opml", "feeds.opml")
ARTICLE = Place("page", "articles/{id}", "articles/{id}.html")
INDEX = Place("index", "", "index.html")
STATIC = Place("asset", "static/{rel}", "static/{rel}")
# Pictures beside the articles (feeds.pictures): not under articles/, where any path is an id.
MEDIA = Place("media", "media/{rel}", "media/{rel}")
ROBOTS = Place("robots", "robots.txt", "robots.txt")
SITEMAP = Place("sitemap", "sitemap.xml", "sitemap.xml")
SITEMAP_PAGE = Place("sitemappage", "sitemaps/{page}.xml", "sitemaps/{page}.xml")
NEWS_SITEMAP = Place("newssitemap", "sitemap-news.xml", "sitemap-news.xml")


def feed_url(site: SiteConfig, name: str, fmt: str) -> str:
    """The subscription document: ``/feeds/<name>.<fmt>``."""
    return FEED.url(site, name=name, fmt=fmt)


def feed_page_url(site: SiteConfig, name: str) -> str:
    """The feed's page for people: ``/feeds/<name>``."""
    return FEED_PAGE.url(site, name=name)


def archive_url(site: SiteConfig, name: str, page: int, fmt: str) -> str:
    """Archive page ``page`` (1 is the oldest) of a feed: ``/feeds/<name>/archive/<page>.<fmt>``."""
    return ARCHIVE.url(site, name=name, page=page, fmt=fmt)


def opml_url(site: SiteConfig) -> str:
    return OPML.url(site)


def permalink(site: SiteConfig, article_id: str) -> str:
    """An article's own page."""
    return ARTICLE.url(site, id=article_id)


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
