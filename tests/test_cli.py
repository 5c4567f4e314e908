"""The ``feeds`` command as an operator (or a CI pipeline) runs it."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from feeds import create_app
from feeds.cli import cli

from conftest import DEMO_CONFIG, NOW, SMALL_ARTICLES, MakeSite

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


def test_list_shows_every_feed_its_page_and_every_format(runner: CliRunner, make_site: MakeSite) -> None:
    result = invoke(runner, make_site(), "list")
    assert result.exit_code == 0
    words = set(result.output.split())
    for name in SMALL_FEEDS:
        assert name in words
        assert f"https://news.example.org/feeds/{name}" in words
        for fmt in ("rss", "atom", "json"):
            assert f"https://news.example.org/feeds/{name}.{fmt}" in words
    assert "https://news.example.org/feeds.opml" in words
    kurz = next(line for line in result.output.splitlines() if line.startswith("kurz\t"))
    assert "3 entries" not in kurz and "1 archive page\t" in kurz  # limit 2 of 3: one page of history


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


def test_build_rebuild_keeps_foreign_files_and_drops_stale_ones(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path
) -> None:
    path = make_site()
    out = tmp_path / "www"
    assert invoke(runner, path, "build", str(out)).exit_code == 0
    (out / "humans.txt").write_text("User-agent: *\nDisallow:\n")
    (out / "feeds" / "podcast.xml").write_text("<rss>hand-made</rss>")
    assert (out / "articles" / "zweiter.html").is_file()
    (path.parent / "articles" / "politik" / "zweiter.md").unlink()  # the article is withdrawn

    result = invoke(runner, path, "build", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "humans.txt").read_text() == "User-agent: *\nDisallow:\n"
    assert (out / "feeds" / "podcast.xml").read_text() == "<rss>hand-made</rss>"
    assert not (out / "articles" / "zweiter.html").exists()
    assert not (out / "articles" / "zweiter.html.gz").exists()
    assert (out / "articles" / "erster.html").is_file()
    # Beside it, the export it replaced: the next build brings it up to date and swaps it in.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".www.feeds-spare", "site", "www"]
    assert not (tmp_path / ".www.feeds-spare" / "humans.txt").exists()  # it holds only what feeds wrote


def site_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def site_dir(make_site: MakeSite, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site with a state folder, as an operator has it, and the shell inside it."""
    monkeypatch.delenv("FEEDS_STATE_DIR", raising=False)
    root = make_site().parent
    (root / ".feeds").mkdir()
    (root / ".feeds" / "validators.sqlite").write_bytes(b"SQLite format 3\0")
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        (".", "contains the config file"),
        ("..", "contains the config file"),
        ("articles", "is the articles folder"),
        ("articles/politik", "lies inside the articles folder"),
        ("articles/../articles/", "is the articles folder"),
        (".feeds", "is the state folder"),
        (".feeds/www", "lies inside the state folder"),
        ("config.yaml", "is the config file"),
    ],
)
def test_build_refuses_to_replace_the_site_itself(
    runner: CliRunner, site_dir: Path, out: str, reason: str
) -> None:
    before = site_files(site_dir.parent)
    result = invoke(runner, Path("config.yaml"), "build", out)
    assert result.exit_code == 1, result.output
    assert reason in result.output
    assert str((site_dir / out).resolve()) in result.output
    assert "Traceback" not in result.output
    assert site_files(site_dir.parent) == before
    assert (site_dir / "config.yaml").is_file() and (
        site_dir / "articles" / "politik" / "erster.md"
    ).is_file()
    assert not [p for p in site_dir.parent.parent.iterdir() if ".feeds-" in p.name]


def test_build_refusal_suggests_a_folder_that_works(runner: CliRunner, site_dir: Path) -> None:
    result = invoke(runner, Path("config.yaml"), "build", ".")
    assert f"for example {site_dir / 'public'}" in result.output
    again = invoke(runner, Path("config.yaml"), "build", "public")
    assert again.exit_code == 0, again.output
    assert (site_dir / "public" / "index.html").is_file()


def test_build_follows_a_symlink_before_deciding(runner: CliRunner, site_dir: Path) -> None:
    (site_dir.parent / "www").symlink_to(site_dir / "articles")
    result = invoke(runner, Path("config.yaml"), "build", "../www")
    assert result.exit_code == 1
    assert "is the articles folder" in result.output
    assert f"../www (= {site_dir / 'articles'})" in result.output
    assert (site_dir / "articles" / "politik" / "erster.md").is_file()


