"""Text and HTML helpers: XML-safe text, the plain export, sanitizing, summaries."""

from __future__ import annotations

import html
import os
import re
import sys
from pathlib import Path

import lxml.html
import nh3
import pytest
from cmarkgfm.cmark import Options, markdown_to_html_with_extensions
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds import markup
from feeds.markup import (
    clean_text,
    collapse_space,
    html_to_text,
    plain_to_html,
    sanitize,
    shorten,
    text_start,
)

BASE = "https://news.example.org/"
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


def tree(fragment: str) -> lxml.html.HtmlElement:
    return lxml.html.fragment_fromstring(fragment, create_parent="div")


def blocks(fragment: str) -> list[tuple[str, str]]:
    """(tag, text) of each top-level element, headings folded into 'h'."""
    return [("h" if el.tag in HEADINGS else el.tag, el.text_content().strip()) for el in tree(fragment)]


# --- clean_text --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\x00", "\x08", "\x0b", "\x0c", "\x1f", "\x7f", "\ufffe", "\uffff"])
def test_clean_text_removes_xml_illegal_characters(bad):
    assert clean_text(f"Vor{bad}her") == "Vorher"


def test_every_character_clean_text_removes_is_one_python_calls_unprintable():
    """Printable text is passed through without a search: right only while this holds (the
    Unicode tables change with Python)."""
    forbidden = markup._ILLEGAL.findall("".join(map(chr, range(0x110000))))
    assert len(forbidden) > 2000
    assert not any(character.isprintable() for character in forbidden)


@given(st.text(st.characters(codec=None, categories=None)))
def test_clean_text_removes_exactly_what_xml_forbids(text: str) -> None:
    assert clean_text(text) == markup._ILLEGAL.sub("", text)
    assert clean_text(text, "\ufffd") == markup._ILLEGAL.sub("\ufffd", text)
    assert markup.is_clean(text) == (markup._ILLEGAL.search(text) is None)


def test_clean_text_keeps_legal_text_unchanged():
    text = "Tab\tund\nZeile\r„Zitat“ – Größe 😀 €"
    assert clean_text(text) == text


# --- plain_to_html -----------------------------------------------------------------------------


def test_plain_every_line_is_a_paragraph():
    html = plain_to_html("Erster Absatz.\nZweiter Absatz.\n\n\nDritter Absatz!\n")
    assert blocks(html) == [("p", "Erster Absatz."), ("p", "Zweiter Absatz."), ("p", "Dritter Absatz!")]


def test_plain_short_line_without_punctuation_before_text_is_subheading():
    html = plain_to_html("Einleitung des Textes.\nVerluste und Unterstützung\nDer Absatz danach.")
    assert blocks(html) == [
        ("p", "Einleitung des Textes."),
        ("h", "Verluste und Unterstützung"),
        ("p", "Der Absatz danach."),
    ]


def test_plain_short_last_line_is_not_a_subheading():
    html = plain_to_html("Ein Absatz.\nMit freundlichen Grüßen")
    assert blocks(html) == [("p", "Ein Absatz."), ("p", "Mit freundlichen Grüßen")]


@pytest.mark.parametrize(
    "line",
    [
        "Das ist ein Satz.",
        "Was nun?",
        "Er sagte:",
        "Wie „immer“",
        "Ende (siehe oben)",
        "Ein sehr langer Satz ohne Punkt am Ende " * 5,
    ],
    ids=["period", "question", "colon", "quote", "paren", "long"],
)
def test_plain_line_with_closing_punctuation_or_long_is_a_paragraph(line):
    html = plain_to_html(f"{line}\nDanach folgt Text.")
    assert [tag for tag, _ in blocks(html)] == ["p", "p"]


def test_plain_pipe_table_becomes_table():
    html = plain_to_html("Vorher.\nLand | Soldaten\n---|---\nNordkorea | 11.000\nRussland |\nNachher.")
    root = tree(html)
    assert [el.tag for el in root] == ["p", "table", "p"]
    table = root[1]
    assert [c.text_content().strip() for c in table.iter("th")] == ["Land", "Soldaten"]
    rows = [
        [c.text_content().strip() for c in tr.iter("td")]
        for tr in table.iter("tr")
        if tr.find("td") is not None
    ]
    assert rows == [["Nordkorea", "11.000"], ["Russland", ""]]


