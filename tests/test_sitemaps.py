"""Sitemaps and robots.txt as a search engine reads them: /sitemap.xml (an index of stable pages
when large), /sitemap-news.xml (the last 48 hours), /robots.txt naming both."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from lxml import etree

from feeds import create_app
from feeds.cli import cli
from feeds.export import build
from feeds.inventory import digest, other_documents
from feeds.site import Site
from feeds.sitemaps import ENTRY_BYTES, news_language, page_count, page_slice

from conftest import NOW, SMALL_ARTICLES, MakeSite, shared

SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
NEWS = "{http://www.google.com/schemas/sitemap-news/0.9}"
BASE = "https://news.example.org/"
GZIP = {"Accept-Encoding": "gzip"}
Clock = list[datetime]


def schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(shared(f"schemas/{name}"))))


def valid(body: bytes, name: str = "sitemap-with-news.xsd") -> etree._Element:
    """The parsed document, once the schema (a test instrument from ../shared) accepts it."""
    root = etree.fromstring(body)
    checker = schema(name)
    assert checker.validate(root), checker.error_log
    return root


def locs(root: etree._Element) -> list[str]:
    return [str(loc.text) for loc in root.iter(f"{SM}loc")]


def article(title: str, when: datetime, *extra: str) -> str:
    return "\n".join(["---", f"title: {title}", f"date: {when.isoformat()}", *extra, "---", "Text.", ""])


def app_for(path: Path, now: Clock, **options: int) -> tuple[FlaskClient, Site]:
    app = create_app(path, clock=lambda: now[0], **options)
    return app.test_client(), app.extensions["feeds"]


# -- /sitemap.xml ---------------------------------------------------------------------------------


def test_sitemap_lists_every_published_article_page_with_its_date_and_the_feed_pages(
    make_site: MakeSite,
) -> None:
    articles: dict[str, str | bytes] = dict(SMALL_ARTICLES)
    articles["politik/anderswo.md"] = article(
        "Anderswo", datetime(2025, 5, 5, tzinfo=UTC), "link: https://elsewhere.example/story"
    )
    client, site = app_for(make_site(articles), [NOW])
    reply = client.get("/sitemap.xml")
    assert reply.status_code == 200 and reply.mimetype == "application/xml"
    root = valid(reply.data)
    assert root.tag == f"{SM}urlset"
    dates = {str(u.findtext(f"{SM}loc")): u.findtext(f"{SM}lastmod") for u in root.iter(f"{SM}url")}
    assert dates[f"{BASE}articles/zweiter"] == "2025-05-02T08:00:00+00:00"  # updated, not published
    assert dates[f"{BASE}articles/erster"] == "2025-04-28T07:30:00+00:00"
    assert f"{BASE}articles/klima/dritter" in dates and BASE in dates
    assert {f"{BASE}feeds/{name}" for name in site.specs} <= dates.keys()
    # Never a draft or an embargoed article; never a page whose canonical URL is elsewhere.
    assert not any("entwurf" in url or "sperrfrist" in url or "anderswo" in url for url in dates)
    assert len(dates) == 3 + 1 + len(site.specs)
    # Oldest article first, so that pages of a large sitemap stay as they are (see below).
    assert locs(root)[:3] == [f"{BASE}articles/{a}" for a in ("erster", "zweiter", "klima/dritter")]
    assert client.get("/sitemaps/1.xml").status_code == 404  # no pages while one file holds all


def test_pages_partition_the_urls_and_a_full_page_never_moves() -> None:
    for per_page in (1, 2, 3, 7):
        for total in range(0, 40):
            count = page_count(total, per_page)
            parts = [page_slice(total, per_page, page) for page in range(1, count + 1)]
            covered = [i for part in parts for i in range(part.start, part.stop)]
            assert covered == (list(range(total)) if count else []), (per_page, total)
            assert all(0 < part.stop - part.start <= per_page for part in parts)
            for more in range(total + 1, total + 5):  # URLs added at the end
                for page, part in enumerate(parts, start=1):
                    if part.stop - part.start == per_page and page_count(more, per_page):
                        assert page_slice(more, per_page, page) == part


def test_a_large_sitemap_becomes_an_index_of_pages_that_stay_as_they_are(make_site: MakeSite) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    articles: dict[str, str | bytes] = {
        f"a/n{i:02}.md": article(f"Nummer {i}", start + timedelta(days=i)) for i in range(8)
    }
    path = make_site(articles)
    client, site = app_for(path, [NOW], sitemap_urls=3)
    index = valid(client.get("/sitemap.xml").data, "siteindex.xsd")
    assert index.tag == f"{SM}sitemapindex"
    # 8 articles, the index page and three feed pages (alle, kurz, topic a): 12 URLs, 4 pages.
    pages = locs(index)
    assert pages == [f"{BASE}sitemaps/{n}.xml" for n in range(1, 5)]
    listed: list[str] = []
    bodies = {}
    for n in range(1, 5):
        reply = client.get(f"/sitemaps/{n}.xml")
        assert reply.status_code == 200
        bodies[n] = reply
        page = locs(valid(reply.data))
        assert 1 <= len(page) <= 3
        listed += page
    assert listed[:3] == [f"{BASE}articles/a/n0{i}" for i in range(3)]  # page 1: the oldest
    assert len(listed) == len(set(listed)) == 8 + 1 + len(site.specs)
    assert client.get("/sitemaps/5.xml").status_code == 404
    assert client.get("/sitemaps/0.xml").status_code == 404
    assert "max-age=86400" in bodies[1].headers["Cache-Control"]  # a full page: kept a day
    assert "max-age=300" in bodies[4].headers["Cache-Control"]

    for i in range(8, 12):  # new articles: the full pages of older ones do not change
        new = article(f"Nummer {i}", start + timedelta(days=i))
        (path.parent / "articles" / f"a/n{i:02}.md").write_text(new)
    assert site.apply([f"a/n{i:02}.md" for i in range(8, 12)])
    assert len(locs(valid(client.get("/sitemap.xml").data, "siteindex.xsd"))) == 6
    for n in (1, 2):
        again = client.get(f"/sitemaps/{n}.xml", headers={"If-None-Match": bodies[n].headers["ETag"]})
        assert again.status_code == 304, n
        assert client.get(f"/sitemaps/{n}.xml").data == bodies[n].data
    assert client.get("/sitemaps/3.xml").data != bodies[3].data  # the page new ones reach


def test_a_huge_archive_is_cut_into_pages_of_the_page_size(make_site: MakeSite) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    articles: dict[str, str | bytes] = {
        f"a/n{i:03}.md": article(f"Nummer {i}", start + timedelta(hours=i)) for i in range(250)
    }
    client, _ = app_for(make_site(articles), [NOW], sitemap_urls=40)
    pages = locs(valid(client.get("/sitemap.xml").data, "siteindex.xsd"))
    assert len(pages) == 7  # 250 articles, the index and 3 feed pages: 254 URLs
    seen: set[str] = set()
    for url in pages:
        body = client.get(url.removeprefix(BASE.rstrip("/"))).data
        page = locs(valid(body))
        assert len(page) <= 40
        seen.update(page)
    assert len(seen) == 254


# -- /sitemap-news.xml ----------------------------------------------------------------------------


def news_entries(client: FlaskClient) -> list[tuple[str, str, str, str]]:
    """(url, language, publication date, title) of each entry, once the schemas accept it."""
    reply = client.get("/sitemap-news.xml")
    assert reply.status_code == 200 and reply.mimetype == "application/xml"
    root = etree.fromstring(reply.data)
    if len(root):
        valid(reply.data)
    found = []
    for url in root.iter(f"{SM}url"):
        news = url.find(f"{NEWS}news")
        assert news is not None
        assert news.findtext(f"{NEWS}publication/{NEWS}name") == "Testseite"
        found.append(
            (
                str(url.findtext(f"{SM}loc")),
                str(news.findtext(f"{NEWS}publication/{NEWS}language")),
                str(news.findtext(f"{NEWS}publication_date")),
                str(news.findtext(f"{NEWS}title")),
            )
        )
    return found


def test_news_sitemap_holds_the_last_48_hours_newest_first_in_google_news_languages(
    make_site: MakeSite,
) -> None:
    articles: dict[str, str | bytes] = {
        "a/alt.md": article("Zu alt", NOW - timedelta(hours=48, seconds=1)),
        "a/gestern.md": article("Gestern", NOW - timedelta(hours=20), "language: pt-BR"),
        "a/heute.md": article("Heute", NOW - timedelta(hours=1), "language: zh-Hant-TW"),
        "a/frueh.md": article("Früh", NOW - timedelta(hours=47)),
        "a/entwurf.md": article("DRAFT-SECRET", NOW - timedelta(hours=2), "draft: true"),
        "a/spaeter.md": article("EMBARGO-SECRET", NOW + timedelta(hours=2)),
        "a/anderswo.md": article("Anderswo", NOW - timedelta(hours=3), "link: https://elsewhere.example/x"),
    }
    client, _ = app_for(make_site(articles), [NOW])
    assert news_entries(client) == [
        (f"{BASE}articles/a/heute", "zh-tw", "2026-01-01T11:00:00+00:00", "Heute"),
        (f"{BASE}articles/a/gestern", "pt", "2025-12-31T16:00:00+00:00", "Gestern"),
        (f"{BASE}articles/a/frueh", "de", "2025-12-30T13:00:00+00:00", "Früh"),
    ]


@pytest.mark.parametrize(
    ("tag", "code"),
    [("de", "de"), ("en-US", "en"), ("zh", "zh-cn"), ("zh-Hans-CN", "zh-cn"), ("zh-HK", "zh-tw"),
     ("ZH-tw", "zh-tw"), ("gsw-CH", "gsw"), ("x-klingon", None), ("i-navajo", None)],
)  # fmt: skip
def test_languages_are_reduced_to_what_google_news_accepts(tag: str, code: str | None) -> None:
    assert news_language(tag) == code


def test_an_article_enters_news_when_its_embargo_ends_and_leaves_when_it_turns_48_hours_old(
    make_site: MakeSite,
) -> None:
    release = NOW + timedelta(hours=1)
    articles: dict[str, str | bytes] = {
        "a/alt.md": article("Alt", NOW - timedelta(hours=30)),
        "a/sperre.md": article("Sperre", release),
    }
    now = [NOW]
    client, site = app_for(make_site(articles), now)
    assert [e[3] for e in news_entries(client)] == ["Alt"]
    assert site.view().valid_until == release  # the embargo comes first
    first = client.get("/sitemap-news.xml")

    now[0] = release - timedelta(seconds=1)
    assert [e[3] for e in news_entries(client)] == ["Alt"]
    now[0] = release  # no file changes: only the clock moves
    assert [e[3] for e in news_entries(client)] == ["Sperre", "Alt"]
    stale = client.get("/sitemap-news.xml", headers={"If-None-Match": first.headers["ETag"]})
    assert stale.status_code == 200

    edge = NOW + timedelta(hours=18)  # "Alt" was published 30 hours before NOW
    assert site.view().valid_until == edge
    now[0] = edge - timedelta(seconds=1)
    assert [e[3] for e in news_entries(client)] == ["Sperre", "Alt"]
    now[0] = edge
    assert [e[3] for e in news_entries(client)] == ["Sperre"]
    assert site.view().valid_until == release + timedelta(hours=48)
    now[0] = release + timedelta(hours=48)
    assert news_entries(client) == []
    assert site.view().valid_until is None


def test_news_sitemap_holds_at_most_1000_newest_first(make_site: MakeSite) -> None:
    articles: dict[str, str | bytes] = {
        f"a/n{i:04}.md": article(f"Meldung {i}", NOW - timedelta(minutes=i + 1)) for i in range(1003)
    }
    client, site = app_for(make_site(articles), [NOW])
    entries = news_entries(client)
    assert [e[3] for e in entries] == [f"Meldung {i}" for i in range(1000)]
    # The list changes when the 1,000th newest turns 48 hours old, not the oldest of all.
    assert site.view().valid_until == NOW - timedelta(minutes=1000) + timedelta(hours=48)


# -- one document like the others -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/sitemap.xml", "/sitemap-news.xml", "/robots.txt"])
def test_conditional_get_and_gzip(make_site: MakeSite, path: str) -> None:
    articles: dict[str, str | bytes] = dict(SMALL_ARTICLES)
    articles["a/neu.md"] = article("Neu", NOW - timedelta(hours=1))
    client, _ = app_for(make_site(articles), [NOW])
    plain, packed = client.get(path), client.get(path, headers=GZIP)
    assert plain.status_code == packed.status_code == 200
    assert packed.headers["Content-Encoding"] == "gzip" and gzip.decompress(packed.data) == plain.data
    assert plain.headers["ETag"] != packed.headers["ETag"] and plain.headers["Vary"] == "Accept-Encoding"
    assert plain.headers["Cache-Control"].startswith("public, max-age=")
    for reply, headers in ((plain, {}), (packed, GZIP)):
        again = client.get(path, headers={**headers, "If-None-Match": reply.headers["ETag"]})
        assert again.status_code == 304 and again.data == b""
        assert again.headers["ETag"] == reply.headers["ETag"]
        since = client.get(path, headers={"If-Modified-Since": reply.headers["Last-Modified"]})
        assert since.status_code == 304
    assert client.head(path).status_code == 200
    assert client.post(path).status_code == 405


def versions(site: Site) -> dict[str, str]:
    """What the purge compares for each sitemap document: its key, or else its ETag."""
    found = {}
    for entry in other_documents(site):
        if "sitemap" in entry.url or entry.url.endswith("robots.txt"):
            token = digest(entry.key) if entry.key is not None else entry.etag() if entry.etag else None
            found[entry.url.removeprefix(BASE)] = str(token)
    return found


def test_the_purge_sees_exactly_the_sitemap_documents_that_changed(make_site: MakeSite) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    folder = make_site({}).parent / "articles" / "a"
    folder.mkdir()
    for i in range(8):
        (folder / f"n{i:02}.md").write_text(article(f"Nummer {i}", start + timedelta(days=i)))
    now = [NOW]
    client, site = app_for(folder.parent.parent / "config.yaml", now, sitemap_urls=3)
    before = versions(site)
    assert before.keys() == {"robots.txt", "sitemap.xml", "sitemap-news.xml"} | {
        f"sitemaps/{n}.xml" for n in range(1, 5)
    }

    (folder / "n08.md").write_text(article("Nummer 8", NOW - timedelta(hours=1)))
    assert site.apply(["a/n08.md"])
    after = versions(site)
    changed = {url for url in after if before.get(url) != after[url]}
    # 13 URLs now: one page more (so the index changes), and the pages from the new one's on.
    assert changed == {"sitemap.xml", "sitemap-news.xml"} | {f"sitemaps/{n}.xml" for n in (3, 4, 5)}

    # An old article edited: its page's lastmod moves, and so does the key of that full page.
    edit = article("Nummer 1", start + timedelta(days=1), f"updated: {NOW.isoformat()}")
    (folder / "n01.md").write_text(edit)
    assert site.apply(["a/n01.md"])
    edited = versions(site)
    # Page 4 lists the index page, whose lastmod (the newest change) moved too.
    assert {url for url in edited if edited[url] != after[url]} == {"sitemaps/1.xml", "sitemaps/4.xml"}
    page = client.get("/sitemaps/1.xml").data
    assert b"<lastmod>2026-01-01T12:00:00+00:00</lastmod>" in page


# -- /robots.txt ------------------------------------------------------------------------------------


def test_robots_names_both_sitemaps_unless_static_robots_txt_exists(make_site: MakeSite) -> None:
    path = make_site()
    client, _ = app_for(path, [NOW])
    reply = client.get("/robots.txt")
    assert reply.mimetype == "text/plain"
    lines = reply.get_data(as_text=True).splitlines()
    assert f"Sitemap: {BASE}sitemap.xml" in lines and f"Sitemap: {BASE}sitemap-news.xml" in lines
    assert "User-agent: *" in lines and not any(line.startswith("Disallow: /") for line in lines)

    static = path.parent / "static"
    static.mkdir()
    (static / "robots.txt").write_text("User-agent: *\nDisallow: /privat/\n")
    assert client.get("/robots.txt").data == b"User-agent: *\nDisallow: /privat/\n"  # no reload needed
    (static / "robots.txt").unlink()
    assert b"Sitemap:" in client.get("/robots.txt").data


# -- export -----------------------------------------------------------------------------------------


def test_build_exports_the_sitemaps_and_robots_txt(make_site: MakeSite, tmp_path: Path) -> None:
    articles: dict[str, str | bytes] = {
        **SMALL_ARTICLES,
        "klima/sperrfrist.md": SMALL_ARTICLES["klima/sperrfrist.md"].replace("2030-01-01", "2999-01-01"),
    }
    path = make_site(articles)
    out = tmp_path / "public"
    result = CliRunner().invoke(cli, ["--config", str(path), "build", str(out)])
    assert result.exit_code == 0, result.output
    client, _ = app_for(path, [datetime.now(UTC)])  # the build reads the real clock
    for rel in ("sitemap.xml", "sitemap-news.xml", "robots.txt"):
        served = client.get(f"/{rel}", headers=GZIP)
        assert (out / rel).read_bytes() == gzip.decompress(served.data), rel
        assert (out / f"{rel}.gz").read_bytes() == served.data, rel
    valid((out / "sitemap.xml").read_bytes())


def test_export_writes_every_sitemap_page(make_site: MakeSite, tmp_path: Path) -> None:
    site = create_app(make_site(), clock=lambda: NOW, sitemap_urls=2).extensions["feeds"]
    build(site, tmp_path / "out")
    pages = sorted(p.name for p in (tmp_path / "out" / "sitemaps").glob("*.xml"))
    assert pages == [f"{n}.xml" for n in range(1, site.sitemap_pages() + 1)] and len(pages) >= 4
    index = valid((tmp_path / "out" / "sitemap.xml").read_bytes(), "siteindex.xsd")
    assert len(locs(index)) == len(pages)


# -- hostile input --------------------------------------------------------------------------------


def test_hostile_titles_give_valid_news_with_the_title_cleaned(make_site: MakeSite) -> None:
    # The newsroom's plain form: the first line is the title, as the export wrote it; no date,
    # so it is dated when first seen (now).
    title = "Ende ]]> <b>fett</b> & \x01\x0b\x1b\x85\ufffe Schluss"
    client, _ = app_for(make_site({"a/boese.txt": f"{title}\nText.\n"}), [NOW])
    entries = news_entries(client)
    assert len(entries) == 1
    assert entries[0][3].startswith("Ende ]]> <b>fett</b> & ") and entries[0][3].endswith("Schluss")
    assert not any(ord(c) < 32 for c in entries[0][3])


def test_a_url_too_long_for_its_share_of_a_page_is_left_out(make_site: MakeSite) -> None:
    long_id = "x" * (ENTRY_BYTES + 10)
    articles: dict[str, str | bytes] = {
        "a/lang.md": article("Lang", NOW - timedelta(hours=1), f"id: {long_id}"),
        "a/kurz.md": article("Kurz", NOW - timedelta(hours=2)),
    }
    client, _ = app_for(make_site(articles), [NOW])
    assert client.get(f"/articles/{long_id}").status_code == 200  # the page itself is served
    urls = locs(valid(client.get("/sitemap.xml").data))
    assert f"{BASE}articles/a/kurz" in urls and not any(long_id in url for url in urls)
    assert [e[3] for e in news_entries(client)] == ["Kurz"]


def test_an_export_folder_holding_the_operators_own_robots_txt_is_refused_with_the_way_out(
    make_site: MakeSite, tmp_path: Path
) -> None:
    out, own = tmp_path / "public", "User-agent: *\nDisallow: /privat/\n"
    out.mkdir()
    (out / "robots.txt").write_text(own)
    config = make_site()
    result = CliRunner().invoke(cli, ["--config", str(config), "build", "--force", str(out)])
    assert result.exit_code == 1
    assert "robots.txt would be overwritten" in result.output
    assert "Your own robots.txt goes in static/robots.txt" in result.output
    assert (out / "robots.txt").read_text() == own

    (config.parent / "static").mkdir()
    (out / "robots.txt").rename(config.parent / "static" / "robots.txt")  # as the message says
    result = CliRunner().invoke(cli, ["--config", str(config), "build", "--force", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "robots.txt").read_text() == own == (out / "static" / "robots.txt").read_text()
