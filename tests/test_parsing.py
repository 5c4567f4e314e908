"""parsing.py: article files (front matter and plain form), dates, topics, ids, safe HTML, bad inputs."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from unittest.mock import patch

import lxml.html
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from feeds.articles import EPOCH, Author, DateSource, SourceFile, Stamp, article_id_for, decode, entry_id
from feeds.config import load_config
from feeds.errors import Problem, Severity
from feeds.live import open_store
from feeds.markup import _ILLEGAL
from feeds.parsing import _FENCE, _one_line, _split_front_matter, parse_article, stamped
from feeds.store import Ledger

from conftest import NOW, shared


def load_articles(config):
    """What the server would publish from these files: the index's articles and problems."""
    store, _, _ = open_store(config, None, Ledger(None), lambda: NOW)
    with store.read() as reader:
        return reader.articles(), reader.problems()


MTIME = 1_700_000_000.0  # 2023-11-14T22:13:20Z
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
SAMPLE_NAME = "000_04400df533381831.txt"  # ../shared/samples: the newsroom's export form


@pytest.fixture
def site(make_site):
    return load_config(make_site(articles={}))


def parse(site, text: str | bytes, path: str = "politik/artikel.md", mtime: float = MTIME):
    data = text if isinstance(text, bytes) else textwrap.dedent(text).encode("utf-8")
    return parse_article(SourceFile(path, data, Stamp(len(data), int(mtime * 1e9))), site)


def ok(site, text, path="politik/artikel.md", **kw):
    article, problems = parse(site, text, path, **kw)
    assert article is not None, problems
    assert [p for p in problems if p.severity is Severity.ERROR] == [], problems
    return article


def tree(html: str) -> lxml.html.HtmlElement:
    return lxml.html.fragment_fromstring(html, create_parent="div")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- the two forms -----------------------------------------------------------------------------

FULL = """\
    ---
    id: nordkorea-kursk-2025
    title: Nordkorea schickt Soldaten nach Russland
    date: 2025-04-28T09:30:00+02:00
    updated: 2025-04-28T12:00:00+02:00
    topics: [Ukraine-Krieg, nordkorea]
    tags: [Kursk]
    author: {name: Anna Muster, email: anna@example.org, uri: https://example.org/anna}
    summary: Nordkorea bestätigt erstmals den Einsatz.
    language: en
    draft: false
    image: images/kursk.jpg
    link: https://example.org/story
    sources: [KCNA, Yonhap]
    ---
    Ein **fetter** Absatz.
    """


def test_front_matter_keys_are_all_used(site):
    a = ok(site, FULL)
    assert a.id == "nordkorea-kursk-2025"
    assert a.title == "Nordkorea schickt Soldaten nach Russland"
    assert a.published == utc(2025, 4, 28, 7, 30)
    assert a.updated == utc(2025, 4, 28, 10, 0)
    assert a.topic_slugs == {"ukraine-krieg", "nordkorea"}
    assert a.tag_slugs == {"kursk"}
    assert a.authors == (Author("Anna Muster", "anna@example.org", "https://example.org/anna"),)
    assert a.summary == "Nordkorea bestätigt erstmals den Einsatz."
    assert a.language == "en"
    assert a.draft is False
    assert a.image == "https://news.example.org/media/politik/images/kursk.jpg"  # beside the article
    assert a.image_type == "image/jpeg"
    assert a.url == "https://example.org/story"
    assert a.permalink.startswith("https://news.example.org/")
    assert "nordkorea-kursk-2025" in a.permalink
    assert a.sources == ("KCNA", "Yonhap")
    assert tree(a.html).find(".//strong").text == "fetter"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Redaktion Ost", (Author("Redaktion Ost"),)),
        ("{name: Ben, email: ben@example.org}", (Author("Ben", "ben@example.org"),)),
        ("[Anna, {name: Ben}]", (Author("Anna"), Author("Ben"))),
        (None, (Author("Redaktion"),)),  # the site's author
    ],
)
def test_author_forms(site, value, expected):
    line = f"author: {value}\n" if value else ""
    a = ok(site, f"---\ntitle: T\ndate: 2025-01-01\n{line}---\nText.\n")
    assert a.authors == expected


