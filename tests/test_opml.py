"""The OPML subscription list, read back as readers read it (lxml, reader, listparser)."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import feedparser
import listparser
import lxml.html
import pytest
import reader
from lxml import etree
from reader import opml as reader_opml

from feeds.config import FeedSpec, SiteConfig
from feeds.opml import OPML_DOCS, OPML_MEDIA_TYPE, render_opml
from feeds.pages import render_feed_page
from feeds.site import Site, open_site

from conftest import NOW, MakeSite

UPDATED = datetime(2025, 5, 3, 10, 15, tzinfo=UTC)
HOSTILE = "<script>alert(\"x\")</script> & 'Zitat' „Grüße“ 🦊"


@pytest.fixture
def site(make_site: MakeSite) -> Site:
    return open_site(make_site(), clock=lambda: NOW)


def specs_of(site: Site) -> list[FeedSpec]:
    return list(site.specs.values())


def parse(body: bytes) -> etree._Element:
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == "opml"
    return root


def feed_outlines(root: etree._Element) -> list[etree._Element]:
    return root.xpath("/opml/body//outline[@type='rss']")


def test_media_type() -> None:
    assert OPML_MEDIA_TYPE == "text/x-opml; charset=utf-8"


def test_head_names_the_site_and_dates_from_the_argument(site: Site) -> None:
    body = render_opml(site.config, specs_of(site), UPDATED)
    assert body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<opml")
    root = parse(body)
    assert root.get("version") == "2.0"
    head = {child.tag: child.text for child in root.find("head")}
    assert head == {
        "title": "Testseite",
        "dateCreated": "Sat, 03 May 2025 10:15:00 GMT",
        "dateModified": "Sat, 03 May 2025 10:15:00 GMT",
        "ownerName": "Redaktion",
        "docs": OPML_DOCS,
    }
    assert len(root.find("head")) == len(head)  # OPML 2.0: no head element repeated


def test_every_feed_once_with_absolute_addresses(site: Site) -> None:
    specs = specs_of(site)
    root = parse(render_opml(site.config, specs, UPDATED))
    outlines = feed_outlines(root)
    assert sorted(o.get("xmlUrl") for o in outlines) == sorted(
        f"https://news.example.org/feeds/{s.name}.atom" for s in specs
    )
    assert len(outlines) == len(specs) == 4
    for spec in specs:
        (outline,) = [
            o for o in outlines if o.get("htmlUrl") == f"https://news.example.org/feeds/{spec.name}"
        ]
        assert outline.get("text") == outline.get("title") == spec.title
        assert outline.get("description") == (spec.description or None)  # none rather than empty
        assert outline.get("language") == spec.language
        group = outline.getparent().get("text")
        assert group == ("Topics" if spec.is_topic_feed else "Feeds")
    # The operator's feeds first, as on the index; groups carry no feed of their own.
    groups = root.xpath("/opml/body/outline")
    assert [g.get("text") for g in groups] == ["Feeds", "Topics"]
    assert not [g for g in groups if g.get("xmlUrl") or g.get("type")]
    assert [o.get("text") for o in groups[0]] == ["Alle Meldungen", "Kurz"]


def test_addresses_lead_to_the_feed_and_its_page(site: Site) -> None:
    """Until the HTTP side serves them, resolve each address through the functions behind it."""
    for outline in feed_outlines(parse(render_opml(site.config, specs_of(site), UPDATED))):
        name = urlsplit(outline.get("htmlUrl")).path.removeprefix("/feeds/")
        spec = site.specs[name]
        feed = feedparser.parse(site.feed(name, "atom").body)
        assert not feed.bozo and feed.version == "atom10"
        assert feed.feed.title == outline.get("title")
        self_links = [link.href for link in feed.feed.links if link.rel == "self"]
        assert self_links == [outline.get("xmlUrl")]
        page = lxml.html.fromstring(render_feed_page(site.config, spec, site.feed_entries(spec)))
        assert page.xpath("//link[@rel='canonical']/@href") == [outline.get("htmlUrl")]


def test_site_under_a_path_and_without_an_author(site: Site) -> None:
    config = replace(site.config, url="https://example.org/news/", author=None)
    root = parse(render_opml(config, specs_of(site), UPDATED))
    assert root.find("head/ownerName") is None
    urls = {o.get("xmlUrl") for o in feed_outlines(root)} | {o.get("htmlUrl") for o in feed_outlines(root)}
    assert "https://example.org/news/feeds/alle.atom" in urls
    assert "https://example.org/news/feeds/alle" in urls
    assert all(url.startswith("https://example.org/news/feeds/") for url in urls)


def hostile_specs() -> list[FeedSpec]:
    return [
        FeedSpec(name="boese", title=HOSTILE, description=f"Beschreibung: {HOSTILE}", language="de-AT"),
        FeedSpec(name="topic", title="A & B", description="", is_topic_feed=True),
    ]


def test_hostile_titles_are_escaped_and_survive(site: Site) -> None:
    body = render_opml(replace(site.config, title=HOSTILE, author=HOSTILE), hostile_specs(), UPDATED)
    assert b"<script" not in body
    assert "🦊".encode() in body  # UTF-8 as declared, not character references
    root = parse(body)
    assert root.findtext("head/title") == HOSTILE
    assert root.findtext("head/ownerName") == HOSTILE
    first, second = feed_outlines(root)
    assert first.get("text") == first.get("title") == HOSTILE
    assert first.get("description") == f"Beschreibung: {HOSTILE}"
    assert first.get("language") == "de-AT"
    assert second.get("text") == "A & B"
    assert second.get("description") is None  # no empty attribute for a missing description


def test_same_inputs_same_bytes_and_no_clock(site: Site) -> None:
    specs = specs_of(site)
    first = render_opml(site.config, specs, UPDATED)
    assert render_opml(site.config, specs, UPDATED) == first
    # The date is the one passed in, whatever its zone, never the time of rendering.
    berlin = UPDATED.astimezone(timezone(timedelta(hours=2)))
    assert render_opml(site.config, specs, berlin) == first
    old = render_opml(site.config, specs, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert parse(old).findtext("head/dateModified") == "Fri, 31 Dec 1999 23:59:59 GMT"
    assert old.replace(b"Fri, 31 Dec 1999 23:59:59", b"Sat, 03 May 2025 10:15:00") == first


def test_naive_dates_are_refused(site: Site) -> None:
    with pytest.raises(ValueError, match="timezone"):
        render_opml(site.config, specs_of(site), datetime(2025, 5, 3, 10, 15))


def test_no_feeds_is_still_a_valid_list(site: Site) -> None:
    root = parse(render_opml(site.config, [], UPDATED))
    assert len(root.xpath("/opml/body/outline")) == 1  # OPML 2.0: <body> has one or more
    assert all(o.get("text") for o in root.iter("outline"))
    assert feed_outlines(root) == []


@pytest.mark.parametrize("which", ["site", "hostile"])
def test_every_outline_has_text(site: Site, which: str) -> None:
    """OPML 2.0: "A missing text attribute in any outline element is an error."""
    specs = specs_of(site) if which == "site" else hostile_specs()
    root = parse(render_opml(site.config, specs, UPDATED))
    outlines = list(root.iter("outline"))
    assert len(outlines) == len(specs) + len({s.is_topic_feed for s in specs})
    assert all(o.get("text") for o in outlines)
    assert all(o.get("xmlUrl") for o in outlines if o.get("type") == "rss")


