"""jsonfeed.py: JSON Feed 1.1 from the same inputs as RSS and Atom, read back by real readers.

feedparser 6.0 reads no JSON Feed (it reports a bozo XML error), so the Atom comparison reads
the JSON with :mod:`json` and the Atom with feedparser; the ``reader`` library, which parses
JSON Feed itself, then reads both formats from a loopback server as a subscriber would.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import feedparser
import feedparser.datetimes
import pytest
from reader import make_reader
from test_render import BASE, SITE, art, spec  # the same articles and site as the RSS/Atom tests

from feeds.articles import Article, Author, DateSource, Topic, entry_id
from feeds.config import SiteConfig
from feeds.jsonfeed import VERSION, render_json
from feeds.links import DocLinks, archive_links, subscription_links
from feeds.render import MEDIA_TYPES, Format, render_atom

from support import harness

LINKS = subscription_links(SITE, "alle", "json", 0)


A3, A2, A1 = art("a3", 3), art("a2", 2), art("a1", 1)
IMAGE = f"{BASE}images/kursk.jpg"
RICH = [
    art(
        "reich",
        4,
        title="Grüße aus Köln 🎉 & <Sonderzeichen>",
        html="<p>Äpfel &amp; Öl — 𝄞 <b>fett</b></p>",
        summary="Kurz: a < b & c > d, „Zitat“ 🚀",
        updated=datetime(2025, 6, 1, 8, 30, 15, 250000, tzinfo=UTC),
        authors=(
            Author("Anna Beispiel", "anna@example.org", "https://anna.example.org/"),
            Author("Bernd Ohne-Uri", "bernd@example.org"),
            Author("Carla Nur-Name"),
        ),
        topics=(Topic("ukraine-krieg", "Ukraine-Krieg"), Topic("klima", "Klima")),
        tags=(Topic("kursk", "Kursk"), Topic("klima", "Klima")),
        image=IMAGE,
        image_type="image/jpeg",
        image_length=2048,
        image_alt="Ein zerstörtes Haus in Kursk",
        language="uk",
    ),
    art("ungesehen", 3, dated_by=DateSource.FIRST_SEEN, authors=()),
    art("leer", 2, html="  \n", summary=""),
    A1,
]


# --- a JSON Feed 1.1 checker, from https://www.jsonfeed.org/version/1.1/ -----------------------

TOP_KEYS = {
    "version", "title", "home_page_url", "feed_url", "description", "user_comment", "next_url",
    "icon", "favicon", "authors", "author", "language", "expired", "hubs", "items",
}  # fmt: skip
ITEM_KEYS = {
    "id", "url", "external_url", "title", "content_html", "content_text", "summary", "image",
    "banner_image", "date_published", "date_modified", "authors", "author", "tags", "language",
    "attachments",
}  # fmt: skip
URL_KEYS = {"home_page_url", "feed_url", "next_url", "icon", "favicon", "url", "external_url", "image"}
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")  # RFC 5646, roughly


def _absolute(url: Any, mailto: bool = False) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if mailto and parts.scheme == "mailto":
        return "@" in parts.path
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _nulls(value: Any, where: str) -> Iterator[str]:
    if value is None:
        yield f"{where}: null (leave the key out instead)"
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _nulls(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _nulls(inner, f"{where}[{i}]")


def _unknown(obj: dict[str, Any], known: set[str], where: str) -> Iterator[str]:
    for key in obj:
        if key not in known and not re.fullmatch(r"_[A-Za-z][^.]*", key):
            yield f"{where}.{key}: not a JSON Feed 1.1 key (extensions start with _)"


def _authors(value: Any, where: str) -> Iterator[str]:
    if not isinstance(value, list) or not value:
        yield f"{where}: expected a non-empty array of author objects"
        return
    for i, author in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(author, dict) or not ({"name", "url", "avatar"} & author.keys()):
            yield f"{at}: an author object needs at least one of name, url, avatar"
            continue
        yield from _unknown(author, {"name", "url", "avatar"}, at)
        if "name" in author and not isinstance(author["name"], str):
            yield f"{at}.name: expected a string"
        for key in ("url", "avatar"):
            if key in author and not _absolute(author[key], mailto=key == "url"):
                yield f"{at}.{key}: expected an absolute URL, got {author[key]!r}"


def _date(value: Any, where: str) -> Iterator[str]:
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        yield f"{where}: expected an RFC 3339 date with offset, got {value!r}"
    elif feedparser.datetimes._parse_date(value) is None:  # the date parser readers built on feedparser use
        yield f"{where}: feedparser cannot read {value!r}"


def _item(item: Any, where: str) -> Iterator[str]:
    if not isinstance(item, dict):
        yield f"{where}: expected an object"
        return
    yield from _unknown(item, ITEM_KEYS, where)
    if not isinstance(item.get("id"), str) or not item["id"].strip():
        yield f"{where}.id: required, a non-empty string"
    if not any(isinstance(item.get(k), str) for k in ("content_html", "content_text")):
        yield f"{where}: needs content_html or content_text"
    for key in ("title", "content_html", "content_text", "summary", "language"):
        if key in item and not isinstance(item[key], str):
            yield f"{where}.{key}: expected a string"
    for key in ("date_published", "date_modified"):
        if key in item:
            yield from _date(item[key], f"{where}.{key}")
    if "authors" in item:
        yield from _authors(item["authors"], f"{where}.authors")
    tags = item.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        yield f"{where}.tags: expected an array of strings"
    for i, attachment in enumerate(item.get("attachments", [])):
        at = f"{where}.attachments[{i}]"
        if not isinstance(attachment, dict) or not _absolute(attachment.get("url")):
            yield f"{at}.url: required, an absolute URL"
            continue
        yield from _unknown(
            attachment, {"url", "mime_type", "title", "size_in_bytes", "duration_in_seconds"}, at
        )
        if not isinstance(attachment.get("mime_type"), str) or "/" not in attachment["mime_type"]:
            yield f"{at}.mime_type: required, a media type"
        for key in ("size_in_bytes", "duration_in_seconds"):
            if key in attachment and (
                isinstance(attachment[key], bool) or not isinstance(attachment[key], int | float)
            ):
                yield f"{at}.{key}: expected a number"


def problems(body: bytes) -> list[str]:
    """Every way ``body`` breaks JSON Feed 1.1 (and our promise of UTF-8 with a final newline)."""
    if not body.endswith(b"\n"):
        return ["the document does not end with a newline"]
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"not UTF-8 JSON: {exc}"]
    if not isinstance(doc, dict):
        return ["the top level is not an object"]
    found = list(_nulls(doc, "feed"))
    found += _unknown(doc, TOP_KEYS, "feed")
    if next(iter(doc), None) != "version" or doc["version"] != VERSION:
        found.append(f"version: the first key must be {VERSION!r}")
    if not isinstance(doc.get("title"), str) or not doc["title"]:
        found.append("title: required, a string")
    for key in URL_KEYS & doc.keys():
        if not _absolute(doc[key]):
            found.append(f"{key}: expected an absolute URL, got {doc[key]!r}")
    if "next_url" in doc and doc["next_url"] == doc.get("feed_url"):
        found.append("next_url: must not be the feed_url (a loop)")
    for key in ("description", "language"):
        if key in doc and not isinstance(doc[key], str):
            found.append(f"{key}: expected a string")
    for where, language in [("language", doc.get("language"))] + [
        (f"items[{i}].language", item.get("language"))
        for i, item in enumerate(doc.get("items") or [])
        if isinstance(item, dict)
    ]:
        if language is not None and not (isinstance(language, str) and LANGUAGE.fullmatch(language)):
            found.append(f"{where}: expected an RFC 5646 language tag, got {language!r}")
    if "authors" in doc:
        found += _authors(doc["authors"], "authors")
    for i, hub in enumerate(doc.get("hubs", [])):
        if not isinstance(hub, dict) or not isinstance(hub.get("type"), str) or not _absolute(hub.get("url")):
            found.append(f"hubs[{i}]: needs a type and an absolute url")
    items = doc.get("items")
    if not isinstance(items, list):
        return [*found, "items: required, an array"]
    for i, item in enumerate(items):
        found += _item(item, f"items[{i}]")
    ids = [item.get("id") for item in items if isinstance(item, dict)]
    if len(ids) != len(set(ids)):
        found.append("items: ids must be unique within the feed")
    return found


def load(body: bytes) -> dict[str, Any]:
    """The parsed document, after it passed the checker: every document the tests make goes here."""
    assert problems(body) == []
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def render(
    entries: list[Article], *, links: DocLinks = LINKS, site: SiteConfig = SITE, **kw: Any
) -> dict[str, Any]:
    full = kw.pop("full", None)
    return load(render_json(spec(**kw), site, entries, links, full=full))


GOOD = json.loads(render_json(spec(), SITE, RICH, LINKS))


def broken(change: Callable[[dict[str, Any]], object]) -> bytes:
    doc = json.loads(json.dumps(GOOD))
    change(doc)
    return json.dumps(doc).encode() + b"\n"


@pytest.mark.parametrize(
    "change, complaint",
    [
        (lambda d: d.pop("title"), "title: required"),
        (lambda d: d.update(version="https://jsonfeed.org/version/1"), "version"),
        (lambda d: d.update(home_page_url="/feeds/alle"), "home_page_url: expected an absolute URL"),
        (lambda d: d.update(next_url=d["feed_url"]), "next_url: must not be the feed_url"),
        (lambda d: d.update(description=None), "feed.description: null"),
        (lambda d: d.update(hubs=[{"url": "https://hub.example.com/"}]), "hubs[0]: needs a type"),
        (lambda d: d.update(authors=[{}]), "authors[0]: an author object needs at least one"),
        (lambda d: d["items"][1].pop("id"), "items[1].id: required"),
        (lambda d: d["items"][2].pop("content_text"), "items[2]: needs content_html or content_text"),
        (lambda d: d["items"][0].update(date_modified="2025-06-01 08:30"), "items[0].date_modified"),
        (lambda d: d["items"][0].update(date_published="2025-05-04T10:00:00"), "items[0].date_published"),
        (lambda d: d["items"][0]["attachments"][0].pop("mime_type"), "attachments[0].mime_type: required"),
        (lambda d: d["items"][0].update(tags="Klima"), "items[0].tags"),
        (lambda d: d["items"][0].update(author_email="x@y"), "items[0].author_email: not a JSON Feed"),
        (lambda d: d["items"][0].update(language="deutsch!"), "items[0].language"),
        (lambda d: d["items"].append(d["items"][0]), "ids must be unique"),
    ],
)
def test_the_checker_catches_what_the_spec_forbids(
    change: Callable[[dict[str, Any]], object], complaint: str
) -> None:
    assert problems(json.dumps(GOOD).encode() + b"\n") == []
    found = problems(broken(change))
    assert any(complaint in p for p in found), found


# --- the document --------------------------------------------------------------------------


def test_top_level_names_the_feed_its_page_and_itself() -> None:
    doc = render([A3, A2, A1])
    assert list(doc) == [
        "version", "title", "home_page_url", "feed_url", "description", "language", "items",
    ]  # fmt: skip
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert (doc["title"], doc["description"], doc["language"]) == ("Alle", "Alles", "de")
    assert doc["home_page_url"] == f"{BASE}feeds/alle"
    assert doc["feed_url"] == f"{BASE}feeds/alle.json"
    assert [i["id"] for i in doc["items"]] == [
        "tag:news.example.org,2025-05-03:a3",
        "tag:news.example.org,2025-05-02:a2",
        "tag:news.example.org,2025-05-01:a1",
    ]


def test_description_and_author_fall_back_to_the_titles() -> None:
    doc = render([art("a1", 1, authors=())], description="", site=replace(SITE, author=None))
    assert doc["description"] == "Alle"
    assert doc["authors"] == [{"name": "Testseite"}]


def test_an_empty_feed_is_still_a_valid_document() -> None:
    assert render([])["items"] == []


def test_next_url_leads_to_older_entries_only_when_there_are_any() -> None:
    assert "next_url" not in render([A1])
    with_archive = render([A1], links=subscription_links(SITE, "alle", "json", 3))
    assert with_archive["next_url"] == f"{BASE}feeds/alle/archive/3.json"
    middle = render([A1], links=archive_links(SITE, "alle", "json", 2, 3))
    assert (middle["feed_url"], middle["next_url"]) == (
        f"{BASE}feeds/alle/archive/2.json",
        f"{BASE}feeds/alle/archive/1.json",
    )
    assert "next_url" not in render([A1], links=archive_links(SITE, "alle", "json", 1, 3))


def test_websub_hubs_only_when_configured_and_only_on_the_subscription_document() -> None:
    hubbed = replace(SITE, hubs=("https://hub.example.com/", "https://pubsubhubbub.example.net/hub"))
    doc = render([A1], links=subscription_links(hubbed, "alle", "json", 2), site=hubbed)
    assert doc["hubs"] == [
        {"type": "WebSub", "url": "https://hub.example.com/"},
        {"type": "WebSub", "url": "https://pubsubhubbub.example.net/hub"},
    ]
    assert "hubs" not in render([A1])
    assert "hubs" not in render([A1], links=archive_links(hubbed, "alle", "json", 1, 2), site=hubbed)


def test_icon_and_favicon_only_with_a_site_icon() -> None:
    assert not {"icon", "favicon"} & render([A1]).keys()
    with_icon = render([A1], site=replace(SITE, icon=f"{BASE}static/icon.png"))
    assert (with_icon["icon"], with_icon["favicon"]) == (f"{BASE}static/icon.png", f"{BASE}static/icon.png")


# --- items ---------------------------------------------------------------------------------


def contents(doc: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    return [(i.get("content_html"), i.get("content_text")) for i in doc["items"]]


def test_full_content_on_every_entry_by_default() -> None:
    assert contents(render([A3, A2, A1])) == [
        ("<p>Text a3</p>", None),
        ("<p>Text a2</p>", None),
        ("<p>Text a1</p>", None),
    ]


@pytest.mark.parametrize("full", [0, 1, 2])
def test_full_counts_the_newest_entries_the_rest_carry_their_summary(full: int) -> None:
    doc = render([A3, A2, A1], full=full)
    expected = [
        (f"<p>Text {a.id}</p>", None) if i < full else (None, f"Kurz {a.id}")
        for i, a in enumerate([A3, A2, A1])
    ]
    assert contents(doc) == expected
    assert [i["summary"] for i in doc["items"]] == ["Kurz a3", "Kurz a2", "Kurz a1"]


@pytest.mark.parametrize("full", [None, 2])
def test_summary_feeds_never_carry_content(full: int | None) -> None:
    doc = render([A3, A2, A1], content="summary", full=full)
    assert contents(doc) == [(None, "Kurz a3"), (None, "Kurz a2"), (None, "Kurz a1")]


def test_an_empty_body_gives_the_summary_or_the_title_as_text() -> None:
    doc = render([art("leer", 2, html=" \n", summary=""), art("kurz", 1, html="", summary="Nur kurz")])
    assert contents(doc) == [(None, "Titel leer"), (None, "Nur kurz")]
    assert [i["summary"] for i in doc["items"]] == ["Titel leer", "Nur kurz"]


def test_dates_are_rfc3339_in_utc_and_keep_the_instant() -> None:
    berlin = datetime(2025, 5, 1, 23, 30, tzinfo=UTC).astimezone(SITE.tz)  # 01:30 on the 2nd there
    item = render([art("a1", 1, published=berlin, updated=RICH[0].updated)])["items"][0]
    assert item["date_published"] == "2025-05-01T23:30:00+00:00"
    assert item["date_modified"] == "2025-06-01T08:30:15.250000+00:00"
    assert datetime.fromisoformat(item["date_published"]) == berlin


def test_authors_have_a_name_and_a_url_from_their_uri_or_else_their_email() -> None:
    item = render(RICH[:1])["items"][0]
    assert item["authors"] == [
        {"name": "Anna Beispiel", "url": "https://anna.example.org/"},
        {"name": "Bernd Ohne-Uri", "url": "mailto:bernd@example.org"},
        {"name": "Carla Nur-Name"},
    ]


def test_an_email_with_odd_characters_still_makes_one_mailto_url() -> None:
    odd = art("a1", 1, authors=(Author("Dora", "dora lee?x=1@example.org"),))
    assert render([odd])["items"][0]["authors"] == [
        {"name": "Dora", "url": "mailto:dora%20lee%3Fx%3D1@example.org"}
    ]


def test_entries_without_authors_leave_them_to_the_feed() -> None:
    doc = render([art("a1", 1, authors=())])
    assert "authors" not in doc["items"][0]
    assert doc["authors"] == [{"name": "Redaktion"}]


def test_the_feeds_authors_stand_at_the_top_only_when_no_item_names_its_own() -> None:
    """Readers add the top-level authors to every item's byline ("Anna, Redaktion")."""
    anna = art("a2", 2, authors=(Author("Anna Beispiel"),))
    doc = render([anna, art("a1", 1, authors=())])
    assert "authors" not in doc
    assert [i["authors"] for i in doc["items"]] == [[{"name": "Anna Beispiel"}], [{"name": "Redaktion"}]]


