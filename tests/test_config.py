"""config.yaml: defaults, and every mistake reported with file, line and what was expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from feeds.config import MAX_ARTICLE_BYTES, MAX_BYTES, Polling, config_path_from_env, load_config
from feeds.errors import ConfigError, Problem
from feeds.selection import specs_for_topics

from conftest import DEMO_CONFIG
from support import harness

# Line numbers below refer to this text (line 1 is "site:").
GOOD = """\
site:
  title: Testseite
  url: https://news.example.org
  description: Eine Testseite
  language: de
  timezone: Europe/Berlin
  author: Redaktion
articles: articles
defaults:
  limit: 40
  max_age: 120
  content: full
topic_feeds: true
feeds:
  ukraine:
    title: Ukraine-Krieg
    topics: Ukraine Krieg
    content: summary
"""


def replace_line(text: str, old: str, new: str) -> str:
    """Swap exactly one whole line, so the expected line number stays obvious."""
    lines = text.split("\n")
    assert lines.count(old) == 1, f"{old!r} must occur exactly once"
    lines[lines.index(old)] = new
    return "\n".join(lines)


def problems_for(make_site, raw: str) -> tuple[Path, list[Problem]]:
    path = make_site(articles={}, raw_config=raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert problems, "a ConfigError must carry at least one problem"
    for problem in problems:
        assert isinstance(problem, Problem)
    return path, problems


def only_problem(make_site, raw: str) -> tuple[Path, Problem]:
    path, problems = problems_for(make_site, raw)
    assert len(problems) == 1, problems
    return path, problems[0]


# --- valid configs -----------------------------------------------------------------------------


def test_valid_config_loads_with_values_and_defaults(make_site):
    path = make_site(articles={}, raw_config=GOOD)
    site = load_config(path)
    assert site.title == "Testseite"
    assert site.url == "https://news.example.org/"
    assert site.language == "de"
    assert site.timezone == "Europe/Berlin"
    assert site.author == "Redaktion"
    assert site.articles_dir == (path.parent / "articles").resolve()
    assert (site.limit, site.max_age, site.content, site.topic_feeds) == (40, 120, "full", True)
    (feed,) = site.feeds
    assert feed.name == "ukraine"
    assert feed.title == "Ukraine-Krieg"


def test_minimal_config_gets_documented_defaults(make_site):
    path = make_site(articles={}, raw_config="site:\n  title: T\n  url: https://example.org\n")
    site = load_config(path)
    assert (site.limit, site.max_age, site.content, site.topic_feeds) == (50, 300, "full", True)
    assert site.articles_dir == (path.parent / "articles").resolve()
    assert site.feeds == ()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://news.example.org", "https://news.example.org/"),
        ("https://news.example.org/", "https://news.example.org/"),
        ("https://example.org/news", "https://example.org/news/"),
        ("http://localhost:8000/a/b/", "http://localhost:8000/a/b/"),
    ],
)
def test_site_url_gets_exactly_one_trailing_slash(make_site, url, expected):
    raw = replace_line(GOOD, "  url: https://news.example.org", f"  url: {url}")
    assert load_config(make_site(articles={}, raw_config=raw)).url == expected


def test_feed_topics_are_compared_by_slug(make_site):
    site = load_config(make_site(articles={}, raw_config=GOOD))
    assert site.feeds[0].topics == ("ukraine-krieg",)


def test_feed_topic_list_is_slugged_and_deduplicated(make_site):
    raw = replace_line(
        GOOD, "    topics: Ukraine Krieg", "    topics: [Ukraine-Krieg, ukraine krieg, Nordkorea]"
    )
    site = load_config(make_site(articles={}, raw_config=raw))
    assert site.feeds[0].topics == ("ukraine-krieg", "nordkorea")


def test_feed_inherits_defaults_and_site_language(make_site):
    site = load_config(make_site(articles={}, raw_config=GOOD))
    feed = site.feeds[0]
    assert feed.limit == 40  # from defaults:
    assert feed.max_age == 120  # from defaults:
    assert feed.content == "summary"  # its own setting wins
    assert feed.language == "de"  # from site:


def test_feed_own_values_override_defaults(make_site):
    raw = GOOD + "    limit: 5\n    max_age: 9\n    language: en\n"
    feed = load_config(make_site(articles={}, raw_config=raw)).feeds[0]
    assert (feed.limit, feed.max_age, feed.language) == (5, 9, "en")


def test_quoted_no_is_a_valid_language(make_site):
    raw = replace_line(GOOD, "  language: de", '  language: "no"')
    assert load_config(make_site(articles={}, raw_config=raw)).language == "no"


# --- file-level errors -------------------------------------------------------------------------


def test_missing_config_file_is_an_error(tmp_path):
    missing = tmp_path / "nowhere" / "config.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    (problem,) = info.value.problems
    assert problem.path == str(missing)
    assert "not found" in problem.message


def test_yaml_syntax_error_reports_file_and_line(make_site):
    raw = replace_line(GOOD, "  description: Eine Testseite", "  description: a: b")
    path, problem = only_problem(make_site, raw)
    assert problem.path == str(path)
    assert problem.line == 4
    assert f"{path}:4" in str(problem)  # what the operator reads


def test_duplicate_key_is_reported_with_its_line(make_site):
    raw = GOOD + "  ukraine:\n    title: Nochmal\n"
    path, problem = only_problem(make_site, raw)
    assert problem.line == 19
    assert "duplicate" in problem.message and "ukraine" in problem.message
    assert "15" in problem.message  # where it was first given


def test_missing_articles_folder_is_an_error(make_site):
    raw = replace_line(GOOD, "articles: articles", "articles: gibt-es-nicht")
    _, problem = only_problem(make_site, raw)
    assert problem.line == 8
    assert "gibt-es-nicht" in problem.message


# --- unknown keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, line, hint",
    [
        ("topic_feeds: true", "topic_feed: true", 13, "topic_feeds"),
        ("  title: Testseite", "  titel: Testseite", 2, "title"),
        ("  limit: 40", "  limt: 40", 10, "limit"),
        ("    topics: Ukraine Krieg", "    topic: Ukraine Krieg", 17, "topics"),
    ],
    ids=["top-level", "site", "defaults", "feed"],
)
def test_unknown_key_is_reported_with_line_and_suggestion(make_site, old, new, line, hint):
    raw = replace_line(GOOD, old, new)
    path, problems = problems_for(make_site, raw)
    unknown = [p for p in problems if "unknown" in p.message]
    assert len(unknown) == 1, problems
    assert unknown[0].line == line
    assert f"did you mean '{hint}'" in unknown[0].message
    assert new.split(":")[0].strip() in unknown[0].message


# --- wrong types and bad values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, line, expected",
    [
        ("  limit: 40", "  limit: fifty", 10, "whole number"),
        ("  limit: 40", "  limit: 0", 10, "whole number from 1 to 1000"),
        ("topic_feeds: true", 'topic_feeds: "yes"', 13, "true or false"),
        ("  language: de", "  language: no", 5, "quote"),
        ("  url: https://news.example.org", "  url: news.example.org", 3, "absolute http(s) URL"),
        ("  url: https://news.example.org", "  url: ftp://news.example.org", 3, "absolute http(s) URL"),
        ("  timezone: Europe/Berlin", "  timezone: Europe/Gondor", 6, "time zone"),
        ("  content: full", "  content: everything", 12, "full or summary"),
        ("  max_age: 120", "  max_age: -5", 11, "from 0 to 31536000"),
        ("  ukraine:", "  Bad Name:", 15, "lowercase"),
        ("    content: summary", "    content: teaser", 18, "full or summary"),
        ("    topics: Ukraine Krieg", "    topics: {a: b}", 17, "list of topic names"),
        ("  title: Testseite", "  title: ''", 2, "non-empty string"),
    ],
    ids=[
        "limit-word",
        "limit-zero",
        "topic_feeds-string",
        "language-no",
        "url-no-scheme",
        "url-ftp",
        "timezone",
        "content",
        "max_age-negative",
        "feed-name",
        "feed-content",
        "feed-topics",
        "empty-title",
    ],
)
def test_bad_value_is_reported_with_line_and_expectation(make_site, old, new, line, expected):
    path, problem = only_problem(make_site, replace_line(GOOD, old, new))
    assert problem.path == str(path)
    assert problem.line == line
    assert expected in problem.message


def test_language_no_explains_yaml_boolean(make_site):
    _, problem = only_problem(make_site, replace_line(GOOD, "  language: de", "  language: no"))
    assert "site.language" in problem.message
    assert "false" in problem.message


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "- just\n- a list\n",
        "site:\n",
        "site: Beispiel\n",
        "articles: articles\n",
    ],
    ids=["empty-file", "list", "site-empty", "site-scalar", "no-site"],
)
def test_config_without_site_section_is_an_error(make_site, raw):
    _, problems = problems_for(make_site, raw)
    assert any("site" in p.message for p in problems)


def test_missing_site_title_is_required(make_site):
    _, problem = only_problem(make_site, "site:\n  url: https://example.org\n")
    assert "site.title" in problem.message and "required" in problem.message


def test_every_error_is_reported_at_once(make_site):
    raw = GOOD
    for old, new in [
        ("  url: https://news.example.org", "  url: news.example.org"),
        ("  timezone: Europe/Berlin", "  timezone: Nowhere/Land"),
        ("articles: articles", "articles: missing-folder"),
        ("  limit: 40", "  limit: fifty"),
        ("  content: full", "  contnt: full"),
        ("    content: summary", "    content: everything"),
    ]:
        raw = replace_line(raw, old, new)
    _, problems = problems_for(make_site, raw)
    assert sorted(p.line for p in problems) == [3, 6, 8, 10, 12, 18]


# --- where the config comes from ----------------------------------------------------------------


def test_feeds_config_env_var_names_the_config(monkeypatch, tmp_path):
    monkeypatch.setenv("FEEDS_CONFIG", str(tmp_path / "prod.yaml"))
    assert config_path_from_env(None) == tmp_path / "prod.yaml"


def test_explicit_config_path_beats_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("FEEDS_CONFIG", str(tmp_path / "prod.yaml"))
    assert config_path_from_env(tmp_path / "cli.yaml") == tmp_path / "cli.yaml"


def test_default_config_path_is_local_config_yaml(monkeypatch):
    monkeypatch.delenv("FEEDS_CONFIG", raising=False)
    assert config_path_from_env(None) == Path("config.yaml")


def test_demo_config_loads():
    site = load_config(DEMO_CONFIG)
    assert site.url == "https://news.example.org/"
    assert [feed.name for feed in site.feeds] == ["alle", "ukraine", "english", "schlagzeilen"]
    assert (site.max_bytes, site.max_article_bytes) == (MAX_BYTES, MAX_ARTICLE_BYTES)


# --- site.url: only an absolute http(s) URL that is safe to put anywhere ---------------------------

URL_LINE = "  url: https://news.example.org"


@pytest.mark.parametrize(
    "url, reason",
    [
        ('https://news.example.org/"><script>alert(1)</script>', "'\"' cannot appear"),
        ("'https://news.example.org/'' onmouseover=alert(1)'", '"\'" cannot appear'),
        ("https://news.example.org/<b>", "'<' cannot appear"),
        ('"https://news.example.org/a b"', "' ' cannot appear"),
        ("https://exa mple.org", "' ' cannot appear"),
        ('"https://news.example.org/\\ta"', "'\\t' cannot appear"),
        ("https://news.example.org\\@evil.example", "'\\\\' cannot appear"),
        ("https://news.example.org/{x}", "'{' cannot appear"),
        ("https://news.example.org/a|b", "'|' cannot appear"),
        ("https://news.example.org/a^b", "'^' cannot appear"),
        ("https://news.example.org/a`b", "'`' cannot appear"),
        ('"https://news.example.org/\\u200b"', "U+200B"),
        ('"https://news.example.org/\\u202egro"', "U+202E"),
        ("javascript:alert(1)", "absolute http(s) URL"),
        ("news.example.org", "absolute http(s) URL"),
        ("//news.example.org", "absolute http(s) URL"),
        ("http:/news.example.org", "absolute http(s) URL"),
        ("https://", "absolute http(s) URL"),
        ("https://user:pw@news.example.org", "no user name or password"),
        ("https://evil.example@news.example.org", "no user name or password"),
        ("https://news.example.org:0", "port is a number from 1 to 65535"),
        ("https://news.example.org:99999", "port is a number from 1 to 65535"),
        ('"https://news.example.org:"', "port is a number from 1 to 65535"),
        ("https://news.example.org:http", "port is a number from 1 to 65535"),
        ("https://news_example.org", "not a valid host name"),
        ("https://-news.example.org", "not a valid host name"),
        ("https://news..example.org", "not a valid host name"),
        ("https://news.example.org.", "not a valid host name"),
        (f"https://{'a' * 64}.example.org", "not a valid host name"),
        ("https://0x7f.0.0.1", "not a valid host name"),
        ("https://127.1", "not an IPv4 address"),
        ("https://999.0.0.1", "not an IPv4 address"),
        ("http://[::1", "IPv6"),
        ("http://[fe80::1%25eth0]/", "not an IPv6 address"),
        ("https://news.example.org/100%", "'%' must start an escape"),
        ("https://news.example.org/?page=2", "no query or fragment"),
        ("https://news.example.org/#top", "no query or fragment"),
        ("true", "absolute http(s) URL"),
        ("[https://news.example.org]", "absolute http(s) URL"),
    ],
)
def test_site_url_that_is_not_a_plain_url_is_refused(make_site, url, reason):
    path, problem = only_problem(make_site, replace_line(GOOD, URL_LINE, f"  url: {url}"))
    assert (problem.path, problem.line) == (str(path), 3)
    assert problem.message.startswith("site.url: expected an absolute http(s) URL such as https://")
    assert reason in problem.message


@pytest.mark.parametrize(
    "url, expected",
    [
        ("HTTPS://News.Example.ORG", "https://news.example.org/"),
        ("https://bücher.example", "https://xn--bcher-kva.example/"),
        ("https://例え.テスト/nachrichten", "https://xn--r8jz45g.xn--zckzah/nachrichten/"),
        ("https://news.example.org/zürich", "https://news.example.org/z%C3%BCrich/"),
        ("https://news.example.org/a%20b", "https://news.example.org/a%20b/"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/"),
        ("http://[::1]:8080/news", "http://[::1]:8080/news/"),
        ("https://news.example.org:1", "https://news.example.org:1/"),
        ("https://news.example.org:65535", "https://news.example.org:65535/"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example/"),
        ("http://localhost", "http://localhost/"),
    ],
)
def test_site_url_is_normalised(make_site, url, expected):
    raw = replace_line(GOOD, URL_LINE, f"  url: {url}")
    assert load_config(make_site(articles={}, raw_config=raw)).url == expected


def test_required_site_url_names_the_expected_form(make_site):
    _, problem = only_problem(make_site, "site:\n  title: T\n")
    assert "site.url: required, expected an absolute http(s) URL such as" in problem.message


# --- numbers: whole, and within named bounds -------------------------------------------------------

# Line numbers below refer to this text; every number key of the config appears once.
SIZED = """\
site:
  title: Testseite
  url: https://news.example.org
