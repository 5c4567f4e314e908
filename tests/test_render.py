"""render.py: RSS and Atom built from the same inputs, with feedgen's traps hidden."""

from __future__ import annotations

import email.utils
import math
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import feedgen.entry
import feedgen.feed
import feedparser
import pytest
from lxml import etree

from feeds.articles import Article, Author, Topic
from feeds.config import FeedSpec, SiteConfig
from feeds.naming import byline
from feeds.render import Format, polling, render_atom, render_feed, render_rss

from conftest import shared

NS = {
    "a": "http://www.w3.org/2005/Atom",
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
RENDER = {"rss": render_rss, "atom": render_atom}
FORMATS = ("rss", "atom")
BASE = "https://news.example.org/"

SITE = SiteConfig(
    title="Testseite",
    url=BASE,
    description="Beschreibung",
    language="de",
    timezone="Europe/Berlin",
    author="Redaktion",
    articles_dir=Path("."),
)


def spec(**kw) -> FeedSpec:
    values = {"name": "alle", "title": "Alle", "description": "Alles", "language": "de"}
    return FeedSpec(**(values | kw))


def art(id: str, day: int, hour: int = 10, **kw) -> Article:
    published = datetime(2025, 5, day, hour, 0, tzinfo=UTC)
    values = {
        "id": id,
        "path": f"x/{id}.md",
        "title": f"Titel {id}",
        "published": published,
        "updated": published,
        "html": f"<p>Text {id}</p>",
        "summary": f"Kurz {id}",
        "url": f"{BASE}articles/{id}",
        "permalink": f"{BASE}articles/{id}",
        "authors": (Author("Redaktion"),),
    }
    return Article(**(values | kw))


A3, A2, A1 = art("a3", 3), art("a2", 2), art("a1", 1)


def parse(body: bytes):
    return etree.fromstring(body)


def xp(root, path: str) -> list:
    return root.xpath(path, namespaces=NS)


def items(root, fmt: str) -> list:
    return xp(root, "/rss/channel/item" if fmt == "rss" else "/a:feed/a:entry")


def entry_ids(body: bytes, fmt: str) -> list[str]:
    path = "/rss/channel/item/guid/text()" if fmt == "rss" else "/a:feed/a:entry/a:id/text()"
    return [str(t) for t in xp(parse(body), path)]


# --- order and ids -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_entries_keep_the_given_newest_first_order(fmt: str) -> None:
    body = RENDER[fmt](spec(), SITE, [A3, A2, A1])
    parsed = feedparser.parse(body)
    assert [e.title for e in parsed.entries] == ["Titel a3", "Titel a2", "Titel a1"]
    assert [i.rsplit(":", 1)[1] for i in entry_ids(body, fmt)] == ["a3", "a2", "a1"]


def test_entry_ids_are_tag_uris_shared_by_rss_guid_and_atom_id() -> None:
    entries = [A3, A2, art("pfad/mit~punkt.x", 1)]
    rss, atom = render_rss(spec(), SITE, entries), render_atom(spec(), SITE, entries)
    guids = xp(parse(rss), "/rss/channel/item/guid")
    assert [g.get("isPermaLink") for g in guids] == ["false"] * 3
    assert (
        [g.text for g in guids]
        == entry_ids(atom, "atom")
        == [
            "tag:news.example.org,2025-05-03:a3",
            "tag:news.example.org,2025-05-02:a2",
            "tag:news.example.org,2025-05-01:pfad/mit~punkt.x",
        ]
    )
    assert [e.id for e in feedparser.parse(rss).entries] == [g.text for g in guids]


@pytest.mark.parametrize("fmt", FORMATS)
def test_entry_id_survives_edits(fmt: str) -> None:
    edited = art(
        "a1",
        1,
        title="Neuer Titel",
        updated=datetime(2025, 6, 1, tzinfo=UTC),
        summary="anders",
        html="<p>anders</p>",
    )
    assert entry_ids(RENDER[fmt](spec(), SITE, [edited]), fmt) == entry_ids(
        RENDER[fmt](spec(), SITE, [A1]), fmt
    )


# --- feed-level metadata -------------------------------------------------------------------


def feed_updated(body: bytes, fmt: str) -> datetime:
    root = parse(body)
    if fmt == "rss":
        return email.utils.parsedate_to_datetime(xp(root, "/rss/channel/lastBuildDate/text()")[0])
    return datetime.fromisoformat(xp(root, "/a:feed/a:updated/text()")[0])


@pytest.mark.parametrize("fmt", FORMATS)
def test_feed_updated_is_the_newest_entry_change(fmt: str) -> None:
    late_edit = datetime(2025, 5, 20, 7, 15, tzinfo=UTC)
    entries = [A3, A2, art("a1", 1, updated=late_edit)]
    body = RENDER[fmt](spec(), SITE, entries)
    assert feed_updated(body, fmt) == late_edit
    assert feedparser.parse(body).feed.updated_parsed[:6] == late_edit.timetuple()[:6]


class _Anydatetime(type):
    """Keeps feedgen's isinstance(x, datetime) checks true for real datetimes."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, datetime)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("entries", [[A3, A2, A1], []], ids=["entries", "empty"])
def test_wall_clock_never_reaches_the_bytes(fmt: str, entries: list, monkeypatch) -> None:
    """feedgen stamps now() into feeds and entries; fake two very different "now"s."""

    def render_at(moment: datetime) -> bytes:
        class Frozen(datetime, metaclass=_Anydatetime):
            @classmethod
            def now(cls, tz=None):
                return moment.astimezone(tz)

        monkeypatch.setattr(feedgen.feed, "datetime", Frozen)
        monkeypatch.setattr(feedgen.entry, "datetime", Frozen)
        return RENDER[fmt](spec(), SITE, entries)

    early = render_at(datetime(2001, 1, 1, tzinfo=UTC))
    late = render_at(datetime(2099, 12, 31, 23, 59, tzinfo=UTC))
    assert early == late
    assert feed_updated(early, fmt).year not in (2001, 2099)


@pytest.mark.parametrize("fmt", FORMATS)
def test_html_link_is_the_feeds_page_for_people_not_the_feed(fmt: str) -> None:
    root = parse(RENDER[fmt](spec(), SITE, [A1]))
    page = f"{BASE}feeds/alle"
    if fmt == "rss":
        assert xp(root, "/rss/channel/link/text()") == [page]
    else:
        assert [link.get("href") for link in xp(root, "/a:feed/a:link[@rel='alternate']")] == [page]
        assert xp(root, "/a:feed/a:link[@rel='alternate']/@type") == ["text/html"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_exactly_one_self_link_pointing_at_the_feed(fmt: str) -> None:
    root = parse(RENDER[fmt](spec(name="ukraine"), SITE, [A2, A1]))
    path = "/rss/channel/a:link[@rel='self']" if fmt == "rss" else "//a:link[@rel='self']"
    links = xp(root, path)
    assert [link.get("href") for link in links] == [f"{BASE}feeds/ukraine.{fmt}"]
    assert links[0].get("type") == f"application/{fmt}+xml"


def test_language_comes_from_the_feed_spec() -> None:
    english = spec(language="en-GB")
    rss = parse(render_rss(english, SITE, [A1]))
    atom = parse(render_atom(english, SITE, [A1]))
    assert xp(rss, "/rss/channel/language/text()") == ["en-GB"]
    assert atom.get(XML_LANG) == "en-GB"
    assert feedparser.parse(render_atom(english, SITE, [A1])).feed.language == "en-GB"


@pytest.mark.parametrize("max_age, ttl", [(600, 10), (90, 2), (61, 2), (60, 1), (300, 5)])
def test_rss_ttl_is_max_age_in_whole_minutes_rounded_up(max_age: int, ttl: int) -> None:
    root = parse(render_rss(spec(max_age=max_age), SITE, [A1]))
    assert xp(root, "/rss/channel/ttl/text()") == [str(ttl)] == [str(math.ceil(max_age / 60))]


@pytest.mark.parametrize(
    ("max_age", "period", "frequency"),
    [(300, "hourly", 12), (600, "hourly", 6), (420, "hourly", 8), (3600, "hourly", 1), (7200, "daily", 12)],
)
def test_syndication_hints_never_ask_for_polls_more_often_than_max_age(
    max_age: int, period: str, frequency: int
) -> None:
    body = render_rss(spec(max_age=max_age), SITE, [A1])
    channel = parse(body).find("channel")
    assert channel is not None
    sy = "{http://purl.org/rss/1.0/modules/syndication/}"
    assert (channel.findtext(f"{sy}updatePeriod"), channel.findtext(f"{sy}updateFrequency")) == (
        period,
        str(frequency),
    )
    seconds = {"hourly": 3600, "daily": 86400}[period]
    assert seconds / frequency >= max_age  # a reader polling by the hint comes no sooner
    assert polling(max_age) == (math.ceil(max_age / 60), period, frequency)
    parsed = feedparser.parse(body)  # readers built on feedparser see them
    assert (parsed.feed.sy_updateperiod, parsed.feed.sy_updatefrequency) == (period, str(frequency))


# --- entry contents ------------------------------------------------------------------------

AUTHORED = art(
    "a1",
    1,
    authors=(
        Author("Anna Beispiel", "anna@example.org", "https://anna.example.org/"),
        Author("Bernd Ohne-Mail"),
    ),
)


def test_rss_gives_one_dc_creator_with_the_whole_byline_and_no_email_author() -> None:
    root = parse(render_rss(spec(), SITE, [AUTHORED]))
    item = items(root, "rss")[0]
    # Readers keep one of several dc:creator, and show <author> as "anna@example.org (Anna ...)".
    assert xp(item, "author") == []
    assert xp(item, "dc:creator/text()") == ["Anna Beispiel und Bernd Ohne-Mail"]
    parsed = feedparser.parse(render_rss(spec(), SITE, [AUTHORED]))
    assert parsed.entries[0].author == "Anna Beispiel und Bernd Ohne-Mail"

    english = render_rss(spec(language="en"), SITE, [replace(AUTHORED, authors=AUTHORED.authors * 2)])
    assert xp(parse(english), "//item/dc:creator/text()") == [
        "Anna Beispiel, Bernd Ohne-Mail, Anna Beispiel and Bernd Ohne-Mail"
    ]
    no_email = parse(render_rss(spec(), SITE, [A1]))
    assert xp(no_email, "//item/author") == []
    assert xp(no_email, "//item/dc:creator/text()") == ["Redaktion"]


def test_a_byline_joins_names_in_the_articles_language_first() -> None:
    assert byline(["A"], "de") == "A"
    assert byline(["A", "B"], "de-AT") == "A und B"
    assert byline(["A", "B", "C"], "fr") == "A, B et C"
    assert byline(["A", "B"], "tlh") == "A & B"  # a language without a word here
    french = replace(AUTHORED, language="fr")
    assert xp(parse(render_rss(spec(), SITE, [french])), "//item/dc:creator/text()") == [
        "Anna Beispiel et Bernd Ohne-Mail"
    ]


def test_atom_gives_one_author_the_byline_and_each_person_as_a_contributor() -> None:
    body = render_atom(spec(), SITE, [AUTHORED])

    def people(where: str) -> list[dict[str, str | None]]:
        return [{c.tag.split("}")[1]: c.text for c in p} for p in xp(parse(body), f"/a:feed/a:entry/{where}")]

    assert people("a:author") == [{"name": "Anna Beispiel und Bernd Ohne-Mail"}]
    assert people("a:contributor") == [
        {"name": "Anna Beispiel", "email": "anna@example.org", "uri": "https://anna.example.org/"},
        {"name": "Bernd Ohne-Mail"},
    ]
    alone = render_atom(spec(), SITE, [replace(AUTHORED, authors=AUTHORED.authors[:1])])
    assert xp(parse(alone), "//a:entry/a:author/a:email/text()") == ["anna@example.org"]
    assert xp(parse(alone), "//a:entry/a:contributor") == []


def test_every_format_shows_one_byline_per_entry_to_a_feedparser_reader() -> None:
    """Readers show one author line: feedparser keeps the last of several Atom authors and
    gives it the email of another ("Bernd Ohne-Mail (anna@example.org)")."""
    for body in (render_atom(spec(), SITE, [AUTHORED]), render_rss(spec(), SITE, [AUTHORED])):
        entry = feedparser.parse(body).entries[0]
        assert entry.author == "Anna Beispiel und Bernd Ohne-Mail"
        assert [a.get("email") for a in entry.authors] == [None]


def test_topics_and_tags_become_categories_in_both_formats() -> None:
    tagged = art("a1", 1, topics=(Topic("ukraine-krieg", "Ukraine-Krieg"),), tags=(Topic("kursk", "Kursk"),))
    rss = parse(render_rss(spec(), SITE, [tagged]))
    atom = parse(render_atom(spec(), SITE, [tagged]))
    assert {c.lower() for c in xp(rss, "//item/category/text()")} == {"ukraine-krieg", "kursk"}
    categories = xp(atom, "//a:entry/a:category")
    assert [(c.get("term"), c.get("label")) for c in categories] == [
        ("ukraine-krieg", "Ukraine-Krieg"),
        ("kursk", "Kursk"),
    ]
    assert {t.term for t in feedparser.parse(render_atom(spec(), SITE, [tagged])).entries[0].tags} == {
        "ukraine-krieg",
        "kursk",
    }


@pytest.mark.parametrize("content", ["full", "summary"])
def test_full_content_only_for_full_feeds(content: str) -> None:
    entry = art("a1", 1, html="<p>Voller <b>Text</b></p>", summary="Nur kurz")
    rss = parse(render_rss(spec(content=content), SITE, [entry]))
    atom = parse(render_atom(spec(content=content), SITE, [entry]))
    assert xp(rss, "//item/description/text()") == ["Nur kurz"]
    assert xp(atom, "//a:entry/a:summary/text()") == ["Nur kurz"]
    full = ["<p>Voller <b>Text</b></p>"] if content == "full" else []
    assert xp(rss, "//item/content:encoded/text()") == full
    assert xp(atom, "//a:entry/a:content/text()") == full
    if content == "full":
        assert xp(atom, "//a:entry/a:content/@type") == ["html"]
        parsed = feedparser.parse(render_atom(spec(content=content), SITE, [entry]))
        assert "Voller" in parsed.entries[0].content[0].value


IMAGED = art("a1", 1, image=f"{BASE}images/kursk.jpg", image_type="image/jpeg", image_length=2048)


def test_rss_enclosure_for_an_article_image() -> None:
    body = render_rss(spec(), SITE, [IMAGED])
    enclosures = xp(parse(body), "//item/enclosure")
    assert [(e.get("url"), e.get("type"), e.get("length")) for e in enclosures] == [
        (f"{BASE}images/kursk.jpg", "image/jpeg", "2048")
    ]
    assert feedparser.parse(body).entries[0].enclosures[0].href == f"{BASE}images/kursk.jpg"


def test_atom_enclosure_link_for_an_article_image() -> None:
    body = render_atom(spec(), SITE, [IMAGED])
    links = xp(parse(body), "//a:entry/a:link")
    enclosures = [link for link in links if link.get("rel") == "enclosure"]
    assert [(e.get("href"), e.get("type")) for e in enclosures] == [(f"{BASE}images/kursk.jpg", "image/jpeg")]
    alternates = [link for link in links if link.get("rel", "alternate") == "alternate"]
    assert [a.get("href") for a in alternates] == [f"{BASE}articles/a1"]
    parsed = feedparser.parse(body).entries[0]
    assert parsed.link == f"{BASE}articles/a1"
    assert [e.href for e in parsed.enclosures] == [f"{BASE}images/kursk.jpg"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_entries_link_to_the_article_url(fmt: str) -> None:
    external = art("a2", 2, url="https://elsewhere.example.com/story")
    parsed = feedparser.parse(RENDER[fmt](spec(), SITE, [external, A1]))
    assert [e.link for e in parsed.entries] == ["https://elsewhere.example.com/story", f"{BASE}articles/a1"]


# --- dates ---------------------------------------------------------------------------------

RFC822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def test_rss_dates_are_rfc822_with_four_digit_year_in_utc() -> None:
    entry = art("a1", 1, hour=7, updated=datetime(2025, 5, 2, 9, 5, tzinfo=UTC))
    root = parse(render_rss(spec(), SITE, [entry]))
    pub = xp(root, "//item/pubDate/text()")[0]
    built = xp(root, "/rss/channel/lastBuildDate/text()")[0]
    assert RFC822.match(pub) and RFC822.match(built)
    assert email.utils.parsedate_to_datetime(pub) == entry.published
    assert email.utils.parsedate_to_datetime(built) == entry.updated


def test_atom_dates_are_rfc3339() -> None:
    entry = art("a1", 1, hour=7, updated=datetime(2025, 5, 2, 9, 5, tzinfo=UTC))
    root = parse(render_atom(spec(), SITE, [entry]))
    stamps = {
        "feed": xp(root, "/a:feed/a:updated/text()")[0],
        "updated": xp(root, "//a:entry/a:updated/text()")[0],
        "published": xp(root, "//a:entry/a:published/text()")[0],
    }
    assert all(RFC3339.match(s) for s in stamps.values()), stamps
    parsed = {k: datetime.fromisoformat(v.replace("Z", "+00:00")) for k, v in stamps.items()}
    assert parsed == {"feed": entry.updated, "updated": entry.updated, "published": entry.published}


# --- validity ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atom_schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(shared("schemas/atom.rng"))))


@pytest.mark.parametrize("entries", [[], [AUTHORED, replace(IMAGED, id="b")]], ids=["empty", "entries"])
def test_atom_validates_against_rfc4287_schema(entries: list, atom_schema: etree.RelaxNG) -> None:
    for content in ("full", "summary"):
        doc = parse(render_atom(spec(content=content), SITE, entries))
        assert atom_schema.validate(doc), atom_schema.error_log


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_feed_is_a_well_formed_document(fmt: str) -> None:
    body = RENDER[fmt](spec(), SITE, [])
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.entries == []
    assert parsed.feed.title == "Alle"
    assert parsed.version == ("rss20" if fmt == "rss" else "atom10")
    if fmt == "rss":
        root = parse(body)
        assert xp(root, "/rss/@version") == ["2.0"]
        for required in ("title", "link", "description"):
            assert xp(root, f"string(/rss/channel/{required})")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_link_is_absolute(fmt: str) -> None:
    entries = [IMAGED, replace(AUTHORED, id="a0")]
    root = parse(RENDER[fmt](spec(), SITE, entries))
    urls = [str(u) for u in xp(root, "//@href | //@url | //a:uri/text()")]
    if fmt == "rss":
        urls += [str(u) for u in xp(root, "//link/text() | //guid[@isPermaLink='true']/text()")]
    assert len(urls) >= 4
    for url in urls:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.netloc, url


# --- size: max_bytes --------------------------------------------------------------------------

BIG = "<p>" + "Langer Absatz mit vielen Wörtern. " * 300 + "</p>"  # about 10 KB of content each


def big_entries(count: int) -> list[Article]:
    return [
        art(f"b{i:02d}", 28 - i // 10, 20 - i % 10, html=BIG, summary=f"Kurzfassung {i}")
        for i in range(count)
    ]


def shown(body: bytes, fmt: str) -> list[tuple[str, bool]]:
    """(entry id suffix, carries full content) for each entry, in document order."""
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [(e.id.rsplit(":", 1)[1], bool(e.get("content"))) for e in parsed.entries]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_feed_that_fits_is_untouched(fmt: str) -> None:
    entries = big_entries(3)
    fitted = render_feed(Format(fmt), spec(max_bytes=1 << 20), SITE, entries)
    assert fitted.body == RENDER[fmt](spec(), SITE, entries) and fitted.note == ""


@pytest.mark.parametrize("fmt", FORMATS)
def test_full_content_gives_way_from_the_oldest_entry_on(fmt: str) -> None:
    entries = big_entries(12)
    limit = 64 * 1024
    fitted = render_feed(Format(fmt), spec(max_bytes=limit), SITE, entries)
    assert len(fitted.body) <= limit
    result = shown(fitted.body, fmt)
    assert [i for i, _ in result] == [e.id for e in entries]  # every entry still there, in order
    full = [has for _, has in result]
    assert full[0] and not full[-1] and full == sorted(full, reverse=True)  # newest keep content
    assert fitted.summarized == full.count(False) and fitted.dropped == 0
    # As much content as fits: one more full entry would not.
    keep = full.count(True)
    assert len(RENDER[fmt](spec(), SITE, entries, None, None, keep + 1)) > limit
    assert "summary only" in fitted.note and str(limit) in fitted.note


@pytest.mark.parametrize("fmt", FORMATS)
def test_entries_drop_from_the_oldest_when_summaries_alone_do_not_fit(fmt: str) -> None:
    entries = [replace(e, summary="S" * 600, title="T" * 2000) for e in big_entries(40)]
    limit = 16 * 1024
    fitted = render_feed(Format(fmt), spec(max_bytes=limit), SITE, entries)
    assert len(fitted.body) <= limit
    result = shown(fitted.body, fmt)
    assert 0 < len(result) < 40 and not any(has for _, has in result)
    assert [i for i, _ in result] == [e.id for e in entries[: len(result)]]  # the newest stay
    assert fitted.dropped == 40 - len(result) and "left out" in fitted.note


def test_atom_trimmed_to_size_still_validates(atom_schema: etree.RelaxNG) -> None:
    fitted = render_feed(Format.ATOM, spec(max_bytes=32 * 1024), SITE, big_entries(10))
    assert fitted.note and atom_schema.validate(parse(fitted.body)), atom_schema.error_log


# --- pictures, hubs and archive links (what readers use) --------------------------------------

CAPTIONED = replace(IMAGED, image_alt="Soldaten an der Grenze bei Kursk")
MEDIA = "{http://search.yahoo.com/mrss/}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_article_image_is_also_media_rss_with_its_caption(fmt: str) -> None:
    body = RENDER[fmt](spec(), SITE, [CAPTIONED])
    entry = xp(parse(body), "//item" if fmt == "rss" else "//a:entry")[0]
    content = entry.findall(f"{MEDIA}content")
    assert [(c.get("url"), c.get("type"), c.get("medium"), c.get("fileSize")) for c in content] == [
        (f"{BASE}images/kursk.jpg", "image/jpeg", "image", "2048")
    ]
    assert content[0].findtext(f"{MEDIA}title") == "Soldaten an der Grenze bei Kursk"
    assert [t.get("url") for t in entry.findall(f"{MEDIA}thumbnail")] == [f"{BASE}images/kursk.jpg"]
    parsed = feedparser.parse(body).entries[0]  # what FreshRSS-style readers take
    assert parsed.media_content[0]["url"] == f"{BASE}images/kursk.jpg"
    assert parsed.media_thumbnail[0]["url"] == f"{BASE}images/kursk.jpg"
    # The caption stays with the picture: it is neither the entry's title nor its content.
    assert parsed.title == CAPTIONED.title
    assert all("Kursk" not in c.value for c in parsed.get("content", []))


@pytest.mark.parametrize("fmt", FORMATS)
def test_article_without_image_has_no_media_elements(fmt: str) -> None:
    assert b"search.yahoo.com/mrss" not in RENDER[fmt](spec(), SITE, [A1])


def test_icon_and_logo_become_atom_icon_and_logo() -> None:
    site = replace(SITE, icon=f"{BASE}static/icon.png", logo=f"{BASE}static/logo.png")
    root = parse(render_atom(spec(), site, [A1]))
    assert xp(root, "/a:feed/a:icon/text()") == [f"{BASE}static/icon.png"]
    assert xp(root, "/a:feed/a:logo/text()") == [f"{BASE}static/logo.png"]
    assert not xp(parse(render_atom(spec(), SITE, [A1])), "/a:feed/a:icon | /a:feed/a:logo")


@pytest.mark.parametrize(
    ("icon", "logo", "shown"),
    [
        ("icon.png", "logo.png", "icon.png"),
        ("icon.png", None, "icon.png"),
        (None, "logo.png", "logo.png"),
        (None, None, None),
    ],
)
def test_rss_image_is_the_square_icon_or_else_the_logo_with_the_channels_title_and_link(
    icon: str | None, logo: str | None, shown: str | None
) -> None:
    site = replace(SITE, icon=icon and f"{BASE}{icon}", logo=logo and f"{BASE}{logo}")
    root = parse(render_rss(spec(), site, [A1]))
    images = xp(root, "/rss/channel/image")
    if shown is None:
        assert images == []
        return
    # Readers (feedparser's feed.image, which most build on) show it as the feed's icon.
    assert feedparser.parse(render_rss(spec(), site, [A1])).feed.image.href == f"{BASE}{shown}"
    assert [(i.findtext("url"), i.findtext("title"), i.findtext("link")) for i in images] == [
        (f"{BASE}{shown}", xp(root, "/rss/channel/title/text()")[0], xp(root, "/rss/channel/link/text()")[0])
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_hubs_are_announced_next_to_self(fmt: str) -> None:
    from feeds.links import subscription_links

    site = replace(SITE, hubs=("https://hub.example.net/", "https://pubsubhubbub.appspot.com/"))
    root = parse(RENDER[fmt](spec(), site, [A1], subscription_links(site, "alle", fmt, 0)))
    parent = "/rss/channel" if fmt == "rss" else "/a:feed"
    assert xp(root, f"{parent}/a:link[@rel='hub']/@href") == list(site.hubs)
    parsed = feedparser.parse(RENDER[fmt](spec(), site, [A1], subscription_links(site, "alle", fmt, 0)))
    assert {link.href for link in parsed.feed.links if link.rel == "hub"} == set(site.hubs)
    assert not xp(parse(RENDER[fmt](spec(), SITE, [A1])), f"{parent}/a:link[@rel='hub']")


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_are_those_of_feedgens_document_parsed_back(fmt: str, monkeypatch) -> None:
    """RSS is finished on the tree feedgen builds, not on its bytes parsed back (a tenth of a
    render saved), and Atom is parsed from bytes without pretty-printing. Neither may change a
    byte: ETags are hashes of the bytes."""
    from feeds import render
    from feeds.links import subscription_links

    site = replace(SITE, hubs=("https://hub.example.net/",), logo=f"{BASE}logo.png")
    rich = [
        art(
            "bild",
            4,
            html="<p>Öl &amp; ]]&gt; 🦊 <a href='https://x.example/?a=1&amp;b=2'>Link</a></p>\n"
            "<pre>  a\n\tb</pre>",
            summary="Öl & ]]> <b>",
            image=f"{BASE}bild.jpg",
            image_type="image/jpeg",
            image_length=1234,
            image_alt="Ein Bild",
            topics=(Topic("welt", "Welt"),),
            tags=(Topic("öl", "Öl"),),
            authors=(Author("A", "a@example.org"), Author("B", uri="https://b.example/")),
        ),
        A3,
        art("leer", 2, html="  "),
    ]
    links = subscription_links(site, "alle", fmt, 3)

    def documents() -> list[bytes]:
        return [
            RENDER[fmt](spec(content=content), site, rich, links, full=full)
            for content in ("full", "summary")
            for full in (None, 1)
        ]

    ours = documents()
    serialize = feedgen.feed.FeedGenerator.rss_str if fmt == "rss" else feedgen.feed.FeedGenerator.atom_str

    def parsed_back(fg: feedgen.feed.FeedGenerator) -> etree._Element:
        return etree.fromstring(serialize(fg, pretty=True), parser=render._PARSER)

    monkeypatch.setattr(render, f"_{fmt}_tree", parsed_back)
    assert documents() == ours


def test_warm_up_leaves_no_trace_in_documents() -> None:
    """warm_up renders a throwaway feed: only caches may remain, never anything in the bytes."""
    from feeds.render import warm_up

    before = [RENDER[fmt](spec(), SITE, [A3, A2, A1]) for fmt in FORMATS]
    warm_up(SITE)
    warm_up(replace(SITE, url="https://other.example/", hubs=("https://hub.example.net/",)))
    assert [RENDER[fmt](spec(), SITE, [A3, A2, A1]) for fmt in FORMATS] == before