def test_tags_are_the_names_of_topics_then_tags_each_once() -> None:
    item = render(RICH[:1])["items"][0]
    assert item["tags"] == ["Ukraine-Krieg", "Klima", "Kursk"]
    assert "tags" not in render([A1])["items"][0]


def test_item_language_only_when_the_article_has_one() -> None:
    items = render(RICH[:1] + [A1])["items"]
    assert items[0]["language"] == "uk"
    assert "language" not in items[1]


def test_image_and_its_attachment_with_the_alt_text_as_title() -> None:
    item = render(RICH[:1])["items"][0]
    assert item["image"] == IMAGE
    assert item["attachments"] == [
        {
            "url": IMAGE,
            "mime_type": "image/jpeg",
            "title": "Ein zerstörtes Haus in Kursk",
            "size_in_bytes": 2048,
        }
    ]


def test_an_image_of_unknown_size_or_type_or_without_alt() -> None:
    unsized = art("a2", 2, image=IMAGE, image_type="image/png", image_length=0)
    untyped = art("a1", 1, image=IMAGE)
    items = render([unsized, untyped])["items"]
    assert items[0]["attachments"] == [{"url": IMAGE, "mime_type": "image/png"}]
    assert items[1]["image"] == IMAGE
    assert "attachments" not in items[1]


