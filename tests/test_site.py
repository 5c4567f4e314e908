"""site.py: every document, deterministic bytes, embargoes, drafts."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import anyfeed
import feedparser
import lxml.html
import pytest
from lxml import etree

from feeds import create_app
from feeds.errors import NotFound
from feeds.site import FORMATS, Site, open_site

from conftest import DEMO_CONFIG, NOW, MakeSite

SECRETS = ("DRAFT-SECRET", "EMBARGO-SECRET")
EMBARGO_LIFTS = datetime(2030, 1, 1, 7, 0, tzinfo=UTC)  # SMALL_ARTICLES' sperrfrist.md


def load(path) -> Site:
    return open_site(str(path), clock=lambda: NOW)


def every_document(site: Site) -> dict[str, object]:
    docs: dict[str, object] = {"index": site.index_page()}
    for name in site.specs:
        for fmt in FORMATS:
            docs[f"feed {name}.{fmt}"] = site.feed(name, fmt)
    for article in site.published():
        docs[f"page {article.id}"] = site.page(article.id)
    return docs


def feed_text(body: bytes) -> str:
    """Every text and attribute value, via lxml and via feedparser (which unescapes HTML)."""
    if anyfeed.is_json(body):
        parts = [body.decode()]
    else:
        root = etree.fromstring(body)
        parts = [t for t in root.itertext()] + [v for el in root.iter() for v in el.attrib.values()]
    parsed = anyfeed.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    parts += [parsed.feed.get("title", ""), parsed.feed.get("subtitle", "")]
    for entry in parsed.entries:
        parts += [entry.get("title", ""), entry.get("summary", ""), entry.get("id", "")]
        parts += [c.value for c in entry.get("content", [])]
        parts += [t.term for t in entry.get("tags", [])]
    return "\n".join(parts)


def html_text(body: bytes) -> str:
    root = lxml.html.fromstring(body)
    return "\n".join([root.text_content()] + [v for el in root.iter() for v in el.attrib.values()])


def entry_titles(body: bytes) -> list[str]:
    return [e.title for e in anyfeed.parse(body).entries]


# --- determinism ---------------------------------------------------------------------------


def test_two_loads_of_the_same_files_give_identical_documents(make_site: MakeSite) -> None:
    path = make_site()
    first, second = every_document(load(path)), every_document(load(path))
    assert first.keys() == second.keys()
    assert len(first) > 5
    for key, doc in first.items():
        other = second[key]
        assert (doc.body, doc.gzipped, doc.etag, doc.last_modified) == (
            other.body,
            other.gzipped,
            other.etag,
            other.last_modified,
        ), key


def test_copies_in_different_folders_give_identical_documents(make_site: MakeSite) -> None:
    one, two = load(make_site(name="eins")), load(make_site(name="zwei"))
    docs_one, docs_two = every_document(one), every_document(two)
    assert {k: (d.body, d.etag) for k, d in docs_one.items()} == {
        k: (d.body, d.etag) for k, d in docs_two.items()
    }


def test_two_app_instances_serve_identical_bytes_and_validators(make_site: MakeSite) -> None:
    path = make_site()
    clients = [create_app(path, clock=lambda: NOW).test_client() for _ in range(2)]
    urls = [
        "/",
        "/articles/erster",
        "/feeds/alle.rss",
        "/feeds/alle.atom",
        "/feeds/kurz.atom",
        "/feeds/politik.rss",
    ]
    for url in urls:
        a, b = (c.get(url) for c in clients)
        assert a.status_code == b.status_code == 200, url
        assert a.data == b.data, url
        assert a.headers["ETag"] == b.headers["ETag"], url
        assert a.headers["Last-Modified"] == b.headers["Last-Modified"], url


def test_gzip_twin_decompresses_to_the_body_and_is_stable(make_site: MakeSite) -> None:
    path = make_site()
    first, second = every_document(load(path)), every_document(load(path))
    for key, doc in first.items():
        assert gzip.decompress(doc.gzipped) == doc.body, key
        assert doc.gzipped == second[key].gzipped, key


def test_etag_differs_between_documents(make_site: MakeSite) -> None:
    docs = every_document(load(make_site()))
    assert len({d.etag for d in docs.values()}) == len(docs)


# --- nothing unpublished leaks -------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Site:
    return load(DEMO_CONFIG)


def test_demo_really_holds_a_draft_and_an_embargoed_article(demo: Site) -> None:
    hidden = [a for a in demo.all_articles() if not a.is_published(NOW)]
    assert {a.draft for a in hidden} == {True, False}
    assert all(any(s in a.title for s in SECRETS) for a in hidden)


def test_demo_feeds_never_show_drafts_or_embargoed(demo: Site) -> None:
    checked = 0
    for name in demo.specs:
        for fmt in FORMATS:
            text = feed_text(demo.feed(name, fmt).body)
            for secret in SECRETS:
                assert secret not in text, f"{secret} in {name}.{fmt}"
            checked += 1
    assert checked == len(FORMATS) * len(demo.specs) >= 12
    assert "Redaktion" in feed_text(demo.feed("alle", "atom").body)  # the probe does see text


def test_demo_pages_and_index_never_show_drafts_or_embargoed(demo: Site) -> None:
    texts = {"index": html_text(demo.index_page().body)}
    texts |= {a.id: html_text(demo.page(a.id).body) for a in demo.published()}
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} on {where}"
    for article in demo.all_articles():
        if not article.is_published(NOW):
            with pytest.raises(NotFound):
                demo.page(article.id)


def test_a_topic_used_only_by_a_draft_is_not_revealed(make_site: MakeSite) -> None:
    site = load(
        make_site(
            {
                "a/sichtbar.md": "---\ntitle: Sichtbar\ndate: 2025-01-01\n---\nText\n",
                "b/geheim.md": "---\ntitle: Geheim\ndate: 2025-01-02\ndraft: true\n"
                "topics: [DRAFT-SECRET Fusion]\n---\nText\n",
                "c/spaeter.md": "---\ntitle: Spaeter\ndate: 2031-01-01\n"
                "topics: [EMBARGO-SECRET Uebernahme]\n---\nText\n",
            }
        )
    )
    text = html_text(site.index_page().body) + "".join(
        feed_text(site.feed(n, f).body) for n in site.specs for f in FORMATS
    )
    for secret in SECRETS:
        assert secret.lower() not in text.lower()


# --- time moves on -------------------------------------------------------------------------


def test_an_embargoed_article_appears_when_its_time_comes(make_site: MakeSite) -> None:
    path = make_site()
    now = [NOW]
    site = open_site(str(path), clock=lambda: now[0])
    assert site.view().valid_until == EMBARGO_LIFTS
    old_feed, old_index = site.feed("alle", "atom"), site.index_page()
    embargoed = next(a for a in site.all_articles() if "EMBARGO-SECRET" in a.title)
    assert not any("EMBARGO-SECRET" in t for t in entry_titles(old_feed.body))

    now[0] = EMBARGO_LIFTS - timedelta(seconds=1)
    assert site.feed("alle", "atom") is old_feed  # nothing changed: the cached document
    with pytest.raises(NotFound):
        site.page(embargoed.id)

    generation = site.live.snapshot.generation
    now[0] = EMBARGO_LIFTS  # no file event, no reload: only the clock moves
    for fmt in FORMATS:
        assert entry_titles(site.feed("alle", fmt).body)[0] == embargoed.title
    assert site.live.snapshot.generation == generation
    assert "EMBARGO-SECRET" in html_text(site.page(embargoed.id).body)
    assert "EMBARGO-SECRET" in html_text(site.index_page().body)
    new_feed = site.feed("alle", "atom")
    assert new_feed.last_modified > old_feed.last_modified
    assert new_feed.etag != old_feed.etag
    assert site.index_page().last_modified > old_index.last_modified
    # No embargo is left; the next change by the clock alone: the article leaves the news sitemap.
    assert site.view().valid_until == EMBARGO_LIFTS + timedelta(hours=48)
    assert "DRAFT-SECRET" not in feed_text(site.feed("alle", "rss").body)


def test_served_last_modified_increases_when_the_embargo_lifts(make_site: MakeSite) -> None:
    now = [NOW]
    client = create_app(make_site(), clock=lambda: now[0]).test_client()
    before = client.get("/feeds/alle.rss")
    now[0] = EMBARGO_LIFTS + timedelta(minutes=5)
    after = client.get("/feeds/alle.rss")
    assert parsedate_to_datetime(after.headers["Last-Modified"]) > parsedate_to_datetime(
        before.headers["Last-Modified"]
    )
    assert after.headers["ETag"] != before.headers["ETag"]


# --- lookups and empty feeds ---------------------------------------------------------------


@pytest.mark.parametrize("name, fmt", [("nope", "rss"), ("alle", "xml"), ("alle", ""), ("", "atom")])
def test_unknown_feed_raises_not_found(make_site: MakeSite, name: str, fmt: str) -> None:
    with pytest.raises(NotFound):
        load(make_site()).feed(name, fmt)


@pytest.mark.parametrize("article_id", ["nope", "", "erster.html", "politik/erster"])
def test_unknown_page_raises_not_found(make_site: MakeSite, article_id: str) -> None:
    with pytest.raises(NotFound):
        load(make_site()).page(article_id)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_feed_still_renders_with_the_sites_latest_date(make_site: MakeSite, fmt: str) -> None:
    site = load(make_site(config={"feeds": {"leer": {"title": "Leer", "topics": ["gibt-es-nicht"]}}}))
    doc = site.feed("leer", fmt)
    parsed = anyfeed.parse(doc.body)
    assert not parsed.bozo and parsed.entries == []
    newest = max(a.updated for a in site.published())
    assert doc.last_modified == newest
    if fmt != "json":  # JSON Feed has no date of its own, only its items'
        assert datetime(*parsed.feed.updated_parsed[:6], tzinfo=UTC) == newest


def test_feed_documents_carry_media_type_and_cache_lifetime(make_site: MakeSite) -> None:
    site = load(make_site())
    assert site.feed("kurz", "rss").mimetype.startswith("application/rss+xml")
    assert site.feed("kurz", "atom").mimetype.startswith("application/atom+xml")
    assert site.feed("kurz", "rss").max_age == 600
    assert len(feedparser.parse(site.feed("kurz", "atom").body).entries) == 2


# --- reloads: every change reaches every document ---------------------------------------------


def test_a_config_change_after_an_article_edit_reaches_rendered_documents(make_site: MakeSite) -> None:
    """Regression: the generation was the index's plus the config's, so replacing the index on a
    config reload could give the same number again and leave documents with the old site.url."""
    path = make_site()
    site = load(path)
    assert "https://news.example.org/" in site.feed("alle", "atom").body.decode()
    edited = path.parent / "articles" / "politik" / "erster.md"
    edited.write_text(
        edited.read_text(encoding="utf-8").replace("Erster Artikel", "Bearbeitet"), encoding="utf-8"
    )
    assert site.apply(["politik/erster.md"]) is True
    assert "Bearbeitet" in site.feed("alle", "atom").body.decode()
    path.write_text(
        path.read_text(encoding="utf-8").replace("news.example.org", "neu.example.org"), encoding="utf-8"
    )
    assert site.apply(config_changed=True) is True
    for name in ("alle", "politik"):
        for fmt in FORMATS:
            body = site.feed(name, fmt).body.decode()
            assert "neu.example.org" in body and "news.example.org" not in body, (name, fmt)
    assert "neu.example.org" in site.page("erster").body.decode()


def test_metrics_count_the_index_in_use_after_a_config_reload(make_site: MakeSite) -> None:
    path = make_site()
    app = create_app(path, clock=lambda: NOW, watch=False)
    client = app.test_client()

    def loaded() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        return float(
            next(line.split()[1] for line in text.splitlines() if line.startswith("feeds_articles_loaded"))
        )

    assert loaded() == 5
    (path.parent / "articles" / "politik" / "dritter.md").write_text(
        "---\ntitle: Neu\ndate: 2025-06-01\n---\nx\n", encoding="utf-8"
    )
    path.write_text(
        path.read_text(encoding="utf-8").replace("news.example.org", "neu.example.org"), encoding="utf-8"
    )
    site: Site = app.extensions["feeds"]
    assert site.apply(config_changed=True) is True  # a new url: the articles are read again
    assert loaded() == 6


def test_check_names_the_feeds_trimmed_to_max_bytes(make_site: MakeSite) -> None:
    from click.testing import CliRunner

    from feeds.cli import cli

    body = "Ein langer Absatz. " * 2000  # ~38 KB per article
    articles = {
        f"politik/lang{i}.md": f"---\ntitle: Lang {i}\ndate: 2025-05-0{i + 1}\n---\n{body}\n"
        for i in range(4)
    }
    path = make_site(articles=articles, config={"defaults": {"max_bytes": 65536}})
    site = load(path)
    doc = site.feed("alle", "atom")
    assert len(doc.body) <= 65536 and "summary only" in doc.note
    parsed = feedparser.parse(doc.body)
    assert not parsed.bozo and len(parsed.entries) == 4
    result = CliRunner().invoke(cli, ["--config", str(path), "check"])
    assert "feed 'alle' (atom, max_bytes 65536): trimmed" in result.output


def test_requests_never_wait_on_a_parse(make_site: MakeSite, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow file (huge, hostile) is parsed before the index is touched: reads go on meanwhile."""
    import threading

    import feeds.records

    path = make_site()
    app = create_app(path, clock=lambda: NOW, watch=False)
    client = app.test_client()
    site: Site = app.extensions["feeds"]
    parsing, release = threading.Event(), threading.Event()
    real = feeds.records.parse_meta

    def slow(source, config, teaser=True):  # type: ignore[no-untyped-def]
        parsing.set()
        release.wait(30)
        return real(source, config, teaser)

    monkeypatch.setattr(feeds.records, "parse_meta", slow)
    (path.parent / "articles" / "politik" / "neu.md").write_text(
        "---\ntitle: Neu\ndate: 2025-06-01\n---\nx\n"
    )
    reload = threading.Thread(target=site.apply, args=(["politik/neu.md"],))
    reload.start()
    assert parsing.wait(10)
    answers: list[int] = []
    reader = threading.Thread(
        target=lambda: answers.extend(client.get(p).status_code for p in ("/healthz", "/feeds/alle.rss", "/"))
    )
    reader.start()
    reader.join(10)
    release.set()
    reload.join(10)
    assert answers == [200, 200, 200], "a request waited for the parse to finish"
    assert "Neu" in client.get("/feeds/alle.rss").get_data(as_text=True)


