"""The value checks config.yaml and article front matter share: each refuses with its expected form."""

from __future__ import annotations

import pytest

from feeds import fields

CHECKS = [
    fields.text,
    fields.non_empty_text,
    fields.boolean,
    fields.whole(1, 10),
    fields.one_of("full", "summary"),
    fields.slug_list("tags"),
    fields.language_tag,
    fields.http_url,
]


@pytest.mark.parametrize("check", CHECKS)
def test_every_check_names_its_form_for_a_missing_value(check):
    form = fields.expected(check)
    assert form.startswith(("a ", "an ", "true", "full")), form


def test_expected_refuses_a_check_that_accepts_nothing():
    with pytest.raises(AssertionError, match="accepts None"):
        fields.expected(lambda value: value)


@pytest.mark.parametrize(
    "key, allowed, hint",
    [
        ("limt", ("limit", "max_age"), "; did you mean 'limit'?"),
        ("tpoics", ("topics", "tags"), "; did you mean 'topics'?"),
        ("zzzz", ("limit", "max_age"), ""),
        (7, ("limit",), ""),
    ],
)
def test_did_you_mean(key, allowed, hint):
    assert fields.did_you_mean(key, allowed) == hint


@pytest.mark.parametrize(
    "url, clean",
    [
        ("https://example.org", "https://example.org/"),
        ("https://example.org/a?b=1&c=%C3%A4#top", "https://example.org/a?b=1&c=%C3%A4#top"),
        ("https://example.org/?q=zürich", "https://example.org/?q=z%C3%BCrich"),
        ("  http://EXAMPLE.org:8080/x  ", "http://example.org:8080/x"),
        ("http://[2001:DB8:0::1]/", "http://[2001:db8::1]/"),
    ],
)
def test_http_url_keeps_query_and_fragment_and_normalises(url, clean):
    assert fields.http_url(url) == clean


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/'onmouseover='x",
        'https://example.org/"><script>',
        "javascript:alert(1)",
        "data:text/html,<script>",
        "https://user@example.org/",
        "https://example.org:0/",
        "https://example.org:65536/",
        "https://exa mple.org/",
        "https://example.org/\x00",
        "https://example.org\\@evil.example/",
    ],
)
def test_http_url_refuses_with_its_form(url):
    with pytest.raises(ValueError, match=r"^an absolute http\(s\) URL such as"):
        fields.http_url(url)


@pytest.mark.parametrize("value", [None, 42, True, ["https://example.org"]])
def test_http_url_refuses_what_is_no_string(value):
    with pytest.raises(TypeError):
        fields.http_url(value)


@pytest.mark.parametrize("value", [0, 11, True, 5.0, "5"])
def test_whole_refuses_out_of_range_bools_floats_and_strings(value):
    with pytest.raises((TypeError, ValueError), match="^a whole number of items from 1 to 10$"):
        fields.whole(1, 10, "items")(value)


@pytest.mark.parametrize("value", [1, 10])
def test_whole_accepts_its_bounds(value):
    assert fields.whole(1, 10)(value) == value


def test_one_of_names_every_choice():
    with pytest.raises(ValueError, match="^one of a, b, c$"):
        fields.one_of("a", "b", "c")("d")
    assert fields.one_of("a", "b", "c")("b") == "b"


def test_slug_list_slugs_deduplicates_and_takes_one_name():
    assert fields.slug_list("tags")(["Ukraine Krieg", "ukraine-krieg", "Übersee"]) == (
        "ukraine-krieg",
        "uebersee",
    )
    assert fields.slug_list("tags")("Klima") == ("klima",)
    with pytest.raises(TypeError, match="^a list of tags$"):
        fields.slug_list("tags")(["klima", " "])


@pytest.mark.parametrize("tag", ["de", "en-US", "no", "zh-Hant-CN"])
def test_language_tag_accepts_tags(tag):
    assert fields.language_tag(tag) == tag


@pytest.mark.parametrize("tag", ["de\n", "d", "de_DE", "deutsch", "en-", "x" * 65])
def test_language_tag_refuses_what_is_no_tag(tag):
    with pytest.raises(ValueError, match="^a language tag such as de or en-US"):
        fields.language_tag(tag)


def test_language_tag_explains_an_unquoted_no():
    with pytest.raises(TypeError, match="quote 'no'"):
        fields.language_tag(False)


def test_text_drops_what_xml_refuses_and_non_empty_text_needs_something_left():
    assert fields.text(" a\x07b ") == "ab"
    assert fields.text("") == ""
    with pytest.raises(TypeError, match="^a non-empty string$"):
        fields.non_empty_text(" \x07 ")


@pytest.mark.parametrize("value", ["yes", "true", 1, None])
def test_boolean_takes_only_yaml_booleans(value):
    with pytest.raises(TypeError, match="^true or false$"):
        fields.boolean(value)