def test_item_url_is_where_the_entry_links_even_when_elsewhere() -> None:
    external = art("a1", 1, url="https://elsewhere.example.com/story")
    item = render([external])["items"][0]
    assert item["url"] == "https://elsewhere.example.com/story"
    assert "external_url" not in item


# --- bytes ---------------------------------------------------------------------------------


def test_unicode_travels_as_utf8_and_comes_back_unchanged() -> None:
    body = render_json(spec(), SITE, RICH, LINKS)
    assert "Grüße aus Köln 🎉".encode() in body
    assert b"\\u" not in body  # written as UTF-8, not escaped: smaller, and readable
    item = load(body)["items"][0]
    assert item["title"] == "Grüße aus Köln 🎉 & <Sonderzeichen>"
    assert item["content_html"] == "<p>Äpfel &amp; Öl — 𝄞 <b>fett</b></p>"
    assert item["summary"] == "Kurz: a < b & c > d, „Zitat“ 🚀"


def test_same_inputs_same_bytes_whatever_the_clock_or_feed_date() -> None:
    first = render_json(spec(), SITE, RICH, LINKS)
    again = render_json(spec(), SITE, list(RICH), LINKS, updated=datetime(2099, 1, 1, tzinfo=UTC))
    assert first == again
    assert b"2099" not in again


