"""The only module that touches feedgen: one function per format, every trap handled here.

feedgen prepends entries, stamps ``now()`` into documents, makes the RSS channel link the last
``link()`` given and flips the process locale while formatting RSS dates. The wrappers below
append in our order, take every date from the articles, give ``self`` before ``alternate`` and
serialise rendering with a lock, so equal inputs give equal bytes on any machine.
"""

from __future__ import annotations

import functools
import html
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version

import feedgen.ext.dc  # noqa: F401 - load_extension("dc") imports it by name; here, not mid-render
from feedgen.feed import FeedGenerator
from lxml import etree

from .articles import Article, Author, Meta, Topic, complete, entry_id
from .config import FeedSpec, SiteConfig
from .jsonfeed import render_json
from .links import DocLinks, subscription_links
from .naming import byline

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ATOM = "http://www.w3.org/2005/Atom"
HISTORY = "http://purl.org/syndication/history/1.0"  # RFC 5005 fh:archive
MEDIA = "http://search.yahoo.com/mrss/"
SYNDICATION = "http://purl.org/rss/1.0/modules/syndication/"  # sy:updatePeriod, sy:updateFrequency
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


class Format(StrEnum):
    """A feed format; its value is the URL suffix (``/feeds/<name>.<format>``)."""

    RSS = "rss"
    ATOM = "atom"
    JSON = "json"


MEDIA_TYPES = {
    Format.RSS: "application/rss+xml; charset=utf-8",
    Format.ATOM: "application/atom+xml; charset=utf-8",
    Format.JSON: "application/feed+json",
}
_LOCALE_LOCK = threading.Lock()  # feedgen's RSS dates call locale.setlocale (process-wide)


def last_modified(entries: Sequence[Meta], fallback: datetime = EPOCH) -> datetime:
    """The newest change among the entries; never wall-clock time."""
    return max((a.updated for a in entries), default=fallback)


@functools.cache
def _generator_version() -> str:
    """The installed package's version; looked up once (reading the metadata takes a millisecond)."""
    try:
        return version("feeds")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _build(
    spec: FeedSpec,
    site: SiteConfig,
    entries: Sequence[Article],
    links: DocLinks,
    fmt: str,
    updated: datetime,
    full: int,
) -> FeedGenerator:
    fg = FeedGenerator()
    # dc:creator is for RSS only: in Atom, <author> already names everyone.
    fg.load_extension("dc", atom=False, rss=True)
    # The feed's id is its subscription URL, archive pages included (RFC 5005 §4: one feed).
    fg.id(links.current or links.self_url)
    fg.title(spec.title)
    fg.description(spec.description or spec.title)
    # feedgen uses the href of the *last* link() call as the RSS channel <link>.
    fg.link(href=links.self_url, rel="self", type=MEDIA_TYPES[Format(fmt)].split(";")[0])
    fg.link(href=links.html_url, rel="alternate", type="text/html")
    if fmt == "atom":
        if site.icon:
            fg.icon(site.icon)
        if site.logo:
            fg.logo(site.logo)
    elif site.icon or site.logo:
        # RSS has one picture, and readers show it as the feed's icon, in a small square: the
        # square icon, not the wide logo. Its title and link must be the channel's.
        fg.image(url=site.icon or site.logo, title=spec.title, link=links.html_url)
    fg.language(spec.language)
    fg.author({"name": site.author or site.title})
    fg.generator("feeds", _generator_version())
    fg.updated(updated)
    fg.lastBuildDate(updated)
    fg.ttl(polling(spec.max_age)[0])
    for i, article in enumerate(entries):
        _add_entry(fg, site, article, fmt, spec.language, full=i < full)
    return fg


