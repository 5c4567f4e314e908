"""The ``feeds`` command as an operator (or a CI pipeline) runs it."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from conftest import DEMO_CONFIG, NOW, SMALL_ARTICLES, MakeSite

from feeds import create_app
from feeds.cli import cli

SMALL_FEEDS = ("alle", "kurz", "klima", "politik")
BROKEN_YAML_ARTICLE = """\
    ---
    title: [kaputt
    date: 2025-05-01T08:00:00+02:00
    ---
    Text
    """
UNDATED_ARTICLE = """\
    ---
    title: Ohne Datum
    ---
    Text ohne Datum.
    """


def invoke(runner: CliRunner, config: Path | None, *args: str):
    prefix = ["--config", str(config)] if config is not None else []
    return runner.invoke(cli, [*prefix, *args])


# --- check ----------------------------------------------------------------------------------


def test_check_demo_config_is_clean(runner: CliRunner) -> None:
    result = invoke(runner, DEMO_CONFIG, "check")
    assert result.exit_code == 0, result.output
    assert re.search(r"\b0 errors\b", result.output)
    assert re.search(r"\b0 warnings\b", result.output)
    assert re.search(r"\b\d+ articles\b", result.output)


@pytest.mark.parametrize(
    ("raw", "line", "words"),
    [
        ("site:\n  title: T\n  url: https://a.example\n  colour: red\narticles: articles\n", 4, ["colour"]),
        (
            "site:\n  title: T\n  url: https://a.example\narticles: articles\ndefaults:\n  limit: many\n",
            6,
            ["limit", "many"],
        ),
        (
            "site:\n  title: T\n  url: https://a.example\narticles: articles\n"
            "feeds:\n  a:\n    title: A\n   limit: 5\n",
            8,
            ["yaml"],
        ),
    ],
    ids=["unknown key", "wrong type", "yaml syntax"],
)
def test_check_broken_config_reports_file_and_line(
    runner: CliRunner, make_site: MakeSite, raw: str, line: int, words: list[str]
) -> None:
    path = make_site(raw_config=raw)
    result = invoke(runner, path, "check")
    assert result.exit_code == 1
    assert f"{path}:{line}" in result.output
    for word in words:
        assert word in result.output.lower()


def test_check_missing_config_fails(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, tmp_path / "nowhere.yaml", "check")
    assert result.exit_code == 1
    assert "nowhere.yaml" in result.output


def test_check_article_error_names_file(runner: CliRunner, make_site: MakeSite) -> None:
    path = make_site({**SMALL_ARTICLES, "politik/kaputt.md": BROKEN_YAML_ARTICLE})
    result = invoke(runner, path, "check")
    assert result.exit_code == 1
    assert re.search(r"politik/kaputt\.md:\d+", result.output), result.output


def test_check_warning_names_file_but_passes(runner: CliRunner, make_site: MakeSite) -> None:
    path = make_site({**SMALL_ARTICLES, "politik/ohne-datum.md": UNDATED_ARTICLE})
    result = invoke(runner, path, "check")
    assert result.exit_code == 0, result.output
    assert "politik/ohne-datum.md" in result.output
    assert "warning" in result.output.lower()


def test_check_json(runner: CliRunner, make_site: MakeSite) -> None:
    path = make_site(
        {**SMALL_ARTICLES, "politik/kaputt.md": BROKEN_YAML_ARTICLE, "politik/ohne-datum.md": UNDATED_ARTICLE}
    )
    result = invoke(runner, path, "check", "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    problems = {p["file"]: p for p in report["problems"]}
    assert problems["politik/kaputt.md"]["severity"] == "error"
    assert isinstance(problems["politik/kaputt.md"]["line"], int)
    assert problems["politik/ohne-datum.md"]["severity"] == "warning"
    assert report["ok"] is False
    assert (report["errors"], report["warnings"]) == (1, 1)


def test_check_json_clean(runner: CliRunner) -> None:
    result = invoke(runner, DEMO_CONFIG, "check", "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []


def test_check_json_broken_config(runner: CliRunner, make_site: MakeSite) -> None:
    path = make_site(raw_config="site:\n  title: T\n  url: https://a.example\n  colour: red\n")
    result = invoke(runner, path, "check", "--format", "json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert [(p["file"], p["line"]) for p in problems] == [(str(path), 4)]


# --- list -----------------------------------------------------------------------------------


def test_list_shows_every_feed_and_both_urls(runner: CliRunner, make_site: MakeSite) -> None:
    result = invoke(runner, make_site(), "list")
    assert result.exit_code == 0
    words = set(result.output.split())
    for name in SMALL_FEEDS:
        assert name in words
        for fmt in ("rss", "atom"):
            assert f"https://news.example.org/feeds/{name}.{fmt}" in words


def test_list_demo(runner: CliRunner) -> None:
    result = invoke(runner, DEMO_CONFIG, "list")
    assert result.exit_code == 0
    for name in ("alle", "ukraine", "english", "schlagzeilen", "klima", "sport"):
        assert f"https://news.example.org/feeds/{name}.atom" in result.output.split()


def test_list_broken_config_fails_cleanly(runner: CliRunner, make_site: MakeSite) -> None:
    path = make_site(raw_config="site: [\n")
    result = invoke(runner, path, "list")
    assert result.exit_code == 1
    assert str(path) in result.output
    assert "Traceback" not in result.output


# --- build ----------------------------------------------------------------------------------


def test_build_writes_what_the_server_serves(runner: CliRunner, make_site: MakeSite, tmp_path: Path) -> None:
    # The embargo is pushed far out so the export (real clock) and the server agree for ever.
    articles = {
        **SMALL_ARTICLES,
        "klima/sperrfrist.md": SMALL_ARTICLES["klima/sperrfrist.md"].replace("2030-01-01", "2999-01-01"),
    }
    path = make_site(articles)
    out = tmp_path / "public"
    result = invoke(runner, path, "build", str(out))
    assert result.exit_code == 0, result.output

    client = create_app(path, clock=lambda: NOW).test_client()
    expected = {
        "index.html": "/",
        "articles/erster.html": "/articles/erster",
        "articles/zweiter.html": "/articles/zweiter",
        "articles/klima/dritter.html": "/articles/klima/dritter",
    }
    expected |= {f"feeds/{n}.{f}": f"/feeds/{n}.{f}" for n in SMALL_FEEDS for f in ("rss", "atom")}
    for rel, url in expected.items():
        served = client.get(url, headers={"Accept-Encoding": "gzip"})
        assert (out / rel).read_bytes() == gzip.decompress(served.data), rel
        assert (out / f"{rel}.gz").read_bytes() == served.data, rel
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert not any("entwurf" in p or "sperrfrist" in p for p in written)
    assert not any(b"SECRET" in (out / p).read_bytes() for p in written if not p.endswith(".gz"))


def test_build_replaces_previous_export(runner: CliRunner, make_site: MakeSite, tmp_path: Path) -> None:
    out = tmp_path / "public"
    (out / "feeds").mkdir(parents=True)
    (out / "feeds" / "gone.rss").write_text("stale")
    result = invoke(runner, make_site(), "build", str(out))
    assert result.exit_code == 0
    assert not (out / "feeds" / "gone.rss").exists()
    assert (out / "feeds" / "alle.rss").is_file()


# --- get ------------------------------------------------------------------------------------


def test_get_feed(runner: CliRunner, make_site: MakeSite) -> None:
    result = invoke(runner, make_site(), "get", "/feeds/alle.rss")
    assert result.exit_code == 0
    parsed = feedparser.parse(result.stdout_bytes)
    assert not parsed.bozo
    assert parsed.version == "rss20"
    assert parsed.feed.title == "Alle Meldungen"
    assert len(parsed.entries) == 3


def test_get_unknown_path_fails(runner: CliRunner, make_site: MakeSite) -> None:
    result = invoke(runner, make_site(), "get", "/nope")
    assert result.exit_code == 1
    assert "404" in result.output


# --- FEEDS_CONFIG ---------------------------------------------------------------------------


def test_feeds_config_env_var(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_site(config={"feeds": {"umwelt": {"title": "Umwelt"}}})
    monkeypatch.chdir(tmp_path)  # no ./config.yaml to fall back on
    monkeypatch.setenv("FEEDS_CONFIG", str(path))
    listed = invoke(runner, None, "list")
    assert listed.exit_code == 0, listed.output
    assert "https://news.example.org/feeds/umwelt.rss" in listed.output.split()
    got = invoke(runner, None, "get", "/feeds/umwelt.atom")
    assert got.exit_code == 0
    assert feedparser.parse(got.stdout_bytes).feed.title == "Umwelt"


def test_config_option_beats_env_var(
    runner: CliRunner, make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDS_CONFIG", str(make_site(raw_config="site: [\n", name="broken")))
    result = invoke(runner, make_site(name="good"), "list")
    assert result.exit_code == 0
    assert "https://news.example.org/feeds/alle.rss" in result.output.split()
