"""The HTML index, feed and article pages, parsed as a browser would (lxml.html, one real Chromium)."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree
from werkzeug.serving import make_server

from feeds import create_app
from feeds.links import archive_url, feed_page_url, feed_url
from feeds.opml import render_opml
from feeds.pages import SUBSCRIBE_FORMATS, render_feed_page
from feeds.site import Site, open_site

from conftest import DEMO_CONFIG, NOW, MakeSite
from support import browser, harness
from support.browser import CHROMIUM

CANONICAL = "https://news.example.org/articles/erster"
SMALL_FEEDS = {"alle", "kurz", "klima", "politik"}
FEED_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml", "json": "application/feed+json"}
# What the app's HTTP side serves today; the feed pages, JSON Feed and the OPML list are checked
# through the functions that render them (see ``resolves``) until it serves those too.
SECRETS = ("DRAFT-SECRET", "EMBARGO-SECRET")
HOSTILE = "<script>alert(\"x\")</script> & 'Zitat' „Grüße“ 🦊"


def parse(response) -> lxml.html.HtmlElement:
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    return lxml.html.fromstring(response.data)


def feed_links(doc: lxml.html.HtmlElement) -> set[tuple[str, str]]:
    """(name, format) of every feed the page's body links to; format "" is the feed's page."""
    found = set()
    for href in doc.xpath("//body//a/@href"):
        path = urlsplit(href).path
        if path.startswith("/feeds/"):
            name, _, fmt = path.removeprefix("/feeds/").partition(".")
            found.add((name, fmt))
    return found


def autodiscovery(doc: lxml.html.HtmlElement) -> Counter[tuple[str, str]]:
    return Counter(
        (link.get("type"), link.get("href")) for link in doc.xpath("/html/head/link[@rel='alternate']")
    )


def resolves(client: FlaskClient, path: str) -> bool:
    """Whether a root-relative path leads to a document the app serves."""
    return client.get(path).status_code == 200


def small_site(make_site: MakeSite, config: dict | None = None) -> Site:
    return open_site(make_site(config=config), clock=lambda: NOW)


def feed_page(site: Site, name: str, archive_pages: int = 0) -> lxml.html.HtmlElement:
    spec = site.specs[name]
    return lxml.html.fromstring(render_feed_page(site.config, spec, site.feed_entries(spec), archive_pages))


# --- index ----------------------------------------------------------------------------------


def test_index_links_every_feed_to_its_page_and_formats(client: FlaskClient) -> None:
    doc = parse(client.get("/"))
    assert feed_links(doc) == {(name, fmt) for name in SMALL_FEEDS for fmt in ("", *FEED_TYPES)}
    titles = {a.text_content(): a.get("href") for a in doc.xpath("//ul[@class='feeds']/li/a[@class='feed']")}
    assert titles["Alle Meldungen"] == "/feeds/alle"
    assert titles["Kurz"] == "/feeds/kurz"
    assert len(titles) == len(SMALL_FEEDS)
    alle = doc.get_element_by_id("feed-alle")
    formats = [(a.text_content(), a.get("href")) for a in alle.xpath(".//span[@class='formats']/a")]
    assert formats == [
        ("RSS", "/feeds/alle.rss"),
        ("Atom", "/feeds/alle.atom"),
        ("JSON Feed", "/feeds/alle.json"),
    ]


def test_index_autodiscovery_once_per_feed_and_format(client: FlaskClient) -> None:
    found = autodiscovery(parse(client.get("/")))
    expected = {(FEED_TYPES[fmt], f"/feeds/{name}.{fmt}") for name in SMALL_FEEDS for fmt in FEED_TYPES}
    assert set(found) == expected
    assert all(count == 1 for count in found.values())
    for media_type, href in found:
        response = client.get(href)
        assert response.status_code == 200
        assert response.mimetype == media_type


def test_index_offers_every_feed_as_opml(client: FlaskClient) -> None:
    doc = parse(client.get("/"))
    outline = doc.xpath("/html/head/link[@rel='outline']")
    assert [(link.get("type"), link.get("href")) for link in outline] == [("text/x-opml", "/feeds.opml")]
    visible = doc.xpath("//body//a[@href='/feeds.opml']")
    assert [a.text_content() for a in visible] == ["All feeds as OPML"]
    # The list holds exactly the feeds the index shows.
    site: Site = client.application.extensions["feeds"]
    listed = render_opml(site.config, list(site.specs.values()), NOW)
    xml_urls = set(etree.fromstring(listed).xpath("//outline/@xmlUrl"))
    assert xml_urls == {feed_url(site.config, name, "atom") for name in SMALL_FEEDS}


def test_topic_feeds_show_the_description_the_operator_gave(make_site: MakeSite) -> None:
    topics = {"klima": {"title": "Klima und Umwelt", "description": "Alles zu Klima & Wetter"}}
    client = create_app(make_site(config={"topics": topics}), clock=lambda: NOW).test_client()
    doc = parse(client.get("/"))

    def shown(name: str) -> tuple[str, str]:
        (link,) = doc.get_element_by_id(f"feed-{name}").xpath("a[@class='feed']")
        return link.text_content(), (link.tail or "").strip()

    assert shown("klima") == ("Klima und Umwelt", ": Alles zu Klima & Wetter")
    # A topic without a description does not repeat the site's description under every topic.
    assert shown("politik") == ("Testseite: Politik", "")
    assert shown("alle") == ("Alle Meldungen", ": Alles")


def test_demo_index_lists_operator_feeds() -> None:
    demo = create_app(DEMO_CONFIG).test_client()
    doc = parse(demo.get("/"))
    operator = set(yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))["feeds"])
    listed = {name for name, _ in feed_links(doc)}
    assert operator <= listed
    topics = {p.name for p in (DEMO_CONFIG.parent / "articles").iterdir() if p.is_dir()}
    assert topics <= listed  # every topic folder gets its own feed
    assert {href for _, href in autodiscovery(doc)} == {
        f"/feeds/{name}.{fmt}" for name in listed for fmt in FEED_TYPES
    }


@pytest.mark.parametrize("which", ["small", "demo"])
def test_every_index_link_resolves(client: FlaskClient, which: str) -> None:
    if which == "demo":
        client = create_app(DEMO_CONFIG).test_client()
    doc = parse(client.get("/"))
    hrefs = set(doc.xpath("//a/@href | //link/@href"))
    assert len(hrefs) > 5
    assert {"/feeds.opml", "/feeds/alle", "/feeds/alle.json"} <= hrefs
    for href in hrefs:
        assert resolves(client, urlsplit(href).path), href


def test_index_lists_published_articles_newest_first(client: FlaskClient) -> None:
    doc = parse(client.get("/"))
    titles = [a.text_content() for a in doc.xpath("//ul[@class='articles']/li/a")]
    assert titles == ["Dritter Artikel im Exportformat", "Zweiter Artikel", "Erster Artikel"]


def test_drafts_and_embargoed_articles_are_nowhere(client: FlaskClient) -> None:
    index = parse(client.get("/"))
    assert not any(s in index.text_content() for s in SECRETS)
    article_hrefs = [h for h in index.xpath("//a/@href") if h.startswith("/articles/")]
    assert len(article_hrefs) == 3
    for href in article_hrefs:
        assert not any(s in parse(client.get(href)).text_content() for s in SECRETS)
    for path in ("/articles/klima/entwurf", "/articles/klima/sperrfrist"):
        assert client.get(path).status_code == 404


def test_unpublished_topics_leave_no_trace(make_site: MakeSite) -> None:
    """A topic used only by a draft or an embargoed article must not announce itself."""
    articles = {
        "politik/erster.md": "---\ntitle: Erster\ndate: 2025-04-28T09:30:00+02:00\n---\nText\n",
        "politik/plan.md": "---\ntitle: Plan\ndate: 2025-05-04T08:00:00+02:00\ndraft: true\n"
        "topics: [Fusion Acme-Bigcorp]\n---\nx\n",
        "politik/rueck.md": "---\ntitle: R\ndate: 2999-01-01T08:00:00+01:00\n"
        "topics: [Rücktritt Kanzler]\n---\ny\n",
        "geheim/solo.md": "---\ntitle: S\ndate: 2025-05-04T08:00:00+02:00\ndraft: true\n---\nz\n",
    }
    client = create_app(make_site(articles), clock=lambda: NOW).test_client()
    doc = parse(client.get("/"))
    listed = {name for name, _ in feed_links(doc)}
    discovered = {href for _, href in autodiscovery(doc)}
    titles = " ".join(doc.xpath("//link/@title")) + doc.text_content()
    for slug, name in [
        ("fusion-acme-bigcorp", "Fusion Acme-Bigcorp"),
        ("ruecktritt-kanzler", "Rücktritt Kanzler"),
        ("geheim", "geheim"),
    ]:
        assert slug not in listed
        assert not [href for href in discovered if href.startswith(f"/feeds/{slug}.")]
        assert name not in titles
        assert client.get(f"/feeds/{slug}.rss").status_code == 404


def test_odd_article_ids_resolve_from_the_index(make_site: MakeSite) -> None:
    names = ["politik/Grüße aus Köln?.md", "politik/100%.md", "politik/a#b.md", "politik/x+y.md"]
    articles = {
        n: f"---\ntitle: T{i}\ndate: 2025-05-0{i + 1}T08:00:00+02:00\n---\nText {i}\n"
        for i, n in enumerate(names)
    }
    client = create_app(make_site(articles), clock=lambda: NOW).test_client()
    hrefs = parse(client.get("/")).xpath("//ul[@class='articles']/li/a/@href")
    assert len(hrefs) == len(names)
    for href in hrefs:
        page = parse(client.get(href))
        canonical = page.xpath("//link[@rel='canonical']/@href")[0]
        assert urlsplit(canonical).path == href


# --- feed page ----------------------------------------------------------------------------
# Rendered through render_feed_page: the HTTP side does not serve /feeds/<name> yet.


def test_feed_page_shows_the_feed_and_its_entries_newest_first(make_site: MakeSite) -> None:
    site = small_site(make_site)
    doc = feed_page(site, "alle")
    assert doc.get("lang") == "de"
    assert [m.get("charset").lower() for m in doc.xpath("//head/meta[@charset]")] == ["utf-8"]
    assert doc.findtext(".//title") == "Alle Meldungen"
    assert [h.text_content() for h in doc.xpath("//h1")] == ["Alle Meldungen"]
    assert [p.text_content() for p in doc.xpath("//p[@class='description']")] == ["Alles"]
    assert doc.xpath("//link[@rel='canonical']/@href") == ["https://news.example.org/feeds/alle"]
    entries = doc.xpath("//ul[@class='articles']/li")
    assert [(li.find("a").text_content(), li.find("a").get("href")) for li in entries] == [
        ("Dritter Artikel im Exportformat", "/articles/klima/dritter"),
        ("Zweiter Artikel", "/articles/zweiter"),
        ("Erster Artikel", "/articles/erster"),
    ]
    # The date in the site's time zone (Europe/Berlin; 07:30 UTC), then the topics.
    erster = entries[2].xpath("span[@class='meta']")[0]
    assert erster.text_content() == "2025-04-28 09:30 · Politik"
    assert erster.find("time").get("datetime") == "2025-04-28T07:30:00+00:00"
    client = create_app(site.config.path, clock=lambda: NOW).test_client()
    for li in entries:  # every entry's page exists
        assert client.get(li.find("a").get("href")).status_code == 200


def test_feed_page_shows_what_the_feed_shows(make_site: MakeSite) -> None:
    site = small_site(make_site, {"feeds": {"english": {"title": "In English", "language": "en"}}})
    kurz = feed_page(site, "kurz")  # limit: 2
    assert [a.text_content() for a in kurz.xpath("//ul[@class='articles']/li/a")] == [
        "Dritter Artikel im Exportformat",
        "Zweiter Artikel",
    ]
    assert kurz.xpath("//p[@class='description']") == []  # kurz has none
    assert feed_page(site, "english").get("lang") == "en"
    empty = lxml.html.fromstring(render_feed_page(site.config, site.specs["alle"], []))
    assert "No entries yet." in empty.text_content()
    assert empty.xpath("//ul[@class='articles']") == []


def test_feed_page_subscribe_addresses_are_absolute_and_copyable(make_site: MakeSite) -> None:
    site = small_site(make_site)
    doc = feed_page(site, "kurz")
    (section,) = doc.xpath("//section[@id='subscribe']")
    assert section.findtext("h2") == "Subscribe"
    assert "feed reader" in section.text_content()
    expected = [
        (label, f"https://news.example.org/feeds/kurz.{suffix}", media_type)
        for suffix, label, media_type in SUBSCRIBE_FORMATS
    ]
    assert [label for label, _, _ in expected] == ["RSS", "Atom", "JSON Feed"]
    links = section.xpath(".//li/a")
    assert [(a.text_content(), a.get("href"), a.get("type")) for a in links] == expected
    inputs = section.xpath(".//li/input")
    assert [i.get("value") for i in inputs] == [url for _, url, _ in expected]
    assert [url for _, url, _ in expected] == [
        feed_url(site.config, "kurz", s) for s, _, _ in SUBSCRIBE_FORMATS
    ]
    assert all(i.get("readonly") is not None and i.get("aria-label") for i in inputs)
    buttons = section.xpath(".//li/button")
    assert [(b.text_content(), b.get("data-copy")) for b in buttons] == [
        ("Copy", i.get("id")) for i in inputs
    ]
    (script,) = doc.xpath("//script")
    assert "navigator.clipboard.writeText" in script.text and "select()" in script.text
    assert script.get("src") is None
    # Autodiscovery announces this feed only, in all three formats.
    assert autodiscovery(doc) == Counter(
        (media_type, f"/feeds/kurz.{suffix}") for suffix, _, media_type in SUBSCRIBE_FORMATS
    )


def test_feed_page_escapes_titles(make_site: MakeSite) -> None:
    site = small_site(make_site)
    spec = replace(site.specs["alle"], title=HOSTILE, description=f"Über {HOSTILE}")
    entries = site.feed_entries(spec)
    entries[0] = replace(entries[0], title=f"Eintrag {HOSTILE}")
    body = render_feed_page(site.config, spec, entries)
    assert b"<script>alert" not in body
    doc = lxml.html.fromstring(body)
    assert doc.findtext(".//title") == HOSTILE
    assert doc.xpath("//h1")[0].text_content() == HOSTILE
    assert doc.xpath("//p[@class='description']")[0].text_content() == f"Über {HOSTILE}"
    assert doc.xpath("//meta[@name='description']/@content") == [f"Über {HOSTILE}"]
    assert doc.xpath("//ul[@class='articles']/li/a")[0].text_content() == f"Eintrag {HOSTILE}"
    assert doc.xpath("//link[@rel='alternate']/@title") == [
        f"{HOSTILE} ({label})" for _, label, _ in SUBSCRIBE_FORMATS
    ]
    assert len(doc.xpath("//script")) == 1  # only the page's own


def test_archive_sentence_only_with_archive_pages(make_site: MakeSite) -> None:
    site = small_site(make_site)
    plain = feed_page(site, "alle")
    assert "Older entries" not in plain.text_content()
    assert not [h for h in plain.xpath("//@href") if "/archive/" in h]
    doc = feed_page(site, "alle", archive_pages=3)
    (sentence,) = doc.xpath("//p[@id='archive']")
    assert sentence.text_content() == "Older entries are in the archive."
    hrefs = [h for h in doc.xpath("//@href") if "/archive/" in h]
    assert hrefs == ["/feeds/alle/archive/3.atom"]  # the newest archive page
    assert hrefs[0] == urlsplit(archive_url(site.config, "alle", 3, "atom")).path


def test_feed_page_of_a_site_under_a_path(make_site: MakeSite) -> None:
    site = small_site(make_site, {"site": {"url": "https://example.org/news"}})
    doc = feed_page(site, "alle", archive_pages=1)
    assert doc.xpath("//section[@id='subscribe']//input/@value") == [
        f"https://example.org/news/feeds/alle.{suffix}" for suffix, _, _ in SUBSCRIBE_FORMATS
    ]
    assert {href for _, href in autodiscovery(doc)} == {
        f"/news/feeds/alle.{suffix}" for suffix, _, _ in SUBSCRIBE_FORMATS
    }
    assert doc.xpath("//p[@id='archive']/a/@href") == ["/news/feeds/alle/archive/1.atom"]
    assert doc.xpath("//link[@rel='canonical']/@href") == [feed_page_url(site.config, "alle")]
    assert doc.xpath("//header/a/@href") == ["/news/"]


@pytest.mark.parametrize(
    ("icon", "href"),
    [
        (None, None),
        ("/static/icon.png", "/static/icon.png"),  # the site's own: root-relative like every link
        ("https://cdn.example.net/i.png", "https://cdn.example.net/i.png"),
    ],
)
def test_site_icon_on_every_page(make_site: MakeSite, icon: str | None, href: str | None) -> None:
    config = make_site(config={"site": {"icon": icon}} if icon else None)
    client = create_app(config, clock=lambda: NOW).test_client()
    pages = [parse(client.get(p)) for p in ("/", "/articles/erster", "/feeds/alle")]
    for doc in pages:
        assert doc.xpath("//link[@rel='icon']/@href") == ([href] if href else [])


# --- article page ---------------------------------------------------------------------------


def test_article_page(client: FlaskClient) -> None:
    response = client.get("/articles/erster")
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    doc = parse(response)
    assert doc.get("lang") == "de"
    assert [m.get("charset").lower() for m in doc.xpath("//head/meta[@charset]")] == ["utf-8"]
    assert [h.text_content() for h in doc.xpath("//h1")] == ["Erster Artikel"]
    assert "Erster Artikel" in doc.findtext(".//title")
    assert doc.xpath("//link[@rel='canonical']/@href") == [CANONICAL]
    body = doc.xpath("//article")[0]
    assert [s.text_content() for s in body.xpath(".//strong")] == ["Absatz"]
    # Relative links are made absolute against the site URL; a picture beside the article is
    # the site's own, root-relative on its pages like every link between them.
    assert "https://news.example.org/archiv/1" in body.xpath(".//a/@href")
    assert body.xpath(".//img/@src") == ["/media/politik/images/a.png"]


def test_non_ascii_title_survives(make_site: MakeSite) -> None:
    articles = {
        "politik/umlaut.md": """\
        ---
        title: Grüße aus Köln – „Zitat“
        date: 2025-05-01T08:00:00+02:00
        ---
        Straße
        """
    }
    client = create_app(make_site(articles), clock=lambda: NOW).test_client()
    doc = parse(client.get("/articles/politik/umlaut"))
    assert doc.xpath("//h1")[0].text_content() == "Grüße aus Köln – „Zitat“"
    assert "Straße" in doc.xpath("//article")[0].text_content()


def test_article_language_sets_html_lang(make_site: MakeSite) -> None:
    articles = {
        "science/comet.md": """\
        ---
        title: A comet
        date: 2025-05-01T08:00:00+02:00
        language: en
        ---
        Bright.
        """
    }
    client = create_app(make_site(articles), clock=lambda: NOW).test_client()
    assert parse(client.get("/articles/science/comet")).get("lang") == "en"


def test_an_article_page_gives_the_byline_the_feeds_give(make_site: MakeSite) -> None:
    articles = {
        "politik/zwei.md": """\
        ---
        title: Zu zweit
        date: 2025-05-01T08:00:00+02:00
        author: [{name: Anna Beispiel, email: anna@example.org}, Jonas Muster]
        ---
        Text.
        """,
        "science/three.md": """\
        ---
        title: Three
        date: 2025-05-02T08:00:00+02:00
        language: en
        author: [A, B, C]
        ---
        Text.
        """,
    }
    client = create_app(make_site(articles), clock=lambda: NOW).test_client()
    german = parse(client.get("/articles/politik/zwei")).xpath("string(//p[@class='meta'])")
    assert "Anna Beispiel und Jonas Muster" in german and "anna@example.org" not in german
    english = parse(client.get("/articles/science/three")).xpath("string(//p[@class='meta'])")
    assert "A, B and C" in english


def test_article_body_is_sanitized(make_site: MakeSite) -> None:
    articles = {
        "politik/boese.md": """\
        ---
        title: Böse
        date: 2025-05-01T08:00:00+02:00
        ---
        Hallo <script>alert("x")</script> Welt.

        <p onclick="steal()" onmouseover="steal()">Absatz</p>

        [Klick](javascript:alert(1)) <a href="JaVaScRiPt:alert(2)">zwei</a>

        <iframe src="https://evil.example/"></iframe>
        <img src="x.png" onerror="steal()">
        """
    }
    client = create_app(make_site(articles), clock=lambda: NOW).test_client()
    doc = parse(client.get("/articles/politik/boese"))
    assert not doc.xpath("//script | //iframe | //object | //embed")
    assert not [
        attr
        for el in doc.iter()
        if isinstance(el.tag, str)
        for attr in el.attrib
        if attr.lower().startswith("on")
    ]
    hrefs = doc.xpath("//@href | //@src")
    assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")]
    text = doc.xpath("//article")[0].text_content()
    assert "Welt" in text and "Absatz" in text


def test_article_page_announces_its_topic_feeds(client: FlaskClient) -> None:
    doc = parse(client.get("/articles/erster"))  # topic: Politik
    assert autodiscovery(doc) == Counter(
        (media_type, f"/feeds/politik.{suffix}") for suffix, _, media_type in SUBSCRIBE_FORMATS
    )
    topics = doc.xpath("//article/p[@class='meta'][starts-with(normalize-space(), 'Topics:')]/a")
    assert [(a.text_content(), a.get("href")) for a in topics] == [("Politik", "/feeds/politik")]


def test_article_image_alt_and_caption(make_site: MakeSite) -> None:
    articles = {
        "politik/bild.md": """\
        ---
        title: Mit Bild
        date: 2025-05-01T08:00:00+02:00
        image: images/kursk.jpg
        image_alt: Soldaten <im> "Schnee" & Eis
        ---
        Text
        """,
        "politik/ohne.md": """\
        ---
        title: Ohne Beschreibung
        date: 2025-05-02T08:00:00+02:00
        image: images/leer.jpg
        ---
        Text
        """,
    }
    config = make_site(articles)
    (config.parent / "articles" / "politik" / "images").mkdir()
    for name in ("kursk.jpg", "leer.jpg"):
        (config.parent / "articles" / "politik" / "images" / name).write_bytes(b"\xff\xd8\xff\xe0 JFIF")
    client = create_app(config, clock=lambda: NOW).test_client()
    (figure,) = parse(client.get("/articles/politik/bild")).xpath("//article/figure")
    (img,) = figure.xpath("img")
    assert img.get("src") == "/media/politik/images/kursk.jpg"
    assert img.get("alt") == 'Soldaten <im> "Schnee" & Eis'
    assert [c.text_content() for c in figure.xpath("figcaption")] == ['Soldaten <im> "Schnee" & Eis']
    (figure,) = parse(client.get("/articles/politik/ohne")).xpath("//article/figure")
    assert figure.xpath("img/@alt") == [""]  # decorative: announced as nothing, not as a file name
    assert figure.xpath("figcaption") == []


# --- one real browser -----------------------------------------------------------------------


@pytest.fixture
def live_server(make_site: MakeSite) -> Iterator[str]:
    app: Flask = create_app(make_site(), clock=lambda: NOW)
    with harness.in_thread(make_server(harness.HOST, 0, app, threaded=True)) as server:
        yield f"http://{harness.HOST}:{server.server_port}"


def browse(url: str, profile: Path) -> tuple[lxml.html.HtmlElement, list[str]]:
    """The DOM after the page's scripts ran, and what the page wrote to its console (errors too)."""
    result = subprocess.run(
        # Console messages, uncaught exceptions included, go to stderr as "...:CONSOLE..." lines.
        browser.command(profile, "--enable-logging=stderr", "--v=0", "--dump-dom", url),
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr[-2000:]
    console = [line for line in stderr.splitlines() if ":CONSOLE" in line]
    return lxml.html.fromstring(result.stdout), console


def dump_dom(url: str, profile: Path) -> lxml.html.HtmlElement:
    doc, console = browse(url, profile)
    assert console == []
    return doc


def test_real_browser_renders_index_and_article(live_server: str, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip("chromium is not installed")
    index = dump_dom(f"{live_server}/", tmp_path / "profile")
    assert index.findtext(".//h1") == "Testseite"
    assert feed_links(index) == {(name, fmt) for name in SMALL_FEEDS for fmt in ("", *FEED_TYPES)}
    articles = index.xpath("//ul[@class='articles']/li/a")
    assert [a.get("href") for a in articles] == [
        "/articles/klima/dritter",
        "/articles/zweiter",
        "/articles/erster",
    ]
    assert not any(s in index.text_content() for s in SECRETS)

    page = dump_dom(f"{live_server}/articles/erster", tmp_path / "profile")
    assert page.get("lang") == "de"
    assert page.xpath("//h1")[0].text_content() == "Erster Artikel"
    assert page.xpath("//link[@rel='canonical']/@href") == [CANONICAL]
    assert "Absatz" in page.xpath("//article")[0].text_content()


def test_real_browser_runs_the_feed_page(make_site: MakeSite, tmp_path: Path) -> None:
    """The copy buttons are shown by the page's script: visible buttons mean it ran to the end."""
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip("chromium is not installed")
    site = small_site(make_site)
    spec = replace(site.specs["alle"], title=HOSTILE)
    page = tmp_path / "alle.html"
    page.write_bytes(render_feed_page(site.config, spec, site.feed_entries(spec), archive_pages=2))
    doc, console = browse(page.as_uri(), tmp_path / "profile")
    assert console == []
    assert doc.findtext(".//title") == HOSTILE
    inputs = doc.xpath("//section[@id='subscribe']//input")
    assert [i.get("value") for i in inputs] == [
        f"https://news.example.org/feeds/alle.{suffix}" for suffix, _, _ in SUBSCRIBE_FORMATS
    ]
    buttons = doc.xpath("//section[@id='subscribe']//button")
    assert [b.text_content() for b in buttons] == ["Copy"] * 3
    assert [b for b in buttons if b.get("hidden") is not None] == []
    assert len(doc.xpath("//ul[@class='articles']/li")) == 3