def test_requests_never_wait_on_a_write(make_site: MakeSite, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer holds the index's write transaction (a burst of thousands of files): readers go
    on with the snapshot before it, and see the whole batch once it commits."""
    import threading

    import feeds.store.writes

    path = make_site()
    app = create_app(path, clock=lambda: NOW, watch=False)
    client = app.test_client()
    site: Site = app.extensions["feeds"]
    writing, release = threading.Event(), threading.Event()
    real = feeds.store.writes.put

    def slow(db, rel, record):  # type: ignore[no-untyped-def]
        writing.set()
        release.wait(30)
        return real(db, rel, record)

    monkeypatch.setattr(feeds.store.writes, "put", slow)
    articles = path.parent / "articles" / "politik"
    (articles / "neu.md").write_text("---\ntitle: Neu\ndate: 2025-06-01\n---\nx\n")
    (articles / "erster.md").unlink()
    reload = threading.Thread(target=site.apply, args=(["politik/neu.md", "politik/erster.md"],))
    reload.start()
    try:
        assert writing.wait(10)
        answers: list[int] = []
        paths = ("/healthz", "/feeds/alle.rss", "/")
        reader = threading.Thread(target=lambda: answers.extend(client.get(p).status_code for p in paths))
        reader.start()
        reader.join(10)
        assert answers == [200, 200, 200], "a request waited for the write to finish"
        assert "Neu" not in client.get("/feeds/alle.rss").get_data(as_text=True)  # not half a batch
    finally:
        release.set()
        reload.join(10)
    after = client.get("/feeds/alle.rss").get_data(as_text=True)
    assert "Neu" in after and "Erster Artikel" not in after


def test_a_site_can_be_built_from_articles_in_memory() -> None:
    """Site takes its parts; only open_site touches the disk (tests and tools build their own)."""
    from feeds.articles import Article, Topic
    from feeds.config import SiteConfig
    from feeds.store import IndexStore

    config = SiteConfig(
        title="Im Speicher",
        url="https://mem.example.org/",
        description="",
        language="de",
        timezone="UTC",
        author=None,
        articles_dir=Path("/nonexistent"),
    )
    article = Article(
        id="eins",
        path="t/eins.md",
        title="Eins",
        published=NOW - timedelta(days=1),
        updated=NOW - timedelta(days=1),
        url="https://mem.example.org/articles/eins",
        permalink="https://mem.example.org/articles/eins",
        topics=(Topic("t", "T"),),
        html="<p>MEMORY-BODY</p>",
        summary="Kurz",
    )
    site = Site(config, IndexStore.of(config, [article]), clock=lambda: NOW)
    assert list(site.specs) == ["t"]
    entry = feedparser.parse(site.feed("t", "atom").body).entries[0]
    assert entry.title == "Eins" and "MEMORY-BODY" in entry.content[0].value
    assert "MEMORY-BODY" in site.page("eins").body.decode()


def test_a_change_is_in_the_shared_index_at_once_and_a_restart_reads_no_file(
    make_site: MakeSite, tmp_path, parses: list[str]
) -> None:
    """The index is the database in the state folder: a change applied by one worker is there
    for the next start (and for the other workers) without any file being read again."""
    path = make_site()
    site = open_site(str(path), clock=lambda: NOW, state_dir=tmp_path / "state")
    article = path.parent / "articles" / "politik" / "erster.md"
    article.write_text("---\nid: erster\ntitle: Zwei\ndate: 2025-04-28\n---\nx\n", encoding="utf-8")
    assert site.apply(["politik/erster.md"])
    parses.clear()
    restarted = open_site(str(path), clock=lambda: NOW, state_dir=tmp_path / "state")
    assert restarted.live.snapshot.verified and parses == []
    assert "Zwei" in restarted.feed("alle", "atom").body.decode()
    other = open_site(str(path), clock=lambda: NOW, state_dir=tmp_path / "state", verify=False)
    assert "Zwei" in other.feed("alle", "atom").body.decode()
    article.write_text("---\nid: erster\ntitle: Drei\ndate: 2025-04-28\n---\nx\n", encoding="utf-8")
    assert site.apply(["politik/erster.md"])
    assert other.live.refresh()  # what its writer thread does on every tick
    assert "Drei" in other.feed("alle", "atom").body.decode()  # written by the first worker


def test_topic_names_no_article_uses_are_warned_with_line_and_hint(make_site: MakeSite) -> None:
    config = make_site(config={"topics": {"klima": "Klima und Umwelt", "politk": "Politik"}})
    site = open_site(config, lambda: NOW)
    warnings = [p for p in site.problems() if "topics." in p.message]
    assert [(p.severity.value, p.message) for p in warnings] == [
        ("warning", "topics.politk: no article has this topic; its title is unused; did you mean 'politik'?")
    ]
    assert config.read_text().split("\n")[warnings[0].line - 1].strip().startswith("politk")
    assert site.specs["klima"].title == "Klima und Umwelt"


def test_of_two_workers_taking_in_one_change_one_reads_the_files(
    make_site: MakeSite, tmp_path: Path, parses: list[str]
) -> None:
    """Both workers' writers get the same events; the first to take the index's write lock reads
    each file, the other finds the rows at the files' versions already and only publishes."""
    path = make_site()
    first = open_site(str(path), clock=lambda: NOW, state_dir=tmp_path / "state")
    second = open_site(str(path), clock=lambda: NOW, state_dir=tmp_path / "state")
    article = path.parent / "articles" / "politik" / "erster.md"
    article.write_text("---\nid: erster\ntitle: Neu gelesen\ndate: 2025-04-28\n---\nx\n", encoding="utf-8")
    parses.clear()
    assert first.apply(["politik/erster.md"])
    assert second.apply(["politik/erster.md"])  # changed for its readers: the other worker wrote it
    assert parses == ["politik/erster.md"]
    assert "Neu gelesen" in second.feed("alle", "atom").body.decode()