def test_derived_summary_is_plain_text_of_body(site):
    a = ok(site, "---\ntitle: T\ndate: 2025-01-01\n---\nEin **fetter** [Link](/x).\n")
    assert a.summary == "Ein fetter Link."


def test_plain_txt_form(site):
    a = ok(
        site, "Titel der Meldung\nErster Absatz.\nZwischentitel\nZweiter Absatz.\n", path="klima/meldung.txt"
    )
    assert a.title == "Titel der Meldung"
    root = tree(a.html)
    assert [("h" if el.tag in HEADINGS else el.tag, el.text_content()) for el in root] == [
        ("p", "Erster Absatz."),
        ("h", "Zwischentitel"),
        ("p", "Zweiter Absatz."),
    ]


def test_md_without_front_matter_takes_first_line_as_title(site):
    a = ok(site, "# Überschrift\n\nDer Text.\n")
    assert a.title == "Überschrift"
    assert [el.tag for el in tree(a.html)] == ["p"]


def test_real_newsroom_sample(site):
    sample = shared(f"samples/{SAMPLE_NAME}")
    text = sample.read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    a, problems = parse(site, sample.read_bytes(), path=f"Ukraine-Krieg/{sample.name}")
    assert a is not None, problems
    assert a.title == lines[0] == "Nordkorea schickt Soldaten nach Russland: Erfolg im Kampf um Kursk!"
    assert a.topic_slugs == {"ukraine-krieg"}
    assert a.id == f"Ukraine-Krieg/{sample.stem}"
    root = tree(a.html)
    kinds = ["h" if el.tag in HEADINGS else el.tag for el in root]
    assert kinds == ["p", "p", "h", "p", "p", "p", "table"]
    texts = [el.text_content().strip() for el in root]
    assert texts[:6] == lines[1:7]
    assert texts[2] == "Verluste und Unterstützung"
    table = root[6]
    assert [c.text_content().strip() for c in table.iter("th")][0] == "Details"
    assert [c.text_content().strip() for c in table.iter("td")][0] == "Quellen"
    assert "|" not in table.text_content() and "---" not in table.text_content()
    # It has no date: never the file time; dated when first seen, with a warning naming the file.
    assert a.dated_by is DateSource.SEEN and a.published == EPOCH
    assert [p.severity for p in problems] == [Severity.WARNING]
    assert problems[0].path == f"Ukraine-Krieg/{sample.name}"


# --- topics and ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("topics", ["Ukraine-Krieg", "ukraine krieg", "ukraine-krieg", "[UKRAINE KRIEG]"])
def test_topic_names_compare_by_slug(site, topics):
    a = ok(site, f"---\ntitle: T\ndate: 2025-01-01\ntopics: {topics}\n---\nText.\n")
    assert a.topic_slugs == {"ukraine-krieg"}


def test_duplicate_topic_spellings_are_one_topic(site):
    a = ok(site, "---\ntitle: T\ndate: 2025-01-01\ntopics: [Ukraine-Krieg, ukraine krieg]\n---\nx\n")
    assert len(a.topics) == 1


@pytest.mark.parametrize(
    "path, front, topics",
    [
        ("politik/2025/x.md", "", {"politik"}),
        ("Wirtschaft/x.md", "", {"wirtschaft"}),
        ("x.md", "", set()),
        ("politik/x.md", "topics: klima\n", {"klima"}),  # explicit topics replace the folder
    ],
)
def test_topic_from_first_folder(site, path, front, topics):
    a = ok(site, f"---\ntitle: T\ndate: 2025-01-01\n{front}---\nx\n", path=path)
    assert a.topic_slugs == topics


@pytest.mark.parametrize(
    "path, expected",
    [
        ("politik/2025/kursk.md", "politik/2025/kursk"),
        ("klima/bericht.txt", "klima/bericht"),
        ("notiz.markdown", "notiz"),
    ],
)
def test_default_id_is_path_without_extension(site, path, expected):
    assert ok(site, "---\ntitle: T\ndate: 2025-01-01\n---\nx\n", path=path).id == expected