# --- real readers ---------------------------------------------------------------------------


def test_reader_imports_every_feed(site: Site) -> None:
    specs = specs_of(site)
    body = render_opml(site.config, specs, UPDATED)
    parsed = reader_opml.parse(io.BytesIO(body))
    assert sorted((f.url, f.title, f.link, f.subtitle) for f in parsed) == sorted(
        (
            f"https://news.example.org/feeds/{s.name}.atom",
            s.title,
            f"https://news.example.org/feeds/{s.name}",
            s.description or None,
        )
        for s in specs
    )
    subscriber = reader.make_reader(":memory:")
    try:
        subscriber.import_feeds(io.BytesIO(body))
        assert {f.url for f in subscriber.get_feeds()} == {f.url for f in parsed}
    finally:
        subscriber.close()


def test_listparser_reads_feeds_and_folders(site: Site) -> None:
    specs = specs_of(site)
    result = listparser.parse(render_opml(site.config, specs, UPDATED))
    assert not result.bozo, result.bozo_exception
    assert result.version == "opml2"
    assert result.meta.title == "Testseite"
    assert result.meta.created == "Sat, 03 May 2025 10:15:00 GMT"
    assert result.meta.author.name == "Redaktion"
    folders = {f.url: f.categories for f in result.feeds}
    assert folders == {
        f"https://news.example.org/feeds/{s.name}.atom": [["Topics" if s.is_topic_feed else "Feeds"]]
        for s in specs
    }
    assert {f.title for f in result.feeds} == {s.title for s in specs}


def test_listparser_reads_hostile_titles(site: Site) -> None:
    config: SiteConfig = replace(site.config, title=HOSTILE)
    result = listparser.parse(render_opml(config, hostile_specs(), UPDATED))
    assert not result.bozo, result.bozo_exception
    assert result.meta.title == HOSTILE
    assert [f.title for f in result.feeds] == [HOSTILE, "A & B"]