def _add_entry(
    fg: FeedGenerator, site: SiteConfig, article: Article, fmt: str, language: str, full: bool
) -> None:
    fe = fg.add_entry(order="append")  # feedgen's default prepends
    fe.id(entry_id(site, article))
    fe.title(article.title)
    fe.link(href=article.url, rel="alternate", type="text/html")
    fe.published(article.published)
    fe.updated(article.updated)
    # One mapping: summary -> <summary>/<description> as escaped HTML, body -> <content>/
    # <content:encoded>. summary() also sets the RSS description, so it goes first.
    fe.summary(html.escape(article.summary or article.title, quote=False), type="html")
    if full and article.html.strip():
        fe.content(article.html, type="html")
    if fmt == "atom" and len(article.authors) == 1:
        fe.author(_person(article.authors[0]))
    elif fmt == "atom" and article.authors:
        # Readers show one <author> of several (feedparser: the last, with another's email):
        # the byline is the author, and each person, with email and URI, a contributor.
        fe.author({"name": byline([a.name for a in article.authors], article.language or language)})
        for author in article.authors:
            fe.contributor(_person(author))
    elif article.authors:
        # One dc:creator with the whole byline: readers keep one of several, and show an RSS
        # <author> (an email address by the RSS rule, never required) as "email (Name)".
        fe.dc.dc_creator(byline([a.name for a in article.authors], article.language or language))
    categories = [{"term": t.slug, "label": t.name} for t in article.topics + article.tags]
    if categories:
        fe.category(categories)
    if article.image and article.image_type:
        fe.enclosure(article.image, str(article.image_length), article.image_type)


def _person(author: Author) -> dict[str, str]:
    return {k: v for k, v in (("name", author.name), ("email", author.email), ("uri", author.uri)) if v}


