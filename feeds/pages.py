"""HTML pages: the index of feeds and one permalink page per article.

Rendered with Jinja2 outside any request, from the same snapshot as the feeds, so the static
export and the server give the same bytes. Links are root-relative under the site's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from jinja2 import Environment, PackageLoader, select_autoescape

from .articles import Article, Meta, id_path
from .config import FeedSpec, SiteConfig
from .render import MEDIA_TYPES


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("feeds", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["iso"] = lambda d: d.isoformat()
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

    def article(self, article: Meta) -> str:
        return f"{self.prefix}/articles/{id_path(article.id)}"

    def local_time(self, moment: datetime) -> str:
        return moment.astimezone(self.site.tz).strftime("%Y-%m-%d %H:%M")


def render_index(site: SiteConfig, specs: Sequence[FeedSpec], visible: Sequence[Meta]) -> bytes:
    text = (
        _env()
        .get_template("index.html")
        .render(
            site=site,
            operator_feeds=[s for s in specs if not s.is_topic_feed],
            topic_feeds=[s for s in specs if s.is_topic_feed],
            articles=list(visible[: site.limit]),
            links=Links(site),
            media_types=MEDIA_TYPES,
        )
    )
    return text.encode("utf-8")


def render_article(site: SiteConfig, article: Article, feeds: Sequence[FeedSpec]) -> bytes:
    text = (
        _env()
        .get_template("article.html")
        .render(
            site=site,
            article=article,
            feeds=feeds,
            links=Links(site),
            media_types=MEDIA_TYPES,
        )
    )
    return text.encode("utf-8")
