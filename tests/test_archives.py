"""RFC 5005 archived feeds: a reader that walks ``prev-archive`` gets the whole history, once.

The walker below is what a late subscriber does: fetch the subscription document, follow
``prev-archive`` (JSON Feed: ``next_url``) until there is none, and collect entry ids. It runs
against the real app (Flask test client) over every format, and again after articles are
published, to check that full archive pages keep their bytes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from feeds import create_app
from feeds.archives import ARCHIVE_MAX_AGE, archive_pages, archive_slice

from conftest import NOW, MakeSite, shared

ATOM = "{http://www.w3.org/2005/Atom}"
HISTORY = "{http://purl.org/syndication/history/1.0}"
PER_PAGE = 3
BASE = "https://news.example.org"


def article(day: int, *, title: str = "", extra: str = "") -> str:
    return f"""\
        ---
        id: meldung-{day:02d}
        title: {title or f"Meldung {day}"}
        date: 2025-03-{day:02d}T09:00:00+01:00
        topics: [Politik]
        {extra}
        ---
        Text der Meldung {day}.
        """


def articles(days: range) -> dict[str, str | bytes]:
    found: dict[str, str | bytes] = {f"politik/m{day:02d}.md": article(day) for day in days}
    found["politik/entwurf.md"] = article(28, title="DRAFT-SECRET", extra="draft: true")
    found["politik/sperrfrist.md"] = (
        "---\nid: sperrfrist\ntitle: EMBARGO-SECRET\ndate: 2030-01-01T08:00:00+01:00\n---\nEMBARGO-SECRET\n"
    )
    return found


CONFIG = {"feeds": {"alle": {"title": "Alle", "limit": PER_PAGE}}, "topic_feeds": False}


@dataclass
class Walk:
    ids: list[str]
    documents: list[str]  # paths, subscription document first


def path_of(url: str) -> str:
    assert url.startswith(BASE), url
    return urlsplit(url).path


def walk(client: FlaskClient, fmt: str, name: str = "alle") -> Walk:
    """Follow the archive links from the subscription document to the oldest page."""
    ids: list[str] = []
    documents: list[str] = []
    url: str | None = f"{BASE}/feeds/{name}.{fmt}"
    while url is not None:
        path = path_of(url)
        assert path not in documents, f"loop at {path}"
        documents.append(path)
        response = client.get(path)
        assert response.status_code == 200, path
        if fmt == "json":
            doc = json.loads(response.data)
            ids += [item["id"] for item in doc["items"]]
            url = doc.get("next_url")
            continue
        parsed = feedparser.parse(response.data)
        assert not parsed.bozo, parsed.get("bozo_exception")
        ids += [entry.id for entry in parsed.entries]
        url = next((link.href for link in parsed.feed.links if link.rel == "prev-archive"), None)
    return Walk(ids, documents)


def app_for(config: Path, state: Path, offset: timedelta = timedelta()) -> FlaskClient:
    return create_app(config, clock=lambda: NOW + offset).test_client()


# --- pages, as arithmetic --------------------------------------------------------------------


@given(st.integers(0, 400), st.integers(1, 40))
def test_subscription_and_archive_pages_partition_the_history(total: int, per_page: int) -> None:
    pages = archive_pages(total, per_page)
    covered = list(range(min(total, per_page)))
    for page in range(1, pages + 1):
        chunk = list(range(total))[archive_slice(total, per_page, page)]
        assert 0 < len(chunk) <= per_page
        covered += chunk
    assert sorted(covered) == list(range(total))


@given(st.integers(0, 400), st.integers(1, 40), st.integers(1, 30))
def test_new_entries_leave_every_full_page_as_it_was(total: int, per_page: int, new: int) -> None:
    """Pages are counted from the oldest entry, so newer entries never move a full page's borders."""

    def oldest_first(count: int, page: int) -> list[int]:  # entry numbers, 0 = the oldest
        return [count - 1 - i for i in range(count)[archive_slice(count, per_page, page)]]

    before = archive_pages(total, per_page)
    assert archive_pages(total + new, per_page) >= before
    for page in range(1, before):  # all but the newest page are full
        assert len(oldest_first(total, page)) == per_page
        assert oldest_first(total + new, page) == oldest_first(total, page)


# --- walking the links ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["atom", "rss", "json"])
def test_walking_the_archive_gives_every_published_entry_exactly_once(
    make_site: MakeSite, tmp_path: Path, fmt: str
) -> None:
    client = app_for(make_site(articles(range(1, 12)), CONFIG), tmp_path)
    result = walk(client, fmt)
    assert len(result.documents) == 1 + archive_pages(11, PER_PAGE) == 4
    counts = Counter(result.ids)
    assert len(counts) == 11 and set(counts.values()) == {1}, counts
    subscription = walk(client, fmt).ids[:PER_PAGE]
    assert subscription == result.ids[:PER_PAGE]
    for path in result.documents:
        body = client.get(path).data
        assert b"DRAFT-SECRET" not in body and b"EMBARGO-SECRET" not in body


def test_entries_come_newest_first_across_pages(make_site: MakeSite, tmp_path: Path) -> None:
    client = app_for(make_site(articles(range(1, 12)), CONFIG), tmp_path)
    days = [int(re.search(r"meldung-(\d+)", i)[1]) for i in walk(client, "atom").ids]  # type: ignore[index]
    assert days == list(range(11, 0, -1))


def test_feed_without_history_has_no_archive_link(make_site: MakeSite, tmp_path: Path) -> None:
    client = app_for(make_site(articles(range(1, PER_PAGE + 1)), CONFIG), tmp_path)
    assert walk(client, "atom").documents == ["/feeds/alle.atom"]
    assert client.get("/feeds/alle/archive/1.atom").status_code == 404


