"""Sitemaps for search engines, and the robots.txt that names them.

``/sitemap.xml`` lists every article page with its ``lastmod``, the index and the feed pages
(https://www.sitemaps.org/protocol.html). A sitemap may hold 50,000 URLs and 50 MB; past that,
``/sitemap.xml`` becomes a sitemap index of pages ``/sitemaps/<n>.xml``, counted from the
oldest article like the RFC 5005 archive pages (:mod:`feeds.archives`): new articles only ever
change the newest page, so a crawler that revalidates a full page gets a 304 until history
itself is rewritten (an old article edited, deleted or back-dated).

``/sitemap-news.xml`` is Google's news sitemap: articles of the last 48 hours, at most 1,000,
newest first. Which articles those are changes with the clock alone, when one turns 48 hours
old: :func:`news_edge` says when, so the site's view (and with it the cached document and the
purge) ends at that instant, as it does when an embargo ends.

Everything here is a pure function of its arguments: the same articles give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import cast
from xml.sax.saxutils import escape

from lxml import etree

from .articles import Meta
from .config import SiteConfig
from .links import NEWS_SITEMAP, SITEMAP, SITEMAP_PAGE
from .markup import clean_text

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
MEDIA_TYPE = "application/xml; charset=utf-8"
ROBOTS_MEDIA_TYPE = "text/plain; charset=utf-8"
PAGE_URLS = 50_000  # the protocol's limit of URLs per sitemap (and of sitemaps per index)
MAX_BYTES = 50 * 1024 * 1024  # the protocol's limit per file, uncompressed
# One <url> may take this many bytes, so that PAGE_URLS of them always fit in MAX_BYTES: a page
# is cut by count alone (and so stays stable), and a URL too long for its share (about 970
# characters, where the protocol allows 2,047) is left out rather than making its page too big.
ENTRY_BYTES = (MAX_BYTES - 1024) // PAGE_URLS
_ENTRY = len("  <url><loc></loc><lastmod>2025-01-01T00:00:00+00:00</lastmod></url>\n")
NEWS_WINDOW = timedelta(hours=48)  # Google News takes articles of the last two days ...
NEWS_MAX = 1000  # ... and at most this many per news sitemap
# The None key names the default namespace; lxml-stubs type Element's nsmap without it.
_SITEMAP_ONLY = cast("dict[str, str]", {None: SITEMAP_NS})
_WITH_NEWS = cast("dict[str, str]", {None: SITEMAP_NS, "news": NEWS_NS})
Url = tuple[str, datetime | None]  # an absolute URL and when its page last changed (if known)


def page_count(total: int, per_page: int) -> int:
    """How many pages ``total`` URLs fill; 0 while they fit in ``/sitemap.xml`` itself."""
    return 0 if total <= per_page else -(-total // per_page)


def page_slice(total: int, per_page: int, page: int) -> slice:
    """Where page ``page`` (1: the oldest) lies among ``total`` URLs listed oldest first.

    Counted from the oldest, so a URL added at the end only ever changes the last page.
    """
    return slice((page - 1) * per_page, min(page * per_page, total))


def w3c(moment: datetime) -> str:
    """A W3C datetime in UTC, to the second (https://www.w3.org/TR/NOTE-datetime)."""
    if moment.tzinfo is None:
        raise ValueError("sitemap dates need a timezone-aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def fits(url: str) -> bool:
    """Whether ``url`` can be listed: within its share of the file and the protocol's 2,047."""
    return len(url) < 2048 and _ENTRY + len(escape(url).encode()) <= ENTRY_BYTES


def render_urlset(urls: Iterable[Url]) -> bytes:
    """A sitemap of ``urls`` in their order, streamed (a page of 50,000 is never a tree).

    URLs that do not :func:`fit` are left out; the caller bounds how many there are.
    """
    out = io.BytesIO()
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(f"{{{SITEMAP_NS}}}urlset", nsmap=_SITEMAP_ONLY):
            for url, lastmod in urls:
                if not fits(url):
                    continue
                xf.write("\n  ")
                with xf.element(f"{{{SITEMAP_NS}}}url"):
                    with xf.element(f"{{{SITEMAP_NS}}}loc"):
                        xf.write(url)
                    if lastmod is not None:
                        with xf.element(f"{{{SITEMAP_NS}}}lastmod"):
                            xf.write(w3c(lastmod))
            xf.write("\n")
    return out.getvalue() + b"\n"


def render_index(site: SiteConfig, pages: int) -> bytes:
    """The sitemap index naming pages 1 to ``pages``.

    No ``lastmod``: it would cost a walk of every article each time anything changes, and
    crawlers revalidate the pages cheaply (full pages keep their ETag).
    """
    root = etree.Element(f"{{{SITEMAP_NS}}}sitemapindex", nsmap=_SITEMAP_ONLY)
    for page in range(1, pages + 1):
        entry = etree.SubElement(root, f"{{{SITEMAP_NS}}}sitemap")
        etree.SubElement(entry, f"{{{SITEMAP_NS}}}loc").text = SITEMAP_PAGE.url(site, page=page)
    return _bytes(root)


def news_language(tag: str) -> str | None:
    """A language tag as Google News takes it: the ISO 639 code, and zh-cn or zh-tw for Chinese.

    None when the tag has no ISO 639 code to give (``x-klingon``, ``i-navajo``).
    """
    parts = tag.lower().replace("_", "-").split("-")
    primary = parts[0]
    if primary == "zh":
        traditional = {"hant", "tw", "hk", "mo"}
        return "zh-tw" if traditional.intersection(parts[1:]) else "zh-cn"
    if 2 <= len(primary) <= 3 and primary.isascii() and primary.isalpha():
        return primary
    return None


def render_news(site: SiteConfig, entries: Sequence[Meta]) -> bytes:
    """The news sitemap of ``entries`` (already chosen: recent, visible, newest first).

    ``news:language`` is the article's language, else the site's, reduced by
    :func:`news_language`; an article with neither usable is left out (Google requires one).
    """
    name = clean_text(site.title).strip() or site.host
    fallback = news_language(site.language)
    root = etree.Element(f"{{{SITEMAP_NS}}}urlset", nsmap=_WITH_NEWS)
    for meta in entries:
        language = (news_language(meta.language) if meta.language else None) or fallback
        title = " ".join(clean_text(meta.title).split())
        if language is None or not title or not fits(meta.permalink):
            continue
        url = etree.SubElement(root, f"{{{SITEMAP_NS}}}url")
        etree.SubElement(url, f"{{{SITEMAP_NS}}}loc").text = meta.permalink
        news = etree.SubElement(url, f"{{{NEWS_NS}}}news")
        publication = etree.SubElement(news, f"{{{NEWS_NS}}}publication")
        etree.SubElement(publication, f"{{{NEWS_NS}}}name").text = name
        etree.SubElement(publication, f"{{{NEWS_NS}}}language").text = language
        etree.SubElement(news, f"{{{NEWS_NS}}}publication_date").text = w3c(meta.published)
        etree.SubElement(news, f"{{{NEWS_NS}}}title").text = title
    return _bytes(root)


def news_edge(oldest: datetime | None) -> datetime | None:
    """When the news sitemap next changes by the clock alone: its oldest article turns 48
    hours old then (``oldest``: when the oldest listed was published)."""
    return None if oldest is None else oldest + NEWS_WINDOW


def render_robots(site: SiteConfig) -> bytes:
    """Everything allowed, and both sitemaps named (absolute URLs, as robots.txt requires)."""
    lines = [
        "User-agent: *",
        "Allow: /",
        "",
        f"Sitemap: {SITEMAP.url(site)}",
        f"Sitemap: {NEWS_SITEMAP.url(site)}",
    ]
    return ("\n".join(lines) + "\n").encode()


def _bytes(root: etree._Element) -> bytes:
    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"