def polling(max_age: int) -> tuple[int, str, int]:
    """RSS ``ttl`` (minutes) and ``sy:updatePeriod``/``sy:updateFrequency`` for ``max_age``:
    readers that poll by them come no more often than a cache would ask again."""
    period, seconds = next(
        ((name, length) for name, length in (("hourly", 3600), ("daily", 86400)) if max_age <= length),
        ("weekly", 604800),
    )
    return max(1, math.ceil(max_age / 60)), period, max(1, seconds // max(max_age, 1))


def _full(spec: FeedSpec, entries: Sequence[Article], full: int | None) -> int:
    """How many entries (newest first) carry their whole content."""
    if spec.content != "full":
        return 0
    return len(entries) if full is None else full


def render_rss(
    spec: FeedSpec,
    site: SiteConfig,
    entries: Sequence[Article],
    links: DocLinks | None = None,
    updated: datetime | None = None,
    full: int | None = None,
) -> bytes:
    """RSS 2.0 bytes; ``entries`` newest first, already selected and limited.

    ``full``: how many of the newest entries carry their content (default all, with
    ``content: full``); the others carry their summary only.
    """
    stamp = updated or last_modified(entries)
    with _LOCALE_LOCK:
        links = links or subscription_links(site, spec.name, "rss", 0)
        fg = _build(spec, site, entries, links, "rss", stamp, _full(spec, entries, full))
        root = _rss_tree(fg)
    channel = root.find("channel")
    assert channel is not None
    _add_links(channel, links, after=channel.find(f"{{{ATOM}}}link"))
    _add_polling(channel, spec.max_age)
    for element, article in zip(channel.iterfind("item"), entries, strict=True):
        _add_media(element, article)
    return _serialize(root)


def render_atom(
    spec: FeedSpec,
    site: SiteConfig,
    entries: Sequence[Article],
    links: DocLinks | None = None,
    updated: datetime | None = None,
    full: int | None = None,
) -> bytes:
    """Atom 1.0 bytes; ``entries`` newest first, already selected and limited (``full`` as RSS)."""
    stamp = updated or last_modified(entries)
    with _LOCALE_LOCK:
        links = links or subscription_links(site, spec.name, "atom", 0)
        fg = _build(spec, site, entries, links, "atom", stamp, _full(spec, entries, full))
        root = _atom_tree(fg)
    own = root.findall(f"{{{ATOM}}}link")
    _add_links(root, links, after=own[-1] if own else None)
    for element, article in zip(root.iterfind(f"{{{ATOM}}}entry"), entries, strict=True):
        _restore_entry_links(element, article)
        _add_media(element, article)
    return _serialize(root)


def _rss_tree(fg: FeedGenerator) -> etree._Element:
    """The RSS document as the element tree feedgen serializes in ``rss_str``.

    Serializing it only to parse it back for our additions cost a tenth of a render and gives
    the same tree: feedgen writes no CDATA for ``type="html"``, and ``_serialize`` re-indents
    every element anyway. feedgen is pinned below 2.0; in 1.0.0 ``rss_str`` is
    ``tostring(self._create_rss()[1], ...)``.
    """
    root: etree._Element = fg._create_rss()[0]
    return root


def _atom_tree(fg: FeedGenerator) -> etree._Element:
    """The Atom document, parsed back from feedgen's bytes (unlike RSS, it has to be).

    feedgen builds Atom elements without a namespace and a literal ``xmlns`` attribute on the
    root: only the parser puts them into the Atom namespace. Not pretty-printed: ``_serialize``
    re-indents every element, so the indentation would only be parsed to be replaced.
    """
    return etree.fromstring(bytes(fg.atom_str(pretty=False)), parser=_PARSER)


def _restore_entry_links(element: etree._Element, article: Article) -> None:
    """Put back the rel/type/length that feedgen 1.0 drops from Atom entry links.

    Its ``atom_entry`` rebinds the loop variable to the new element before copying the
    attributes, so every entry link comes out bare; an image would then read as a second
    alternate link instead of an enclosure.
    """
    links = element.findall(f"{{{ATOM}}}link")
    links[0].set("rel", "alternate")
    links[0].set("type", "text/html")
    if article.image and article.image_type and len(links) > 1:
        links[1].set("rel", "enclosure")
        links[1].set("type", article.image_type)
        links[1].set("length", str(article.image_length))
        if article.image_alt:
            links[1].set("title", article.image_alt)


def _add_links(parent: etree._Element, links: DocLinks, after: etree._Element | None) -> None:
    """WebSub hubs (W3C WebSub §4) and RFC 5005 archive links, as atom:link in both formats.

    feedgen writes only ``self`` into RSS, and would make the last link the channel's <link>.
    """
    wanted = [("hub", hub) for hub in links.hubs] + [
        (rel, href)
        for rel, href in (
            ("current", links.current),
            ("prev-archive", links.prev_archive),
            ("next-archive", links.next_archive),
        )
        if href
    ]
    position = parent.index(after) + 1 if after is not None else 0
    for rel, href in wanted:
        parent.insert(position, etree.Element(f"{{{ATOM}}}link", rel=rel, href=href))
        position += 1
    if links.archive:  # RFC 5005 §4: an archive document says so
        parent.insert(position, etree.Element(f"{{{HISTORY}}}archive"))


def _add_polling(channel: etree._Element, max_age: int) -> None:
    """The syndication module's hints after ``ttl``, written here: feedgen's extension writes
    ``sy:UpdatePeriod``, which no reader looks for (the module says ``updatePeriod``)."""
    _, period, frequency = polling(max_age)
    ttl = channel.find("ttl")
    position = channel.index(ttl) + 1 if ttl is not None else len(channel)
    for name, value in (("updatePeriod", period), ("updateFrequency", str(frequency))):
        element = etree.Element(f"{{{SYNDICATION}}}{name}")
        element.text = value
        channel.insert(position, element)
        position += 1


def _add_media(element: etree._Element, article: Article) -> None:
    """The image once more as Media RSS: FreshRSS and Miniflux show media elements, not links."""
    if not article.image:
        return
    content = etree.SubElement(element, f"{{{MEDIA}}}content", url=article.image, medium="image")
    if article.image_type:
        content.set("type", article.image_type)
    if article.image_length:
        content.set("fileSize", str(article.image_length))
    if article.image_alt:
        # media:title, not media:description: feedparser (and the readers built on it) takes a
        # media:description for the entry's own content.
        etree.SubElement(content, f"{{{MEDIA}}}title", type="plain").text = article.image_alt
    etree.SubElement(element, f"{{{MEDIA}}}thumbnail", url=article.image)


def _serialize(root: etree._Element) -> bytes:
    """Namespaces declared once, on the root, whichever element first used them."""
    etree.cleanup_namespaces(root, top_nsmap={"fh": HISTORY, "media": MEDIA, "sy": SYNDICATION})
    etree.indent(root, space="  ")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


RENDERERS = {Format.RSS: render_rss, Format.ATOM: render_atom, Format.JSON: render_json}


@dataclass(frozen=True)
class Fitted:
    """A feed document within its size limit, and what had to give way for it."""

    body: bytes
    summarized: int = 0  # entries (the oldest) shown with their summary instead of their content
    dropped: int = 0  # the oldest entries, left out
    max_bytes: int = 0

    @property
    def note(self) -> str:
        if not (self.summarized or self.dropped):
            return ""
        parts = [f"{self.summarized} entries as summary only"] if self.summarized else []
        parts += [f"{self.dropped} oldest entries left out"] if self.dropped else []
        return f"trimmed to stay under max_bytes ({self.max_bytes}): {', '.join(parts)}"


def render_feed(
    fmt: Format,
    spec: FeedSpec,
    site: SiteConfig,
    entries: Sequence[Article],
    links: DocLinks | None = None,
    updated: datetime | None = None,
) -> Fitted:
    """The feed, no larger than ``spec.max_bytes``.

    Readers and aggregators cut off or refuse large documents (FeedBurner at 512 KB-1 MB, the
    W3C validator over 5 MB), so one huge article must not take a feed with it: full content
    falls back to the summary from the oldest entry on, and only then do the oldest entries
    drop. Each step is a binary search over re-renders; feeds that fit render once.
    """
    render = RENDERERS[fmt]
    limit = spec.max_bytes
    links = links or subscription_links(site, spec.name, fmt, 0)

    def attempt(shown: int, full: int) -> bytes:
        return render(spec, site, entries[:shown], links, updated or last_modified(entries), full)

    count = len(entries)
    full = _full(spec, entries, None)
    body = attempt(count, full)
    if len(body) <= limit:
        return Fitted(body)
    if full:
        summary_only = attempt(count, 0)
        if len(summary_only) <= limit:
            keep = _largest(lambda k: len(attempt(count, k)) <= limit, 0, full - 1)
            return Fitted(attempt(count, keep), summarized=full - keep, max_bytes=limit)
    shown = _largest(lambda m: len(attempt(m, 0)) <= limit, 0, count - 1)
    return Fitted(
        attempt(shown, 0), summarized=full and min(full, shown), dropped=count - shown, max_bytes=limit
    )


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest n in [low, high] for which ``fits`` holds, given that it holds for ``low``."""
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def warm_up(site: SiteConfig) -> None:
    """Pay the one-time costs of a process's first render now, before it says it is ready.

    The first feed a process rendered took 2-3 ms longer than the same work later: the package
    version read from its metadata, the sanitizer's first cleaners, cmark's and lxml's first
    calls, feedgen's first entries and the interpreter's first runs through all this code. A
    throwaway feed of two made-up articles (Markdown and plain text) goes the same way in
    both XML formats; nothing is kept but those caches.
    """
    meta = Meta(
        id="warm-up",
        path="warm-up.md",
        title="Warm-up",
        published=EPOCH,
        updated=EPOCH,
        url=site.url,
        permalink=site.url,
        authors=(Author("Warm-up", "warm-up@example.org"), Author("Warm-up")),
        topics=(Topic("warm-up", "Warm-up"),),
    )
    articles = [
        complete(meta, "Warm-up *text* with a [link](warm-up).\n\n## Warm-up\n", site),
        complete(replace(meta, path="warm-up.txt"), "Warm-up\nText of the warm-up.\n", site),
    ]
    spec = FeedSpec(name="warm-up", title="Warm-up", description="Warm-up")
    for fmt in (Format.RSS, Format.ATOM):
        render_feed(fmt, spec, site, articles)
