"""The HTML index and article pages, parsed as a browser would (lxml.html, one real Chromium)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from feeds import create_app

from conftest import DEMO_CONFIG, NOW, MakeSite

CHROMIUM = "/usr/bin/chromium"
CANONICAL = "https://news.example.org/articles/erster"
SMALL_FEEDS = {"alle", "kurz", "klima", "politik"}
FEED_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml"}
SECRETS = ("DRAFT-SECRET", "EMBARGO-SECRET")


def parse(response) -> lxml.html.HtmlElement:
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    return lxml.html.fromstring(response.data)


def feed_links(doc: lxml.html.HtmlElement) -> set[tuple[str, str]]:
    """(name, format) of every feed the page's body links to."""
    found = set()
    for href in doc.xpath("//body//a/@href"):
        path = urlsplit(href).path
        if path.startswith("/feeds/"):
            name, _, fmt = path.removeprefix("/feeds/").rpartition(".")
            found.add((name, fmt))
    return found


def autodiscovery(doc: lxml.html.HtmlElement) -> Counter[tuple[str, str]]:
    return Counter(
        (link.get("type"), link.get("href")) for link in doc.xpath("/html/head/link[@rel='alternate']")
    )


# --- index ----------------------------------------------------------------------------------


def test_index_lists_every_feed_in_both_formats(client: FlaskClient) -> None:
    doc = parse(client.get("/"))
    assert feed_links(doc) == {(name, fmt) for name in SMALL_FEEDS for fmt in FEED_TYPES}
    titles = {el.text_content().strip() for el in doc.xpath("//ul[@class='feeds']/li/strong")}
    assert {"Alle Meldungen", "Kurz"} <= titles


def test_index_autodiscovery_once_per_feed_and_format(client: FlaskClient) -> None:
    found = autodiscovery(parse(client.get("/")))
    expected = {(FEED_TYPES[fmt], f"/feeds/{name}.{fmt}") for name in SMALL_FEEDS for fmt in FEED_TYPES}
    assert set(found) == expected
    assert all(count == 1 for count in found.values())
    for _, href in found:
        response = client.get(href)
        assert response.status_code == 200
        assert response.mimetype == FEED_TYPES[href.rpartition(".")[2]]


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
    for href in hrefs:
        assert client.get(urlsplit(href).path).status_code == 200, href


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
    # Relative links and images are made absolute against the site URL.
    assert "https://news.example.org/archiv/1" in body.xpath(".//a/@href")
    assert body.xpath(".//img/@src") == ["https://news.example.org/images/a.png"]


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


# --- one real browser -----------------------------------------------------------------------


@pytest.fixture
def live_server(make_site: MakeSite) -> Iterator[str]:
    app: Flask = create_app(make_site(), clock=lambda: NOW)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def dump_dom(url: str, profile: Path) -> lxml.html.HtmlElement:
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return lxml.html.fromstring(result.stdout)


def test_real_browser_renders_index_and_article(live_server: str, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip("chromium is not installed")
    index = dump_dom(f"{live_server}/", tmp_path / "profile")
    assert index.findtext(".//h1") == "Testseite"
    assert feed_links(index) == {(name, fmt) for name in SMALL_FEEDS for fmt in FEED_TYPES}
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
