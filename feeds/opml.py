"""``/feeds.opml``: every feed of the site as an OPML 2.0 subscription list.

A reader imports the list in one go (http://opml.org/spec2.opml, "Subscription lists"). Feeds
are grouped the way the index groups them, under "Feeds" (the operator's) and "Topics"; readers
that know folders (FreshRSS, NewsBlur, Feedly, listparser's categories) turn the groups into
folders, and the others read the ``type="rss"`` outlines at any depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from lxml import etree

from .config import FeedSpec, SiteConfig
from .links import feed_page_url, feed_url

OPML_MEDIA_TYPE = "text/x-opml; charset=utf-8"
OPML_DOCS = "http://opml.org/spec2.opml"
# The one format the list subscribes to. Atom: RFC 4287 gives every entry an id and an
# ``updated`` date, RFC 5005's archive links are defined for it, and every reader that imports
# OPML reads it. The spec's ``type="rss"`` means "a feed" whatever its format.
OPML_FORMAT = "atom"


def rfc822(moment: datetime) -> str:
    """An OPML date-time (RFC 822, four-digit year), in GMT; never the locale's month names."""
    if moment.tzinfo is None:
        raise ValueError("OPML dates need a timezone-aware datetime")
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def render_opml(site: SiteConfig, specs: Sequence[FeedSpec], updated: datetime) -> bytes:
    """The subscription list of ``specs``, dated ``updated`` (the site's newest change).

    The same arguments give the same bytes: nothing here reads the clock.
    """
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    date = rfc822(updated)
    _text(head, "title", site.title)
    _text(head, "dateCreated", date)
    _text(head, "dateModified", date)
    if site.author:
        _text(head, "ownerName", site.author)
    _text(head, "docs", OPML_DOCS)

    body = etree.SubElement(root, "body")
    groups = (
        ("Feeds", [s for s in specs if not s.is_topic_feed]),
        ("Topics", [s for s in specs if s.is_topic_feed]),
    )
    for name, members in groups:
        if not members:
            continue
        group = etree.SubElement(body, "outline", text=name, title=name)
        for spec in members:
            _feed(group, site, spec)
    if not len(body):
        # The spec wants at least one outline in <body>; this one subscribes to nothing.
        etree.SubElement(body, "outline", text="No feeds yet")

    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def _text(parent: etree._Element, tag: str, value: str) -> None:
    etree.SubElement(parent, tag).text = value


def _feed(parent: etree._Element, site: SiteConfig, spec: FeedSpec) -> None:
    attributes = {
        "type": "rss",
        "text": spec.title,
        "title": spec.title,
        "xmlUrl": feed_url(site, spec.name, OPML_FORMAT),
        "htmlUrl": feed_page_url(site, spec.name),
    }
    if spec.description:
        attributes["description"] = spec.description
    attributes["language"] = spec.language
    etree.SubElement(parent, "outline", attributes)