# --- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2025-07-01T12:00:00", utc(2025, 7, 1, 10)),  # naive, Berlin summer time +02:00
        ("2025-01-15T12:00:00", utc(2025, 1, 15, 11)),  # naive, Berlin winter time +01:00
        ("'2025-07-01 12:00'", utc(2025, 7, 1, 10)),  # quoted string, naive
        ("2025-07-01", utc(2025, 6, 30, 22)),  # plain date: midnight in Berlin
        ("2025-01-15", utc(2025, 1, 14, 23)),
        ("2025-04-28T09:30:00+02:00", utc(2025, 4, 28, 7, 30)),  # aware: kept
        ("2025-04-28T09:30:00-05:00", utc(2025, 4, 28, 14, 30)),
        ("2025-04-28T09:30:00Z", utc(2025, 4, 28, 9, 30)),
    ],
)
def test_dates_become_aware_utc(site, value, expected):
    a = ok(site, f"---\ntitle: T\ndate: {value}\n---\nx\n")
    assert a.published == expected
    assert a.published.utcoffset() == timedelta(0)
    assert a.updated.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "updated, expected",
    [
        (None, utc(2025, 5, 1, 6)),  # defaults to published
        ("2025-05-02T10:00:00+02:00", utc(2025, 5, 2, 8)),
        ("2025-04-01T10:00:00+02:00", utc(2025, 5, 1, 6)),  # never earlier than published
    ],
)
def test_updated(site, updated, expected):
    extra = f"updated: {updated}\n" if updated else ""
    a = ok(site, f"---\ntitle: T\ndate: 2025-05-01T08:00:00\n{extra}---\nx\n")
    assert a.published == utc(2025, 5, 1, 6)
    assert a.updated == expected


def test_no_date_never_takes_the_file_time_and_warns(site):
    a, problems = parse(site, "---\ntitle: T\n---\nx\n", path="politik/ohne-datum.md")
    assert a.dated_by is DateSource.SEEN and a.published == EPOCH  # until first seen
    (problem,) = problems
    assert problem.severity is Severity.WARNING
    assert problem.path == "politik/ohne-datum.md"
    assert "first seen" in problem.message and "--stamp-dates" in problem.message


def test_a_copied_dateless_article_keeps_its_entry_id(site):
    """git clone, cp and restores change every mtime: the id must not notice."""
    a, _ = parse(site, "Titel\nText.\n", path="politik/x.txt", mtime=MTIME)
    b, _ = parse(site, "Titel\nText.\n", path="politik/x.txt", mtime=MTIME + 86400 * 400)
    assert entry_id(site, a) == entry_id(site, b)
    assert entry_id(site, a).startswith("urn:uuid:")
    dated, _ = parse(site, "---\ndate: 2025-01-02\n---\nTitel\nText.\n", path="politik/x.txt")
    assert entry_id(site, dated) == "tag:news.example.org,2025-01-02:politik/x"


def test_first_seen_dates_the_article_and_keeps_the_dateless_id(site):
    plain, _ = parse(site, "Titel\nText.\n", path="politik/x.txt")
    data = stamped(b"Titel\nText.\n", "2025-03-04T05:06:07+01:00")
    assert data == b"---\nfirst_seen: 2025-03-04T05:06:07+01:00\n---\nTitel\nText.\n"
    a, problems = parse(site, data, path="politik/x.txt")
    assert a.published == utc(2025, 3, 4, 4, 6, 7) and a.dated_by is DateSource.FIRST_SEEN
    assert a.title == "Titel" and "Text." in a.html
    assert entry_id(site, a) == entry_id(site, plain)
    assert problems == []


def test_stamping_keeps_bom_line_ends_and_the_rest_of_the_front_matter(site):
    data = b"\xef\xbb\xbf---\r\ntitle: T\r\n---\r\nText.\r\n"
    assert stamped(data, "2025-01-01T00:00:00+00:00") == (
        b"\xef\xbb\xbf---\r\nfirst_seen: 2025-01-01T00:00:00+00:00\r\ntitle: T\r\n---\r\nText.\r\n"
    )