def test_embargoed_article_joins_the_history_when_its_time_comes(make_site: MakeSite, tmp_path: Path) -> None:
    config = make_site(articles(range(1, 8)), CONFIG)
    before = walk(app_for(config, tmp_path), "atom").ids
    after = walk(app_for(config, tmp_path, offset=timedelta(days=5 * 365)), "atom").ids
    assert len(after) == len(before) + 1 and len(set(after)) == len(after)


# --- what archive documents say ----------------------------------------------------------------


def links_of(root: etree._Element) -> dict[str, str]:
    parent = root.find("channel") if root.tag == "rss" else root
    assert parent is not None
    return {link.get("rel", ""): link.get("href", "") for link in parent.findall(f"{ATOM}link")}


@pytest.mark.parametrize("fmt", ["atom", "rss"])
def test_archive_documents_link_current_and_their_neighbours(
    make_site: MakeSite, tmp_path: Path, fmt: str
) -> None:
    client = app_for(make_site(articles(range(1, 12)), CONFIG), tmp_path)
    pages = archive_pages(11, PER_PAGE)
    subscription = etree.fromstring(client.get(f"/feeds/alle.{fmt}").data)
    assert links_of(subscription)["prev-archive"] == f"{BASE}/feeds/alle/archive/{pages}.{fmt}"
    assert subscription.find(f".//{HISTORY}archive") is None
    for page in range(1, pages + 1):
        root = etree.fromstring(client.get(f"/feeds/alle/archive/{page}.{fmt}").data)
        links = links_of(root)
        assert links["self"] == f"{BASE}/feeds/alle/archive/{page}.{fmt}"
        assert links["current"] == f"{BASE}/feeds/alle.{fmt}"
        assert ("prev-archive" in links) == (page > 1)
        assert ("next-archive" in links) == (page < pages)
        if page < pages:
            assert links["next-archive"] == f"{BASE}/feeds/alle/archive/{page + 1}.{fmt}"
        assert root.find(f".//{HISTORY}archive") is not None


def test_archive_pages_are_valid_atom(make_site: MakeSite, tmp_path: Path) -> None:
    schema = etree.RelaxNG(etree.parse(str(shared("schemas/atom.rng"))))
    client = app_for(make_site(articles(range(1, 12)), CONFIG), tmp_path)
    for path in walk(client, "atom").documents:
        root = etree.fromstring(client.get(path).data)
        assert schema.validate(root), (path, schema.error_log)
        assert root.findtext(f"{ATOM}id") == f"{BASE}/feeds/alle.atom"  # one logical feed


def test_full_archive_pages_are_long_cacheable_and_the_newest_is_not(
    make_site: MakeSite, tmp_path: Path
) -> None:
    client = app_for(make_site(articles(range(1, 12)), CONFIG), tmp_path)
    pages = archive_pages(11, PER_PAGE)
    for page in range(1, pages + 1):
        response = client.get(f"/feeds/alle/archive/{page}.atom", headers={"Accept-Encoding": "gzip"})
        age = ARCHIVE_MAX_AGE if page < pages else 300
        assert response.headers["Cache-Control"].startswith(f"public, max-age={age}, ")
        assert response.headers["Content-Encoding"] == "gzip"
        again = client.get(
            f"/feeds/alle/archive/{page}.atom", headers={"If-None-Match": response.headers["ETag"]}
        )
        assert again.status_code == 304


def test_publishing_leaves_full_archive_pages_byte_identical(make_site: MakeSite, tmp_path: Path) -> None:
    config = make_site(articles(range(1, 12)), CONFIG)
    client = app_for(config, tmp_path)
    pages = archive_pages(11, PER_PAGE)
    before = {p: client.get(f"/feeds/alle/archive/{p}.atom").headers["ETag"] for p in range(1, pages + 1)}
    (config.parent / "articles" / "politik" / "m20.md").write_text(article(20), encoding="utf-8")
    client = app_for(config, tmp_path)
    after = {p: client.get(f"/feeds/alle/archive/{p}.atom").headers["ETag"] for p in range(1, pages + 1)}
    assert {p: after[p] for p in range(1, pages)} == {p: before[p] for p in range(1, pages)}
    assert after[pages] != before[pages]  # the newest page took the entry that left the feed
    assert Counter(walk(client, "atom").ids).most_common(1)[0][1] == 1


@pytest.mark.parametrize(
    "path",
    [
        "/feeds/alle/archive/0.atom",
        "/feeds/alle/archive/99.atom",
        "/feeds/alle/archive/01.atom",
        "/feeds/alle/archive/-1.atom",
        "/feeds/alle/archive/1.xml",
        "/feeds/alle/archive/1",
        "/feeds/alle/archive/99999999999999999999.atom",
        "/feeds/keiner/archive/1.atom",
        "/feeds/alle/archive/1.atom/",
    ],
)
def test_pages_that_do_not_exist_are_404(make_site: MakeSite, tmp_path: Path, path: str) -> None:
    client = app_for(make_site(articles(range(1, 12)), CONFIG), tmp_path)
    response = client.get(path)
    assert response.status_code == 404 and response.mimetype == "text/plain"


def test_archive_pages_answer_head_and_refuse_other_methods(make_site: MakeSite, tmp_path: Path) -> None:
    client = app_for(make_site(articles(range(1, 12)), CONFIG), tmp_path)
    assert client.head("/feeds/alle/archive/1.rss").status_code == 200
    refused = client.post("/feeds/alle/archive/1.rss")
    assert refused.status_code == 405 and refused.headers["Allow"] == "GET, HEAD"