articles: articles
max_article_bytes: 4096
defaults:
  limit: 40
  max_age: 120
  max_bytes: 262144
feeds:
  ukraine:
    limit: 20
    max_age: 600
    max_bytes: 65536
  alle:
    title: Alle
    delay: 30
    window: 6
"""
NUMBER_KEYS = {  # key: (line in SIZED, the range the message must name)
    "max_article_bytes": (5, "of bytes from 1024 to 67108864"),
    "defaults.limit": (7, "from 1 to 1000"),
    "defaults.max_age": (8, "of seconds from 0 to 31536000"),
    "defaults.max_bytes": (9, "of bytes from 16384 to 52428800"),
    "feeds.ukraine.limit": (12, "from 1 to 1000"),
    "feeds.ukraine.max_age": (13, "of seconds from 0 to 31536000"),
    "feeds.ukraine.max_bytes": (14, "of bytes from 16384 to 52428800"),
    "feeds.alle.delay": (17, "of minutes from 0 to 10080"),
    "feeds.alle.window": (18, "of hours from 0 to 8784"),
}
NOT_A_WHOLE_NUMBER = [
    "1e29",
    "1.0e+29",
    "20.5",
    "300.0",
    ".inf",
    ".nan",
    "true",
    "yes",
    "off",
    '"50"',
    "[50]",
]
OUT_OF_RANGE = {
    "max_article_bytes": ["1", "1023", "67108865", "-1", "99999999999"],
    "limit": ["0", "1001", "100000", "-1", "99999999999"],
    "max_age": ["-1", "31536001", "99999999999", "0x7fffffffffffffff"],
    "max_bytes": ["1", "16383", "52428801", "-1", "99999999999"],
    "delay": ["-1", "10081", "99999999999"],
    "window": ["-1", "8785", "99999999999"],
}
BAD_NUMBERS = [
    (key, value) for key in NUMBER_KEYS for value in NOT_A_WHOLE_NUMBER + OUT_OF_RANGE[key.rpartition(".")[2]]
]


def with_value(text: str, line: int, value: str) -> str:
    """Give the key on a 1-based line another value, keeping its indentation and name."""
    lines = text.split("\n")
    key, colon, _ = lines[line - 1].partition(":")
    assert colon, f"line {line} holds no key"
    lines[line - 1] = f"{key}: {value}"
    return "\n".join(lines)


def test_sized_config_loads_and_the_new_keys_reach_site_and_feeds(make_site):
    site = load_config(make_site(articles={}, raw_config=SIZED))
    assert (site.limit, site.max_age, site.max_bytes, site.max_article_bytes) == (40, 120, 262144, 4096)
    ukraine, alle = site.feeds
    assert (ukraine.limit, ukraine.max_age, ukraine.max_bytes) == (20, 600, 65536)  # its own values
    assert (alle.limit, alle.max_age, alle.max_bytes) == (40, 120, 262144)  # from defaults:


def test_topic_feeds_take_the_default_max_bytes(make_site):
    site = load_config(make_site(articles={}, raw_config=SIZED))
    specs = {spec.name: spec for spec in specs_for_topics(site, {"klima": "Klima", "ukraine": "Ukraine"})}
    assert specs["klima"].is_topic_feed and specs["klima"].max_bytes == 262144
    assert specs["ukraine"].max_bytes == 65536  # the operator's feed of that name wins


def test_size_keys_default_when_not_given(make_site):
    site = load_config(make_site(articles={}, raw_config=GOOD))
    assert (site.max_bytes, site.max_article_bytes) == (MAX_BYTES, MAX_ARTICLE_BYTES)
    assert site.feeds[0].max_bytes == MAX_BYTES


@pytest.mark.parametrize("key, value", BAD_NUMBERS, ids=[f"{k}={v}" for k, v in BAD_NUMBERS])
def test_number_that_is_not_whole_or_out_of_range_is_refused(make_site, key, value):
    line, bounds = NUMBER_KEYS[key]
    path, problem = only_problem(make_site, with_value(SIZED, line, value))
    assert (problem.path, problem.line) == (str(path), line)
    assert problem.message.startswith(f"{key}: expected a whole number {bounds}, got ")
    assert f"{path}:{line}: error: {key}: expected" in str(problem)


@pytest.mark.parametrize("key", NUMBER_KEYS)
def test_number_bounds_themselves_are_accepted(make_site, key):
    line, bounds = NUMBER_KEYS[key]
    low, high = (int(n) for n in bounds.split("from ")[1].split(" to "))
    for value in (low, high):
        site = load_config(make_site(articles={}, raw_config=with_value(SIZED, line, str(value))))
        section, _, name = key.rpartition(".")
        named = [f for f in site.feeds if f"feeds.{f.name}" == section]
        holder = named[0] if named else site
        assert getattr(holder, name) == value


def test_boolean_for_a_number_says_what_yaml_made_of_it(make_site):
    _, problem = only_problem(make_site, with_value(SIZED, 7, "yes"))
    assert "got true (YAML reads yes/no/on/off as true/false)" in problem.message


def test_long_bad_value_is_shown_cut_short(make_site):
    _, problem = only_problem(make_site, with_value(SIZED, 7, "x" * 5000))
    assert len(problem.message) < 200
    assert "xxx...'" in problem.message


# --- unknown keys include the new ones --------------------------------------------------------------


@pytest.mark.parametrize(
    "line, typo, dotted, hint",
    [
        (5, "max_articles_bytes", "max_articles_bytes", "max_article_bytes"),
        (9, "maxbytes", "defaults.maxbytes", "max_bytes"),
        (14, "max_byte", "feeds.ukraine.max_byte", "max_bytes"),
        (14, "limt", "feeds.ukraine.limt", "limit"),
    ],
)
def test_misspelt_key_message_has_the_exact_format(make_site, line, typo, dotted, hint):
    lines = SIZED.split("\n")
    key = lines[line - 1].strip().partition(":")[0]
    lines[line - 1] = lines[line - 1].replace(key, typo, 1)
    path, problems = problems_for(make_site, "\n".join(lines))
    unknown = [p for p in problems if "unknown key" in p.message]
    assert [str(p) for p in unknown] == [
        f"{path}:{line}: error: {dotted}: unknown key; did you mean '{hint}'?"
    ]


@pytest.mark.parametrize(
    "line, key, allowed",
    [
        (5, "zzzz", "allowed: site, articles, topic_feeds, max_article_bytes, defaults, feeds, topics"),
        (9, "  zzzz", "allowed: limit, max_age, content, max_bytes, stale_while_revalidate, stale_if_error"),
        (14, "    zzzz", "max_age, content, max_bytes, stale_while_revalidate, stale_if_error, language"),
    ],
)
def test_unknown_key_without_a_close_match_lists_every_allowed_key(make_site, line, key, allowed):
    lines = SIZED.split("\n")
    lines[line - 1] = f"{key}: 1"
    _, problems = problems_for(make_site, "\n".join(lines))
    unknown = [p for p in problems if "unknown key" in p.message]
    assert len(unknown) == 1 and unknown[0].line == line
    assert allowed in unknown[0].message


# --- every problem at once, in line order -----------------------------------------------------------


def test_problems_of_every_section_come_at_once_sorted_by_line(make_site):
    raw = SIZED
    for line, value in [(14, "1"), (3, "https://news.example.org/<x>"), (12, "0"), (5, "1e29"), (9, "yes")]:
        raw = with_value(raw, line, value)
    _, problems = problems_for(make_site, raw)
    assert [p.line for p in problems] == [3, 5, 9, 12, 14]
    assert [p.message.split(":")[0] for p in problems] == [
        "site.url",
        "max_article_bytes",
        "defaults.max_bytes",
        "feeds.ukraine.limit",
        "feeds.ukraine.max_bytes",
    ]


# --- odd values that used to slip through or crash -------------------------------------------------


@pytest.mark.parametrize(
    "old, new, line, expected",
    [
        ("  language: de", '  language: "de\\n"', 5, "a language tag such as de or en-US"),
        ("  language: de", f"  language: de-{'-'.join(['abcdefgh'] * 8)}", 5, "at most 64 characters"),
        ("  ukraine:", '  "ukraine\\n":', 15, "a feed name is its URL"),
        ("  timezone: Europe/Berlin", f"  timezone: {'a' * 300}", 6, "an IANA time zone"),
        ("articles: articles", f"articles: {'a' * 300}", 8, "cannot be used"),
    ],
    ids=["language-newline", "language-long", "feed-name-newline", "timezone-long", "folder-long"],
)
def test_odd_value_is_reported_not_accepted_or_crashing(make_site, old, new, line, expected):
    path, problem = only_problem(make_site, replace_line(GOOD, old, new))
    assert (problem.path, problem.line) == (str(path), line)
    assert expected in problem.message


def test_articles_folder_in_a_symlink_loop_is_reported(make_site):
    path = make_site(articles={}, raw_config=replace_line(GOOD, "articles: articles", "articles: loop"))
    (path.parent / "loop").symlink_to("loop")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.line == 8 and "articles: folder" in problem.message


# --- what readers use: pictures, topic names, hubs, caches -----------------------------------

READERS = (
    GOOD.replace(
        "  author: Redaktion\n",
        "  author: Redaktion\n  icon: /static/icon.png\n  logo: https://cdn.example.net/logo.png\n",
    )
    + """\