@pytest.mark.parametrize("value", ["gestern", "2025-13-45", "28.04.2025"])
def test_unreadable_date_is_reported_with_line(site, value):
    a, problems = parse(site, f"---\ntitle: T\ndate: {value}\n---\nx\n", path="p/x.md")
    assert a is not None and a.dated_by is DateSource.SEEN
    assert any(p.line == 3 and "date" in p.message and p.path == "p/x.md" for p in problems), problems


@pytest.mark.parametrize(
    "front, published_at_now",
    [
        ("date: 2025-05-01\n", True),
        ("date: 2025-05-01\ndraft: true\n", False),
        ("date: 2030-01-01T08:00:00+01:00\n", False),
        ("date: 2025-05-01\ndraft: 'maybe'\n", False),  # unclear: err on the side of not publishing
    ],
)
def test_drafts_and_future_dates_are_not_published(site, front, published_at_now):
    a, _ = parse(site, f"---\ntitle: T\n{front}---\nx\n")
    assert a.is_published(NOW) is published_at_now


def test_embargoed_article_appears_when_its_time_comes(site):
    a = ok(site, "---\ntitle: T\ndate: 2030-01-01T08:00:00+01:00\n---\nx\n")
    assert not a.is_published(utc(2030, 1, 1, 6, 59, 59))
    assert a.is_published(utc(2030, 1, 1, 7, 0, 0))


# --- body: Markdown, sanitizing, absolute URLs, clean text ------------------------------------


def test_markdown_commonmark_with_tables(site):
    body = "Text mit *kursiv*.\n\n- eins\n- zwei\n\n| Land | Zahl |\n|---|---|\n| Nordkorea | 11000 |\n"
    root = tree(ok(site, f"---\ntitle: T\ndate: 2025-01-01\n---\n{body}").html)
    assert root.find(".//em").text == "kursiv"
    assert [li.text for li in root.iter("li")] == ["eins", "zwei"]
    assert [th.text for th in root.iter("th")] == ["Land", "Zahl"]
    assert [td.text for td in root.iter("td")] == ["Nordkorea", "11000"]


def test_body_is_sanitized(site):
    body = textwrap.dedent("""\
        <script>alert('x')</script>

        <p onclick="steal()">Klick</p>

        <img src="a.png" onerror="steal()">

        <a href="javascript:alert(1)">Link</a> [md](javascript:alert(2))

        <iframe src="https://evil.example/"></iframe>
        """)
    a = ok(site, f"---\ntitle: T\ndate: 2025-01-01\n---\n{body}")
    root = tree(a.html)
    assert root.find(".//script") is None and root.find(".//iframe") is None
    for el in root.iter():
        assert not any(k.startswith("on") for k in el.attrib)
        assert "javascript" not in " ".join(el.attrib.values()).lower()
    assert "alert('x')" not in root.text_content()  # script content is gone, not shown
    assert "Klick" in root.text_content()


@pytest.mark.parametrize(
    "url, link, image",
    [
        (
            "https://news.example.org",
            "https://news.example.org/archiv/1",
            "https://news.example.org/media/politik/images/a.png",
        ),
        (
            "https://example.org/news",
            "https://example.org/news/archiv/1",
            "https://example.org/news/media/politik/images/a.png",
        ),
    ],
)
def test_relative_links_and_images_become_absolute(make_site, url, link, image):
    """Links resolve against the site; pictures against the article's folder, at /media/."""
    site = load_config(make_site(articles={}, config={"site": {"url": url}}))
    a = ok(site, "---\ntitle: T\ndate: 2025-01-01\n---\n[Link](archiv/1) ![Bild](images/a.png)\n")
    root = tree(a.html)
    assert root.find(".//a").get("href") == link
    assert root.find(".//img").get("src") == image
    assert a.permalink.startswith(url + "/articles/")