def test_plain_pipe_line_without_separator_is_text():
    html = plain_to_html("A | B ist kein Tabellenkopf.\nText.")
    assert tree(html).find(".//table") is None
    assert blocks(html)[0] == ("p", "A | B ist kein Tabellenkopf.")


def test_plain_text_is_escaped_not_interpreted():
    html = plain_to_html("Ein <script>alert(1)</script> & <b>fett</b>.")
    root = tree(html)
    assert root.find(".//script") is None and root.find(".//b") is None
    assert root.text_content().strip() == "Ein <script>alert(1)</script> & <b>fett</b>."


def test_plain_empty_body_gives_no_html():
    assert tree(plain_to_html("\n  \n")).text_content().strip() == ""


# --- sanitize ----------------------------------------------------------------------------------


def test_sanitize_removes_scripts_with_their_content():
    root = tree(sanitize("<p>Text<script>alert('x')</script></p>", BASE))
    assert root.find(".//script") is None
    assert "alert" not in root.text_content()
    assert root.text_content() == "Text"


@pytest.mark.parametrize(
    "tag, fragment",
    [
        ("p", '<p onclick="steal()">Klick</p>'),
        ("img", '<img src="a.png" onerror="steal()">'),
        ("a", '<a href="https://ok.example/" onmouseover="steal()">Link</a>'),
    ],
)
def test_sanitize_removes_event_handlers(tag, fragment):
    root = tree(sanitize(fragment, BASE))
    assert root.find(f".//{tag}") is not None  # the element itself is harmless and stays
    for el in root.iter():
        assert not any(name.lower().startswith("on") for name in el.attrib), lxml.html.tostring(el)


@pytest.mark.parametrize("href", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)"])
def test_sanitize_removes_javascript_urls(href):
    root = tree(sanitize(f'<a href="{href}">Link</a>', BASE))
    assert root.text_content() == "Link"
    for el in root.iter():
        assert "javascript" not in " ".join(el.attrib.values()).lower()


def test_sanitize_removes_iframes():
    root = tree(sanitize('<p>Vor</p><iframe src="https://evil.example/"></iframe><p>Nach</p>', BASE))
    assert root.find(".//iframe") is None
    assert "evil" not in lxml.html.tostring(root, encoding="unicode")


def test_sanitize_keeps_harmless_markup():
    root = tree(sanitize('<p><strong>fett</strong> und <a href="https://other.example/x">Link</a></p>', BASE))
    assert root.find(".//strong").text == "fett"
    assert root.find(".//a").get("href") == "https://other.example/x"


@pytest.mark.parametrize(
    "base, src, expected",
    [
        (BASE, "images/a.png", "https://news.example.org/images/a.png"),
        (BASE, "/archiv/1", "https://news.example.org/archiv/1"),
        ("https://example.org/news/", "images/a.png", "https://example.org/news/images/a.png"),
        ("https://example.org/news/", "https://cdn.example/b.png", "https://cdn.example/b.png"),
    ],
)
def test_sanitize_makes_relative_urls_absolute(base, src, expected):
    root = tree(sanitize(f'<p><a href="{src}">L</a><img src="{src}"></p>', base))
    assert root.find(".//a").get("href") == expected
    assert root.find(".//img").get("src") == expected


def test_sanitize_output_is_xml_clean():
    assert sanitize("<p>a\x0bb\x1fc\ufffe</p>", BASE) == "<p>abc</p>"


# --- html_to_text ------------------------------------------------------------------------------


def test_html_to_text_strips_tags_and_decodes_entities():
    assert html_to_text("<p>Preis: <b>5 &euro;</b> &amp; &lt;mehr&gt;</p>") == "Preis: 5 € & <mehr>"


def test_html_to_text_collapses_whitespace():
    assert html_to_text("<p>  Eins\n\n   zwei\t drei </p>\n") == "Eins zwei drei"


def test_html_to_text_keeps_words_of_adjacent_blocks_apart():
    # A summary must not glue "Ende." and "Anfang" of two paragraphs into one word.
    assert html_to_text("<p>Ende.</p><p>Anfang</p>") == "Ende. Anfang"


def test_html_to_text_of_empty_fragment():
    assert html_to_text("  ") == ""