topics:
  Klima:
    title: Klima und Umwelt
    description: Alles zum Klima
  ukraine krieg: Krieg in der Ukraine
websub:
  hubs: [https://hub.example.net/, https://pubsubhubbub.appspot.com/]
cache:
  purge: http://127.0.0.1:6081
"""
)


def test_reader_keys_reach_the_config(make_site):
    config = load_config(make_site(articles={}, raw_config=READERS))
    assert config.icon == "https://news.example.org/static/icon.png"
    assert config.logo == "https://cdn.example.net/logo.png"
    assert [(t.slug, t.title, t.description) for t in config.topic_names] == [
        ("klima", "Klima und Umwelt", "Alles zum Klima"),
        ("ukraine-krieg", "Krieg in der Ukraine", ""),
    ]
    assert config.hubs == ("https://hub.example.net/", "https://pubsubhubbub.appspot.com/")
    assert config.purge == ("http://127.0.0.1:6081/",)


def test_topic_feeds_take_their_display_names(make_site):
    config = load_config(make_site(articles={}, raw_config=READERS))
    specs = {s.name: s for s in specs_for_topics(config, {"klima": "Klima", "sport": "Sport"})}
    assert (specs["klima"].title, specs["klima"].description) == ("Klima und Umwelt", "Alles zum Klima")
    assert specs["sport"].title == "Testseite: Sport"  # no entry: as before


def test_site_under_a_path_resolves_icon_paths_against_it(make_site):
    raw = READERS.replace("url: https://news.example.org", "url: https://example.org/news/")
    raw = raw.replace("icon: /static/icon.png", "icon: static/icon.png")
    assert (
        load_config(make_site(articles={}, raw_config=raw)).icon == "https://example.org/news/static/icon.png"
    )


@pytest.mark.parametrize(
    ("old", "new", "line", "expected"),
    [
        ("  icon: /static/icon.png", "  icon: javascript:alert(1)", 8, "a path such as /static/icon.png"),
        ("  icon: /static/icon.png", '  icon: "/a b\\"<x>.png"', 8, "a path such as /static/icon.png"),
        ("  icon: /static/icon.png", "  icon: [a, b]", 8, "a path such as /static/icon.png"),
        (
            "  hubs: [https://hub.example.net/, https://pubsubhubbub.appspot.com/]",
            "  hubs: [ftp://hub]",
            27,
            "http(s)",
        ),
        (
            "  hubs: [https://hub.example.net/, https://pubsubhubbub.appspot.com/]",
            "  hubs: []",
            27,
            "a list of URLs",
        ),
        ("  purge: http://127.0.0.1:6081", "  purge: 6081", 29, "a list of URLs"),
        ("  ukraine krieg: Krieg in der Ukraine", "  ukraine krieg: [a, b]", 25, "a title or a mapping"),
        (
            "    description: Alles zum Klima",
            "    descripton: Alles zum Klima",
            24,
            "did you mean 'description'",
        ),
        ("  ukraine krieg: Krieg in der Ukraine", "  KLIMA: Doppelt", 25, "a second time"),
        ("    title: Klima und Umwelt", "    title: ''", 23, "a non-empty string"),
    ],
)
def test_bad_reader_keys_are_reported_with_line(make_site, old, new, line, expected):
    raw = replace_line(READERS, old, new)
    path, problem = only_problem(make_site, raw)
    assert raw.split("\n")[line - 1] == new  # the line the operator has to look at
    assert problem.path == str(path) and problem.line == line, problem
    assert expected in problem.message, problem


HUBS_LINE = "  hubs: [https://hub.example.net/, https://pubsubhubbub.appspot.com/]"
PURGE_LINE = "  purge: http://127.0.0.1:6081"


@pytest.mark.parametrize(
    ("new", "shown"),
    [
        ("  purge: http://127.0.0.1:6081/?x=1", "'http://127.0.0.1:6081/?x=1' has a query"),
        ("  purge: [http://127.0.0.1:6081/varnish?x=1]", "such as 'http://127.0.0.1:6081/varnish'"),
        ("  purge: [http://127.0.0.1:6081/, 'http://cache.example.net/#a']", "has a fragment"),
    ],
)
def test_a_cache_url_with_a_query_or_fragment_is_refused_with_its_line(make_site, new, shown):
    """Every PURGE would go to /prefix?x=1/feeds/... and purge nothing, logged as sent."""
    raw = replace_line(READERS, PURGE_LINE, new)
    path, problem = only_problem(make_site, raw)
    assert (problem.path, problem.line) == (str(path), 29)
    assert problem.message.startswith("cache.purge: "), problem
    assert shown in problem.message and "without query or fragment" in problem.message, problem


def test_hub_urls_may_keep_a_query(make_site):
    raw = replace_line(READERS, HUBS_LINE, "  hubs: [https://hub.example.net/publish?site=1]")
    assert load_config(make_site(articles={}, raw_config=raw)).hubs == (
        "https://hub.example.net/publish?site=1",
    )


@pytest.mark.parametrize(
    ("old", "key", "line", "role"),
    [(HUBS_LINE, "websub.hubs", 27, "Link header"), (PURGE_LINE, "cache.purge", 29, "a PURGE for every")],
)
def test_more_than_sixteen_hubs_or_caches_are_refused_with_the_line(make_site, old, key, line, role):
    many = ", ".join(f"https://h{n}.example.net/" for n in range(2000))
    name = key.rpartition(".")[2]
    path, problem = only_problem(make_site, replace_line(READERS, old, f"  {name}: [{many}]"))
    assert (problem.path, problem.line) == (str(path), line)
    assert problem.message.startswith(f"{key}: 2000 URLs, expected at most 16 ("), problem
    assert role in problem.message
    sixteen = ", ".join(f"https://h{n}.example.net/" for n in range(16))
    config = load_config(
        make_site(articles={}, raw_config=replace_line(READERS, old, f"  {name}: [{sixteen}]"))
    )
    assert len(getattr(config, "hubs" if name == "hubs" else "purge")) == 16


# --- polling: the polling budget ---------------------------------------------------------------

POLLING = (
    GOOD
    + """\
polling:
  min_interval:
    conditional: 60
    unconditional: 300
  proxies: [127.0.0.1, "::1", 10.0.0.0/8]
"""
)
PROXIES_LINE = '  proxies: [127.0.0.1, "::1", 10.0.0.0/8]'


def test_the_polling_budget_is_off_unless_configured(make_site):
    assert load_config(make_site(articles={}, raw_config=GOOD)).polling is None
    assert load_config(make_site(articles={}, raw_config=GOOD + "polling:\n")).polling is None
    assert load_config(DEMO_CONFIG).polling is None


def test_polling_keys_reach_the_config(make_site):
    polling = load_config(make_site(articles={}, raw_config=POLLING)).polling
    assert polling == Polling(
        conditional=60, unconditional=300, proxies=("127.0.0.1/32", "::1/128", "10.0.0.0/8")
    )
    one = load_config(make_site(articles={}, raw_config=GOOD + "polling:\n  min_interval: 120\n")).polling
    assert one == Polling(conditional=120, unconditional=120, proxies=())


def test_the_demo_shows_a_polling_budget_that_loads_once_uncommented(tmp_path):
    config = harness.copy_demo_site(tmp_path)
    text = config.read_text(encoding="utf-8")
    block = re.search(r"^# polling:\n(?:#   .*\n)+", text, re.MULTILINE)
    assert block is not None, "config.yaml shows no commented polling: section"
    config.write_text(text.replace(block[0], re.sub(r"(?m)^# ", "", block[0])), encoding="utf-8")
    assert load_config(config).polling == Polling(
        conditional=60, unconditional=300, proxies=("127.0.0.1/32",)
    )


@pytest.mark.parametrize(
    ("old", "new", "line", "expected"),
    [
        (
            "    conditional: 60",
            "    conditional: 0",
            21,
            "polling.min_interval.conditional: expected a whole",
        ),
        ("    unconditional: 300", "    unconditional: 1.5", 22, "of seconds from 1 to 86400, got 1.5"),
        ("    unconditional: 300", "    unconditional: 100000", 22, "from 1 to 86400"),
        ("    conditional: 60", "    conditional: yes", 21, "YAML reads yes/no"),
        (
            PROXIES_LINE,
            "  proxies: [varnish.example.net]",
            23,
            "polling.proxies: expected a list of IP addresses",
        ),
        (PROXIES_LINE, "  proxies: 10.0.0.0/33", 23, "such as 127.0.0.1 or 10.0.0.0/8"),
        (PROXIES_LINE, "  proxy: [127.0.0.1]", 23, "polling.proxy: unknown key; did you mean 'proxies'?"),
    ],
)
def test_bad_polling_values_are_reported_with_line(make_site, old, new, line, expected):
    raw = replace_line(POLLING, old, new)
    path, problem = only_problem(make_site, raw)
    assert (problem.path, problem.line) == (str(path), line), problem
    assert expected in problem.message, problem


@pytest.mark.parametrize(
    ("section", "line", "expected"),
    [
        (
            "polling:\n  min_interval: soon\n",
            20,
            "or a mapping with conditional and unconditional, got 'soon'",
        ),
        ("polling:\n  proxies: [127.0.0.1]\n", 20, "polling.min_interval: required"),
        ("polling:\n  min_interval: {conditional: 60}\n", 20, "polling.min_interval.unconditional: required"),
        ("polling: 60\n", 19, "polling: expected a mapping of keys"),
    ],
)
def test_an_incomplete_polling_section_says_what_is_missing(make_site, section, line, expected):
    path, problem = only_problem(make_site, GOOD + section)
    assert (problem.path, problem.line) == (str(path), line), problem
    assert expected in problem.message, problem