@pytest.mark.parametrize("bad", ["\x0b", "\x1f", "\ufffe", "\x08"])
def test_xml_illegal_characters_are_removed(site, bad):
    a = ok(site, f"---\ntitle: Ti{bad}tel\ndate: 2025-01-01\n---\nTe{bad}xt mit{bad} Zeichen.\n")
    assert a.title == "Titel"
    assert bad not in a.html and bad not in a.summary
    assert tree(a.html).text_content().strip() == "Text mit Zeichen."


@pytest.mark.parametrize("escape", ["\\x07", "\\x01", "\\uFFFE"])
def test_xml_illegal_characters_written_as_yaml_escapes_are_removed(site, escape):
    a = ok(
        site,
        f'---\ntitle: "Alarm{escape}Glocke"\ntopics: ["Ticker{escape}"]\n'
        f'author: "Red{escape}aktion"\ndate: 2025-01-01\n---\nx\n',
    )
    text = a.title + a.topics[0].name + a.authors[0].name
    assert not any(c in text for c in "\x07\x01\ufffe"), repr(text)


# --- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, line, words",
    [
        (b"---\ntitle: T\ndate: 2025-01-01\nfoo: a: b\n---\nx\n", 4, "YAML"),
        (b"---\ntitle: T\ntitle: U\n---\nx\n", 3, "duplicate"),
        (b"---\ntitle: T\ndate: 2025-01-01\nText ohne Ende\n", 1, "never closed"),
        (b"---\n- eins\n- zwei\n---\nx\n", 2, "mapping"),
        (b"", None, "empty"),
        (b"  \n\t\r\n\n", None, "empty"),
        (b"Titel\nText\x00\x01\x02\xff", None, "binary"),
    ],
    ids=["bad-yaml", "duplicate-key", "unclosed", "list", "empty", "whitespace", "binary"],
)
def test_unusable_file_is_left_out_and_reported(site, data, line, words):
    a, problems = parse(site, data, path="politik/kaputt.md")
    assert a is None
    assert len(problems) == 1
    (problem,) = problems
    assert problem.path == "politik/kaputt.md"
    assert problem.severity is Severity.ERROR
    assert problem.line == line
    assert words.lower() in problem.message.lower()


def test_invalid_utf8_is_repaired_and_reported(site):
    a, problems = parse(site, b"Titel\nErster Absatz.\nGr\xfc\xdfe aus Berlin.\n", path="k/x.txt")
    assert a is not None and a.title == "Titel"
    assert "Gr\ufffd" in tree(a.html).text_content()
    assert any(p.line == 3 and "UTF-8" in p.message and p.path == "k/x.txt" for p in problems)


def test_bom_and_crlf_are_accepted(site):
    data = (
        b"\xef\xbb\xbf---\r\ntitle: Mit BOM\r\ndate: 2025-01-01\r\n---\r\nErste Zeile.\r\nZweite Zeile.\r\n"
    )
    a = ok(site, data, path="k/x.txt")
    assert a.title == "Mit BOM"
    assert [p.text for p in tree(a.html).iter("p")] == ["Erste Zeile.", "Zweite Zeile."]
    assert "\r" not in a.html and "\ufeff" not in a.html + a.title


def test_unknown_front_matter_key_warns_with_suggestion(site):
    a, problems = parse(site, "---\ntitle: T\ndate: 2025-01-01\ntpoics: [x]\n---\nx\n")
    assert a is not None
    (problem,) = problems
    assert problem.severity is Severity.WARNING
    assert problem.line == 4
    assert "tpoics" in problem.message and "did you mean 'topics'" in problem.message


# --- the folder --------------------------------------------------------------------------------

GOOD = "---\ntitle: Gut\ndate: 2025-01-01\n---\nText.\n"


def test_small_site_loads(make_site):
    articles, problems = load_articles(load_config(make_site()))
    assert not [p for p in problems if p.severity is Severity.ERROR], problems
    by_id = {a.id: a for a in articles}
    assert len(by_id) == 5
    assert {i for i, a in by_id.items() if a.is_published(NOW)} == {"erster", "zweiter", "klima/dritter"}
    assert by_id["klima/dritter"].title == "Dritter Artikel im Exportformat"
    assert by_id["klima/dritter"].topic_slugs == {"klima"}