# Tags, references and whitespace of every kind, so the drawn fragments are mostly markup.
HTMLISH = st.lists(
    st.sampled_from(
        [*"<>/&;#=\"' \n\tapbrx1\xa0\u2003é", "<p>", "</p>", "<br>", "<script>", "<style>", "&amp;", "&#1;"]
    ),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(HTMLISH)
def test_html_to_text_is_what_a_fresh_nh3_clean_gives(fragment):
    # html_to_text reuses one nh3.Cleaner; summaries (and so feed bytes) must not notice.
    spaced = markup._BLOCK_EDGE.sub(" ", fragment)
    cleaned = nh3.clean(spaced, tags=set(), clean_content_tags={"script", "style"})
    assert html_to_text(fragment) == re.sub(r"\s+", " ", html.unescape(cleaned)).strip()


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(HTMLISH, st.integers(min_value=1, max_value=40))
def test_text_start_is_the_start_of_html_to_text(fragment, length):
    assert text_start(fragment, length) == html_to_text(fragment)[:length]


def test_text_start_of_a_long_text_with_long_runs_of_space():
    fragment = "<p>" + "".join(f"Wort{i}" + " \n\t" * (i % 7) + "&amp; " for i in range(500)) + "</p>"
    assert all(text_start(fragment, n) == html_to_text(fragment)[:n] for n in (1, 2, 299, 300, 301, 5000))


# --- collapse_space ----------------------------------------------------------------------------

WHITESPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if re.fullmatch(r"\s", chr(c)))


def test_collapse_space_splits_at_every_character_the_regex_calls_whitespace():
    assert collapse_space(f"a{WHITESPACE}b{WHITESPACE}") == "a b"
    assert all(collapse_space(f"a{c}b") == "a b" for c in WHITESPACE)
    assert collapse_space("a\u200bb\ufeffc") == "a\u200bb\ufeffc"  # zero-width: not whitespace


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=st.sampled_from(["a", "é", "\u200b", *WHITESPACE])) | st.text())
def test_collapse_space_is_the_regex_it_replaces(text):
    assert collapse_space(text) == re.sub(r"\s+", " ", text).strip()


# --- shorten -----------------------------------------------------------------------------------


def test_shorten_leaves_short_text_alone():
    assert shorten("Kurzer   Text\n hier", 280) == "Kurzer Text hier"


def test_shorten_cuts_at_word_boundary_with_ellipsis():
    text = "Nordkorea schickt Soldaten nach Russland und bestätigt den Einsatz erstmals offiziell"
    result = shorten(text, 30)
    assert result.endswith("…")
    kept = result.removesuffix("…").rstrip()
    assert len(kept) <= 30
    assert text.startswith(kept)
    assert text[len(kept)] == " "  # ends on a whole word
    assert kept == "Nordkorea schickt Soldaten"


def test_shorten_does_not_leave_dangling_punctuation():
    result = shorten("Eins, zwei, drei, vier, fünf, sechs, sieben", 12)
    assert result.removesuffix("…").rstrip() == "Eins, zwei"


# -- cmark's memory ---------------------------------------------------------------------------------

LONG_MARKDOWN = "# Titel\n\n" + "Ein Absatz mit *Text*, [Link](https://example.org) und `Code`.\n\n" * 200
MARKDOWN_CASES = [
    LONG_MARKDOWN,
    "| a | b |\n| --- | --- |\n| 1 | <b>2</b> |\n",
    "Umlaute: äöü ß – „Zitat“ 😀\n\n<div>raw</div>\n",
    "",
    "&#xFFFE; &#1; &amp;",
]


@pytest.mark.parametrize("source", MARKDOWN_CASES)
def test_markdown_renders_as_cmarkgfm_does(source: str) -> None:
    expected = markdown_to_html_with_extensions(
        markup._CHAR_REFERENCE.sub(markup._safe_reference, source),
        options=Options.CMARK_OPT_UNSAFE,
        extensions=["table"],
    )
    assert markup.markdown_to_html(source) == expected


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc to read resident memory")
def test_rendering_markdown_does_not_keep_memory() -> None:
    """cmarkgfm's wrapper frees neither the syntax tree nor the HTML: about 100 KB per body
    this long, which a server rendering a large archive never gets back."""
    for _ in range(50):
        markup.markdown_to_html(LONG_MARKDOWN)
    before = resident_mb()
    for _ in range(2000):
        markup.markdown_to_html(LONG_MARKDOWN)
    assert resident_mb() - before < 20  # cmarkgfm's own wrapper: about 200 MB more
