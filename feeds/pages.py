"""HTML pages: the index of feeds, one page per feed and one permalink page per article.

Rendered with Jinja2 outside any request, from the same snapshot as the feeds, so the static
export and the server give the same bytes. Links between pages are root-relative under the
site's path; addresses a person copies into a feed reader are absolute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from . import links as urls
from .articles import Article, Meta
from .config import FeedSpec, SiteConfig
from .links import id_path
from .naming import byline
from .render import MEDIA_TYPES, Format

# The formats every feed is published in: (URL suffix, label shown to people, media type).
# The media type is what <link rel="alternate" type=...> announces, so it has no charset.
_LABELS = {Format.RSS: "RSS", Format.ATOM: "Atom", Format.JSON: "JSON Feed"}
SUBSCRIBE_FORMATS: tuple[tuple[str, str, str], ...] = tuple(
    (fmt.value, _LABELS[fmt], MEDIA_TYPES[fmt].split(";")[0]) for fmt in Format
)  # (URL suffix, label, media type) of every format, in the order pages list them
ARCHIVE_FORMAT = "atom"  # RFC 5005 archives are an Atom idea; the page points people there


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("feeds", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["iso"] = lambda d: d.isoformat()
    env.filters["byline"] = lambda authors, language: byline([a.name for a in authors], language)
    return env


class Links:
    """Root-relative URLs of the site's documents, under the path of ``site.url``."""

    def __init__(self, site: SiteConfig) -> None:
        self.prefix = site.path_prefix
        self.site = site

    def index(self) -> str:
        return f"{self.prefix}/"

    def feed(self, name: str, fmt: str) -> str:
        return f"{self.prefix}/feeds/{name}.{fmt}"

    def feed_page(self, name: str) -> str:
        return f"{self.prefix}/feeds/{name}"

    def archive(self, name: str, page: int, fmt: str) -> str:
        return f"{self.prefix}/feeds/{name}/archive/{page}.{fmt}"

    def opml(self) -> str:
        return f"{self.prefix}/feeds.opml"

    def article(self, article: Meta) -> str:
        return f"{self.prefix}/articles/{id_path(article.id)}"

    def local(self, url: str) -> str:
        """A URL of this site made root-relative, like every other link on the pages."""
        return url.replace(self.site.url, f"{self.prefix}/", 1) if url.startswith(self.site.url) else url

    def local_pictures(self, html: str) -> Markup:
        """A sanitized body with the site's own pictures root-relative, so that a page shows
        them wherever it is served (``feeds serve`` on 127.0.0.1 before the site has its name).
        The sanitizer writes every attribute in double quotes."""
        media = f'="{self.site.url}{urls.MEDIA.path(rel="")}'
        return Markup(html.replace(media, f'="{self.prefix}/{urls.MEDIA.path(rel="")}'))

    def local_time(self, moment: datetime) -> str:
        return moment.astimezone(self.site.tz).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Subscription:
    """One way to subscribe to a feed, as the feed page shows it."""

    suffix: str
    label: str
    media_type: str
    url: str  # absolute: a reader app has no page to resolve it against


def subscriptions(site: SiteConfig, name: str) -> list[Subscription]:
    return [
        Subscription(suffix, label, media_type, urls.feed_url(site, name, suffix))
        for suffix, label, media_type in SUBSCRIBE_FORMATS
    ]


def _render(template: str, site: SiteConfig, **context: object) -> bytes:
    page = _env().get_template(template)
    text = page.render(site=site, links=Links(site), formats=SUBSCRIBE_FORMATS, **context)
    return text.encode("utf-8")


def render_index(site: SiteConfig, specs: Sequence[FeedSpec], visible: Sequence[Meta]) -> bytes:
    """The front page: every feed with its formats and page, then the newest articles."""
    return _render(
        "index.html",
        site,
        operator_feeds=[s for s in specs if not s.is_topic_feed],
        topic_feeds=[s for s in specs if s.is_topic_feed],
        # A topic feed's own description is shown only when the operator wrote one under
        # ``topics:``; otherwise it is the site's description again and says nothing new.
        topic_descriptions={t.slug: t.description for t in site.topic_names if t.description},
        articles=list(visible[: site.limit]),
    )


def render_feed_page(
    site: SiteConfig, spec: FeedSpec, entries: Sequence[Meta], archive_pages: int = 0
) -> bytes:
    """``/feeds/<name>``: the feed for people, its entries in the order given and how to subscribe.

    ``entries`` are the feed's entries (newest first, as the feed documents list them);
    ``archive_pages`` is how many RFC 5005 archive pages hold the older ones (0: none).
    """
    return _render(
        "feed.html",
        site,
        spec=spec,
        entries=list(entries),
        subscriptions=subscriptions(site, spec.name),
        page_url=urls.feed_page_url(site, spec.name),
        archive_pages=archive_pages,
        archive_format=ARCHIVE_FORMAT,
    )


def render_article(site: SiteConfig, article: Article, feeds: Sequence[FeedSpec]) -> bytes:
    """An article's permalink page; ``feeds`` are the topic feeds it appears in."""
    return _render("article.html", site, article=article, feeds=feeds)