@pytest.mark.parametrize(
    "bad",
    [
        b"---\ntitle: [unclosed\n---\nx\n",
        b"---\ntitle: T\n",
        b"---\n- a\n---\n",
        b"",
        b"\x00\x01binary",
        b"T\n\xff\xfe kaputt\n",
    ],
    ids=["yaml", "unclosed", "list", "empty", "binary", "utf8"],
)
def test_bad_file_does_not_break_the_others(make_site, bad):
    path = make_site(articles={"a/gut.md": GOOD, "a/kaputt.md": bad, "b/auch-gut.txt": "Titel\nText."})
    articles, problems = load_articles(load_config(path))
    assert {"a/gut", "b/auch-gut"} <= {a.id for a in articles}
    assert any(p.path == "a/kaputt.md" for p in problems)


def test_duplicate_ids_keep_one_and_report_the_other(make_site):
    text = "---\nid: gleich\ntitle: {}\ndate: 2025-01-01\n---\nx\n"
    path = make_site(articles={"a/eins.md": text.format("Eins"), "b/zwei.md": text.format("Zwei")})
    articles, problems = load_articles(load_config(path))
    assert [a.id for a in articles] == ["gleich"]
    (problem,) = problems
    other = {"a/eins.md", "b/zwei.md"} - {articles[0].path}
    assert problem.path in other
    assert "gleich" in problem.message and articles[0].path in problem.message


def test_only_article_files_outside_hidden_and_underscore_names_are_read(make_site):
    path = make_site(
        articles={
            "a/eins.md": GOOD,
            "a/zwei.markdown": GOOD,
            "a/drei.txt": GOOD,
            ".versteckt.md": GOOD,
            "_entwurf.md": GOOD,
            "_intern/x.md": GOOD,
            ".git/y.md": GOOD,
            "a/.z.md": GOOD,
            "a/notiz.rst": GOOD,
            "a/seite.html": GOOD,
            "a/README": GOOD,
        }
    )
    articles, problems = load_articles(load_config(path))
    assert sorted(a.id for a in articles) == ["a/drei", "a/eins", "a/zwei"]
    assert problems == []


def test_directory_named_like_an_article_is_not_a_problem(make_site):
    path = make_site(articles={"a/gut.md": GOOD, "a/ordner.md/innen.md": GOOD})
    articles, problems = load_articles(load_config(path))
    assert sorted(a.id for a in articles) == ["a/gut", "a/ordner.md/innen"]
    assert problems == []


def test_unreadable_file_is_reported_and_skipped(make_site, monkeypatch):
    # Tests run as root, who can read a chmod 000 file: make opening it fail instead.
    import os

    path = make_site(articles={"a/gut.md": GOOD, "a/gesperrt.md": GOOD})
    real_open = os.open

    def fake_open(file, *args, **kwargs):
        if Path(file).name == "gesperrt.md":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    articles, problems = load_articles(load_config(path))
    assert [a.id for a in articles] == ["a/gut"]
    (problem,) = problems
    assert problem.path == "a/gesperrt.md" and "Permission denied" in problem.message


