"""The only module that touches feedgen: one function per format, every trap handled here.

feedgen prepends entries, stamps ``now()`` into documents, makes the RSS channel link the last
``link()`` given and flips the process locale while formatting RSS dates. The wrappers below
append in our order, take every date from the articles, give ``self`` before ``alternate`` and
serialise rendering with a lock, so equal inputs give equal bytes on any machine.
"""

from __future__ import annotations

import html
import math
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import quote, urljoin

from feedgen.feed import FeedGenerator
from lxml import etree

from .articles import Article
from .config import FeedSpec, SiteConfig

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ATOM = "http://www.w3.org/2005/Atom"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


class Format(StrEnum):
    """A feed format; its value is the URL suffix (``/feeds/<name>.<format>``)."""

    RSS = "rss"
    ATOM = "atom"


MEDIA_TYPES = {
    Format.RSS: "application/rss+xml; charset=utf-8",
    Format.ATOM: "application/atom+xml; charset=utf-8",
}
_LOCALE_LOCK = threading.Lock()  # feedgen's RSS dates call locale.setlocale (process-wide)


def feed_url(site: SiteConfig, name: str, fmt: str) -> str:
    return urljoin(site.url, f"feeds/{name}.{fmt}")


def entry_id(site: SiteConfig, article: Article) -> str:
    """A tag URI (RFC 4151): stable for ever as long as the id and first date stay."""
    day = article.published.astimezone(site.tz).date().isoformat()
    return f"tag:{site.host},{day}:{quote(article.id, safe='/~.-_')}"


def last_modified(entries: Sequence[Article], fallback: datetime = EPOCH) -> datetime:
    """The newest change among the entries; never wall-clock time."""
    return max((a.updated for a in entries), default=fallback)


def _generator_version() -> str:
    try:
        return version("feeds")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _build(
    spec: FeedSpec, site: SiteConfig, entries: Sequence[Article], fmt: str, updated: datetime
) -> FeedGenerator:
    fg = FeedGenerator()
    # dc:creator is for RSS only: in Atom, <author> already names everyone.
    fg.load_extension("dc", atom=False, rss=True)
    self_url = feed_url(site, spec.name, fmt)
    fg.id(self_url)
    fg.title(spec.title)
    fg.description(spec.description or spec.title)
    # feedgen uses the href of the *last* link() call as the RSS channel <link>.
    fg.link(href=self_url, rel="self", type=MEDIA_TYPES[fmt].split(";")[0])
    fg.link(href=site.url, rel="alternate", type="text/html")
    fg.language(spec.language)
    fg.author({"name": site.author or site.title})
    fg.generator("feeds", _generator_version())
    fg.updated(updated)
    fg.lastBuildDate(updated)
    fg.ttl(max(1, math.ceil(spec.max_age / 60)))
    for article in entries:
        _add_entry(fg, spec, site, article, fmt)
    return fg


def _add_entry(fg: FeedGenerator, spec: FeedSpec, site: SiteConfig, article: Article, fmt: str) -> None:
    fe = fg.add_entry(order="append")  # feedgen's default prepends
    fe.id(entry_id(site, article))
    fe.title(article.title)
    fe.link(href=article.url, rel="alternate", type="text/html")
    fe.published(article.published)
    fe.updated(article.updated)
    # One mapping: summary -> <summary>/<description> as escaped HTML, body -> <content>/
    # <content:encoded>. summary() also sets the RSS description, so it goes first.
    fe.summary(html.escape(article.summary or article.title, quote=False), type="html")
    if spec.content == "full" and article.html.strip():
        fe.content(article.html, type="html")
    if fmt == "atom":
        for author in article.authors:
            fe.author(
                {k: v for k, v in (("name", author.name), ("email", author.email), ("uri", author.uri)) if v}
            )
    else:
        # RSS allows one <author>, and only as an email address; everyone else is dc:creator.
        lead = next((a for a in article.authors if a.email), None)
        if lead is not None:
            fe.author({"name": lead.name, "email": lead.email})
        others = [a.name for a in article.authors if a is not lead]
        if others:
            fe.dc.dc_creator(others)
    categories = [{"term": t.slug, "label": t.name} for t in article.topics + article.tags]
    if categories:
        fe.category(categories)
    if article.image and article.image_type:
        fe.enclosure(article.image, str(article.image_length), article.image_type)


def render_rss(
    spec: FeedSpec, site: SiteConfig, entries: Sequence[Article], updated: datetime | None = None
) -> bytes:
    """RSS 2.0 bytes; ``entries`` newest first, already selected and limited."""
    stamp = updated or last_modified(entries)
    with _LOCALE_LOCK:
        return bytes(_build(spec, site, entries, "rss", stamp).rss_str(pretty=True))


def render_atom(
    spec: FeedSpec, site: SiteConfig, entries: Sequence[Article], updated: datetime | None = None
) -> bytes:
    """Atom 1.0 bytes; ``entries`` newest first, already selected and limited."""
    stamp = updated or last_modified(entries)
    with _LOCALE_LOCK:
        raw = bytes(_build(spec, site, entries, "atom", stamp).atom_str(pretty=True))
    return _restore_entry_links(raw, entries)


def _restore_entry_links(raw: bytes, entries: Sequence[Article]) -> bytes:
    """Put back the rel/type/length that feedgen 1.0 drops from Atom entry links.

    Its ``atom_entry`` rebinds the loop variable to the new element before copying the
    attributes, so every entry link comes out bare; an image would then read as a second
    alternate link instead of an enclosure.
    """
    root = etree.fromstring(raw, parser=_PARSER)
    for element, article in zip(root.iterfind(f"{{{ATOM}}}entry"), entries, strict=True):
        links = element.findall(f"{{{ATOM}}}link")
        links[0].set("rel", "alternate")
        links[0].set("type", "text/html")
        if article.image and article.image_type and len(links) > 1:
            links[1].set("rel", "enclosure")
            links[1].set("type", article.image_type)
            links[1].set("length", str(article.image_length))
    return etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="UTF-8")


RENDERERS = {Format.RSS: render_rss, Format.ATOM: render_atom}