def test_the_exact_bytes_of_a_small_feed() -> None:
    """Key order, separators and escaping are part of the ETag: any change here is a new document."""
    assert render_json(spec(), SITE, [A1], LINKS) == (
        b'{"version":"https://jsonfeed.org/version/1.1","title":"Alle",'
        b'"home_page_url":"https://news.example.org/feeds/alle",'
        b'"feed_url":"https://news.example.org/feeds/alle.json","description":"Alles","language":"de",'
        b'"items":[{"id":"tag:news.example.org,2025-05-01:a1",'
        b'"url":"https://news.example.org/articles/a1","title":"Titel a1",'
        b'"content_html":"<p>Text a1</p>",'
        b'"summary":"Kurz a1","date_published":"2025-05-01T10:00:00+00:00",'
        b'"date_modified":"2025-05-01T10:00:00+00:00","authors":[{"name":"Redaktion"}]}]}\n'
    )


# --- the same entries as Atom --------------------------------------------------------------


@pytest.mark.parametrize(
    "content, full", [("full", None), ("full", 2), ("full", 0), ("summary", None)], ids=str
)
def test_json_and_atom_carry_the_same_entries(content: str, full: int | None) -> None:
    doc = render(RICH, content=content, full=full)
    atom = feedparser.parse(render_atom(spec(content=content), SITE, RICH, full=full))
    assert not atom.bozo
    assert len(doc["items"]) == len(atom.entries) == len(RICH)
    for item, entry in zip(doc["items"], atom.entries, strict=True):
        assert item["id"] == entry.id
        assert item["title"] == entry.title
        assert item["url"] == entry.link
        assert (item["date_published"], item["date_modified"]) == (entry.published, entry.updated)
        assert item["summary"] == html.unescape(entry.summary)  # Atom's is HTML, JSON Feed's text
        assert item.get("content_html") == (entry.content[0].value if "content" in entry else None)
        names = [a["name"] for a in item.get("authors", [])]
        # An Atom entry without authors has the feed's; a JSON item says so itself, because
        # readers would add the feed's authors to every other item's byline.
        people = entry.get("contributors") or entry.get("authors", [])  # several: contributors
        assert names == ([a.name for a in people if "name" in a] or ["Redaktion"])
        assert item.get("tags", []) == list(dict.fromkeys(t.label for t in entry.get("tags", [])))
        enclosures = [(e.href, e.type, int(e.length)) for e in entry.enclosures]
        attachments = [
            (a["url"], a["mime_type"], a.get("size_in_bytes", 0)) for a in item.get("attachments", [])
        ]
        assert attachments == enclosures