BOMB = "\n".join(
    ["---", "title: Bombe", "date: 2025-01-01", 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    + ["tags: [*a8,*a8,*a8,*a8,*a8,*a8,*a8,*a8,*a8]", "---", "Text."]
)


def test_an_alias_bomb_in_front_matter_is_left_out_with_its_line(make_site):
    path = make_site(articles={"a/bombe.md": BOMB, "a/gut.md": GOOD})
    articles, problems = load_articles(load_config(path))
    assert [a.id for a in articles] == ["a/gut"]
    (problem,) = [p for p in problems if p.path == "a/bombe.md"]
    assert problem.line == 5 and "alias" in problem.message and problem.severity is Severity.ERROR


@given(st.text(alphabet="a./\x00 ", min_size=1, max_size=12))
@example("politik/2024/wahl.md")
@example("a.b/c")
@example(".hidden.md")
@example("a/..md")
@example("a/b.")
@example("a/./b.md")
@example("./a.md")
@example("a//b.md")
@example("a/b.md/")
def test_an_article_id_is_its_path_without_the_suffix_as_pathlib_spells_it(path: str) -> None:
    try:
        expected = str(PurePosixPath(path).with_suffix(""))
    except ValueError:  # no name to cut a suffix from ("/", ".")
        return
    assert article_id_for(path) == expected


# --- the quick paths of a cold start give what the plain rules give --------------------------

_PIECES = [
    b"a",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\t",
    b"\x00",
    b"\x1f",
    b"\x7f",
    b"\xc2",
    b"\xc2\x80",
    b"\xc2\x85",
    b"\xc2\x9f",
    b"\xc2\xa0",
    b"\xef\xbf",
    b"\xef\xbf\xbd",
    b"\xef\xbf\xbe",
    b"\xef\xbf\xbf",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\xe2\x80\x9e",
    b"\xe0",
    b"\xf0\x9f\x98\x80",
]


def _decoded_the_long_way(data: bytes, errors: str) -> str:
    text = data.decode("utf-8-sig", errors=errors).replace("\r\n", "\n").replace("\r", "\n")
    return _ILLEGAL.sub("", text)


@given(st.lists(st.sampled_from(_PIECES) | st.binary(max_size=3), max_size=30).map(b"".join))
@example(b"\xef\xbb\xbfTitel\r\n\xc2\x80")
@example(b"\xe0\xc2\x80")  # a broken sequence, then a C1 control
@example(b"Gr\xc3\xb6\xc3\x9fe \xc2\xa0\xe2\x80\x9eZitat\xe2\x80\x9c")
def test_an_article_decodes_to_its_text_without_what_xml_forbids(data: bytes) -> None:
    assert decode(data) == _decoded_the_long_way(data, "replace")
    try:
        expected = _decoded_the_long_way(data, "strict")
    except UnicodeDecodeError:
        return
    assert decode(data, strict=True) == expected


def _split_the_long_way(text: str) -> tuple[str, str] | None:
    """The front matter and body of ``text`` found line by line (the fences' own rule)."""
    lines = text.split("\n")
    if not (_FENCE.match(lines[0]) and lines[0].startswith("---")):
        return None
    end = next((i for i in range(1, len(lines)) if _FENCE.match(lines[i])), None)
    return None if end is None else ("\n".join(lines[1:end]), "\n".join(lines[end + 1 :]))


_LINES = [
    "---",
    "--- ",
    "---\t",
    "...",
    " ---",
    "----",
    "-- -",
    "title: T",
    "date: 2024-05-01",
    "",
    "Text",
    "…",
    "---x",
]


@given(st.lists(st.sampled_from(_LINES), max_size=8), st.booleans())
@example(["---", "---"], False)
@example(["---"], True)
def test_front_matter_and_body_are_split_at_the_fences_lines(lines: list[str], ends: bool) -> None:
    text = "\n".join(lines) + ("\n" if ends else "")
    seen: list[str] = []
    problems: list[Problem] = []
    with patch("feeds.parsing.plain_front_matter", side_effect=lambda f, first_line: seen.append(f) or None):
        found = _split_front_matter("a.md", text, problems)
    expected = _split_the_long_way(text)
    if expected is None:
        assert found == ({}, text) or (found is None and problems[0].line == 1)
        return
    front, body = expected
    assert seen == [front]
    if found is not None:  # else the YAML reader refused the front matter, with its line
        assert found[1] == body


@given(st.text(st.characters(codec=None, categories=None), max_size=12))
@example("  Zwei  Leerzeichen ")
@example("Zeile\u2028Trenner\u00a0")
def test_a_one_line_value_is_its_text_with_runs_of_space_made_one(value: str) -> None:
    assert _one_line(value) == re.sub(r"\s+", " ", _ILLEGAL.sub("", value)).strip()
