"""config.yaml: defaults, and every mistake reported with file, line and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from feeds.config import config_path_from_env, load_config
from feeds.errors import ConfigError, Problem

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


@pytest.mark.parametrize("url, expected", [
    ("https://news.example.org", "https://news.example.org/"),
    ("https://news.example.org/", "https://news.example.org/"),
    ("https://example.org/news", "https://example.org/news/"),
    ("http://localhost:8000/a/b/", "http://localhost:8000/a/b/"),
])
def test_site_url_gets_exactly_one_trailing_slash(make_site, url, expected):
    raw = replace_line(GOOD, "  url: https://news.example.org", f"  url: {url}")
    assert load_config(make_site(articles={}, raw_config=raw)).url == expected


def test_feed_topics_are_compared_by_slug(make_site):
    site = load_config(make_site(articles={}, raw_config=GOOD))
    assert site.feeds[0].topics == ("ukraine-krieg",)


def test_feed_topic_list_is_slugged_and_deduplicated(make_site):
    raw = replace_line(GOOD, "    topics: Ukraine Krieg",
                       "    topics: [Ukraine-Krieg, ukraine krieg, Nordkorea]")
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

@pytest.mark.parametrize("old, new, line, hint", [
    ("topic_feeds: true", "topic_feed: true", 13, "topic_feeds"),
    ("  title: Testseite", "  titel: Testseite", 2, "title"),
    ("  limit: 40", "  limt: 40", 10, "limit"),
    ("    topics: Ukraine Krieg", "    topic: Ukraine Krieg", 17, "topics"),
], ids=["top-level", "site", "defaults", "feed"])
def test_unknown_key_is_reported_with_line_and_suggestion(make_site, old, new, line, hint):
    raw = replace_line(GOOD, old, new)
    path, problems = problems_for(make_site, raw)
    unknown = [p for p in problems if "unknown" in p.message]
    assert len(unknown) == 1, problems
    assert unknown[0].line == line
    assert f"did you mean '{hint}'" in unknown[0].message
    assert new.split(":")[0].strip() in unknown[0].message


# --- wrong types and bad values ------------------------------------------------------------------

@pytest.mark.parametrize("old, new, line, expected", [
    ("  limit: 40", "  limit: fifty", 10, "whole number"),
    ("  limit: 40", "  limit: 0", 10, "whole number >= 1"),
    ("topic_feeds: true", 'topic_feeds: "yes"', 13, "true or false"),
    ("  language: de", "  language: no", 5, "quote"),
    ("  url: https://news.example.org", "  url: news.example.org", 3, "absolute http(s) URL"),
    ("  url: https://news.example.org", "  url: ftp://news.example.org", 3, "absolute http(s) URL"),
    ("  timezone: Europe/Berlin", "  timezone: Europe/Gondor", 6, "time zone"),
    ("  content: full", "  content: everything", 12, "full or summary"),
    ("  max_age: 120", "  max_age: -5", 11, ">= 0"),
    ("  ukraine:", "  Bad Name:", 15, "lowercase"),
    ("    content: summary", "    content: teaser", 18, "full or summary"),
    ("    topics: Ukraine Krieg", "    topics: {a: b}", 17, "list of topic names"),
    ("  title: Testseite", "  title: ''", 2, "non-empty string"),
], ids=["limit-word", "limit-zero", "topic_feeds-string", "language-no", "url-no-scheme",
        "url-ftp", "timezone", "content", "max_age-negative", "feed-name", "feed-content",
        "feed-topics", "empty-title"])
def test_bad_value_is_reported_with_line_and_expectation(make_site, old, new, line, expected):
    path, problem = only_problem(make_site, replace_line(GOOD, old, new))
    assert problem.path == str(path)
    assert problem.line == line
    assert expected in problem.message


def test_language_no_explains_yaml_boolean(make_site):
    _, problem = only_problem(make_site, replace_line(GOOD, "  language: de", "  language: no"))
    assert "site.language" in problem.message
    assert "false" in problem.message


@pytest.mark.parametrize("raw", [
    "",
    "- just\n- a list\n",
    "site:\n",
    "site: Beispiel\n",
    "articles: articles\n",
], ids=["empty-file", "list", "site-empty", "site-scalar", "no-site"])
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