# --- a real reader -------------------------------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Callable[[str, bytes, str], str]]:
    """Serve bytes at a path on a loopback port, with the given Content-Type; returns the URL."""
    documents: dict[str, tuple[bytes, str]] = {}

    class Handler(harness.QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body, media_type = documents.get(self.path, (b"", ""))
            self.answer(200 if media_type else 404, body, media_type or "text/plain")

    with harness.in_thread(harness.loopback(Handler)) as server:

        def add(path: str, body: bytes, media_type: str) -> str:
            documents[path] = (body, media_type)
            return f"http://{harness.HOST}:{server.server_port}{path}"

        yield add


def test_reader_sees_the_same_entries_in_json_as_in_atom(serve: Callable[[str, bytes, str], str]) -> None:
    full_spec = spec()
    json_url = serve(
        "/feeds/alle.json", render_json(full_spec, SITE, RICH, LINKS, full=3), MEDIA_TYPES[Format.JSON]
    )
    atom_url = serve("/feeds/alle.atom", render_atom(full_spec, SITE, RICH, full=3), "application/atom+xml")
    with make_reader(":memory:") as reader:
        for url in (json_url, atom_url):
            reader.add_feed(url)
            reader.update_feeds(feed=url, scheduled=False)
            assert reader.get_feed(url).last_exception is None
        feed = reader.get_feed(json_url)
        assert (feed.title, feed.link, feed.version) == ("Alle", f"{BASE}feeds/alle", "json11")
        from_json = {e.id: e for e in reader.get_entries(feed=json_url)}
        from_atom = {e.id: e for e in reader.get_entries(feed=atom_url)}

    assert set(from_json) == set(from_atom) == {i["id"] for i in render(RICH)["items"]}
    for key, got in from_json.items():
        atom = from_atom[key]
        assert (got.title, got.link) == (atom.title, atom.link)
        # feedparser keeps whole seconds of Atom dates (struct_time); reader reads JSON Feed's whole.
        assert got.published is not None and got.updated is not None
        seconds = (got.published.replace(microsecond=0), got.updated.replace(microsecond=0))
        assert seconds == (atom.published, atom.updated)
        assert got.summary == html.unescape(atom.summary or "")
        html_of = [c.value for c in got.content if c.type == "text/html"]
        assert html_of == [c.value for c in atom.content if c.is_html]
        if not html_of:  # JSON Feed needs some content: the summary stands in as plain text
            assert [(c.type, c.value) for c in got.content] == [("text/plain", got.summary)]
        article = next(a for a in RICH if entry_id(SITE, a) == key)
        # Compared with the articles: reader, through feedparser, keeps one of several Atom authors.
        own = [(a.name, a.uri, None if a.uri else a.email) for a in article.authors]
        assert [(a.name, a.href, a.email) for a in got.authors] == (own or [("Redaktion", None, None)])
        assert [(e.href, e.type, e.length) for e in got.enclosures] == [
            (e.href, e.type, e.length) for e in atom.enclosures
        ]

    rich = from_json[render(RICH)["items"][0]["id"]]
    assert rich.title == "Grüße aus Köln 🎉 & <Sonderzeichen>"
    assert rich.published == RICH[0].published and rich.updated == RICH[0].updated
    assert [(c.value, c.language) for c in rich.content] == [("<p>Äpfel &amp; Öl — 𝄞 <b>fett</b></p>", "uk")]
    assert [(a.name, a.email) for a in rich.authors][1] == ("Bernd Ohne-Uri", "bernd@example.org")