def test_build_refuses_the_state_folder_named_in_the_environment(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "var" / "feeds-state"
    state.mkdir(parents=True)
    (state / "validators.sqlite").write_bytes(b"SQLite format 3\0")
    monkeypatch.setenv("FEEDS_STATE_DIR", str(state))
    result = invoke(runner, make_site(), "build", str(tmp_path / "var"))
    assert result.exit_code == 1
    assert f"contains the state folder {state}" in result.output
    assert (state / "validators.sqlite").read_bytes() == b"SQLite format 3\0"


def test_build_into_a_file_fails_cleanly(runner: CliRunner, make_site: MakeSite, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = invoke(runner, make_site(), "build", str(target))
    assert result.exit_code == 1
    assert f"{target}: it exists and is not a folder" in result.output
    assert target.read_text() == "mine"


def test_build_into_a_folder_that_is_not_an_export_needs_force(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path
) -> None:
    path = make_site()
    out = tmp_path / "www"
    out.mkdir()
    (out / "humans.txt").write_text("User-agent: *\n")
    result = invoke(runner, path, "build", str(out))
    assert result.exit_code == 1
    assert f"refusing to build into {out}: it is not empty and is not an export" in result.output
    assert "--force" in result.output
    assert [p.name for p in out.iterdir()] == ["humans.txt"]

    forced = invoke(runner, path, "build", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "humans.txt").read_text() == "User-agent: *\n"
    assert (out / "index.html").is_file() and (out / "feeds" / "alle.rss.gz").is_file()


def test_build_never_overwrites_a_hand_made_file(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path
) -> None:
    out = tmp_path / "www"
    out.mkdir()
    (out / "index.html").write_text("<h1>our own home page</h1>")
    result = invoke(runner, make_site(), "build", str(out), "--force")
    assert result.exit_code == 1
    assert f"refusing to build into {out}: index.html would be overwritten" in result.output
    assert (out / "index.html").read_text() == "<h1>our own home page</h1>"
    assert [p.name for p in out.iterdir()] == ["index.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site", "www"]


@pytest.mark.parametrize(
    "manifest",
    [
        b"{not json",
        json.dumps({"generator": "feeds", "version": 1, "files": ["index.html", "../secret.txt"]}).encode(),
    ],
    ids=["garbage", "escaping path"],
)
def test_build_does_not_trust_a_forged_manifest(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path, manifest: bytes
) -> None:
    path = make_site()
    out = tmp_path / "www"
    assert invoke(runner, path, "build", str(out)).exit_code == 0
    (tmp_path / "secret.txt").write_text("outside the export")
    (out / "humans.txt").write_text("mine")
    (out / ".feeds-export.json").write_bytes(manifest)
    before = site_files(out)

    result = invoke(runner, path, "build", str(out))
    assert result.exit_code == 1
    assert "is not an export of feeds" in result.output
    forced = invoke(runner, path, "build", str(out), "--force")
    assert forced.exit_code == 1
    assert ".feeds-export.json" in forced.output and "would be overwritten" in forced.output
    assert site_files(out) == before
    assert (tmp_path / "secret.txt").read_text() == "outside the export"


# A build that stalls at a chosen call, so the test can SIGKILL it at a known point: while
# writing the new tree, just before or after the swap, or while removing the old tree's foreign files.
STALLING_BUILD = """
import os, pathlib, sys, time
from feeds.cli import cli

where, nth = sys.argv[1], int(sys.argv[2])
owner = {"write": pathlib.Path, "replace": os, "unlink": pathlib.Path}[where]
name = "write_bytes" if where == "write" else where
real, calls = getattr(owner, name), []

def stall(*args, **kwargs):
    calls.append(args)
    if len(calls) == nth:
        print("stalled", flush=True)
        time.sleep(600)
    return real(*args, **kwargs)

setattr(owner, name, stall)
cli(sys.argv[3:])
"""


@pytest.mark.parametrize(
    ("where", "nth"),
    [("write", 5), ("replace", 1), ("replace", 2), ("unlink", 1)],
    ids=["writing", "before the swap", "after the swap", "removing the old tree's foreign files"],
)
def test_build_killed_midway_is_cleaned_up_by_the_next(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path, where: str, nth: int
) -> None:
    path = make_site()
    out = tmp_path / "www"
    assert invoke(runner, path, "build", str(out)).exit_code == 0
    (out / "humans.txt").write_text("mine")
    (out / "feeds" / "podcast.xml").write_text("<rss>hand-made</rss>")
    dead = subprocess.Popen(["true"])
    dead.wait()
    look_alike = tmp_path / f".www.feeds-tmp-{dead.pid}"  # named like ours, but without our marker
    look_alike.mkdir()
    (look_alike / "notes.txt").write_text("not from feeds")

    # --full: every document is written again (a rebuild of an unchanged site would link them all)
    command = ["--config", str(path), "build", str(out), "--full"]
    process = subprocess.Popen(
        [sys.executable, "-c", STALLING_BUILD, where, str(nth), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None and process.stdout.readline() == b"stalled\n", process.stderr
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".www.feeds-"))
    assert left != [look_alike.name], "the kill left nothing behind: the test would prove nothing"

    result = invoke(runner, path, "build", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["site", "www", ".www.feeds-spare", look_alike.name]
    )
    assert (look_alike / "notes.txt").read_text() == "not from feeds"
    assert (out / "humans.txt").read_text() == "mine"
    assert (out / "feeds" / "podcast.xml").read_text() == "<rss>hand-made</rss>"
    assert (out / "index.html").is_file() and (out / "articles" / "erster.html.gz").is_file()


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


@pytest.mark.skipif(sys.platform != "linux", reason="stamping needs Linux file leases")
def test_stamp_dates_writes_first_seen_and_keeps_every_entry_id(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path
) -> None:
    plain = "Ohne Datum\nErster Absatz.\n"
    config = make_site(
        articles={"a/ohne.txt": plain, "a/mit.md": "---\ntitle: Mit\ndate: 2025-01-01\n---\nx\n"}
    )
    state = {"FEEDS_STATE_DIR": str(tmp_path / "state")}
    before = invoke(runner, config, "get", "/feeds/alle.atom")
    assert before.exit_code == 0
    ids_before = [e.id for e in feedparser.parse(before.output.encode()).entries]
    warned = invoke(runner, config, "check")
    assert "a/ohne.txt: warning: no date" in warned.output
    stamped = runner.invoke(cli, ["--config", str(config), "check", "--stamp-dates"], env=state)
    assert "wrote first_seen into 1 article(s)" in stamped.output
    assert "a/ohne.txt: warning" not in stamped.output
    text = (config.parent / "articles" / "a" / "ohne.txt").read_text(encoding="utf-8")
    assert text.startswith("---\nfirst_seen: ") and text.endswith("---\n" + plain)
    # A fresh clone (no state folder) now gives the same ids and the same date.
    fresh = runner.invoke(
        cli,
        ["--config", str(config), "get", "/feeds/alle.atom"],
        env={"FEEDS_STATE_DIR": str(tmp_path / "other-machine")},
    )
    after = feedparser.parse(fresh.output.encode()).entries
    assert [e.id for e in after] == ids_before
    first_seen = text.split("\n")[1].removeprefix("first_seen: ")
    ohne = next(e for e in after if e.title == "Ohne Datum")
    assert ohne.published_parsed[:6] == datetime.fromisoformat(first_seen).astimezone(UTC).timetuple()[:6]


def test_a_dateless_article_keeps_its_date_and_id_across_restarts_and_copies(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path
) -> None:
    config = make_site(articles={"a/ohne.txt": "Ohne Datum\nText.\n"})
    article = config.parent / "articles" / "a" / "ohne.txt"
    state = {"FEEDS_STATE_DIR": str(tmp_path / "state")}

    def entry() -> feedparser.FeedParserDict:
        result = runner.invoke(cli, ["--config", str(config), "get", "/feeds/alle.atom"], env=state)
        (found,) = feedparser.parse(result.output.encode()).entries
        return found

    first = entry()
    os.utime(article, (1_000_000_000, 1_000_000_000))  # what git clone, cp and restores do
    second = entry()
    assert (second.id, second.published) == (first.id, first.published)
    state["FEEDS_STATE_DIR"] = str(tmp_path / "another-machine")
    assert entry().id == first.id
