"""The index in the state folder: data only, checked on the way back, never code.

Whoever can write into the state folder must not be able to run code as the server (the old
cache was a pickle), and a corrupt, foreign or old file is ignored with a log line, never
overwritten and never fatal. A start trusts an index made for the same config and code, and a
check of every file's size and mtime reads again exactly the files that changed.
"""

from __future__ import annotations

import logging
import pickle
import sqlite3
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from feeds import create_app
from feeds.cli import cli
from feeds.config import load_config
from feeds.site import open_site
from feeds.store import IndexStore, config_key, index_name
from feeds.store.schema import APPLICATION_ID

from conftest import NOW, MakeSite


def cache_path(state: Path, config_path: Path) -> Path:
    return state / index_name(load_config(config_path))


class Planted:
    """Unpickling this writes a file: proof that code from the state folder ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "code from the state folder ran"))  # type: ignore[return-value]


def test_a_planted_pickle_never_runs(make_site: MakeSite, tmp_path: Path) -> None:
    config = make_site()
    state = tmp_path / "state"
    state.mkdir()
    marker = tmp_path / "owned"
    old_name = cache_path(state, config).with_suffix(".pickle")  # where the pickle cache lived
    for target in (old_name, cache_path(state, config)):
        target.write_bytes(pickle.dumps({"format": 4, "records": Planted(marker)}))
    client = create_app(config, clock=lambda: NOW, watch=False, state_dir=state).test_client()
    assert client.get("/feeds/alle.atom").status_code == 200
    result = CliRunner().invoke(
        cli, ["--config", str(config), "get", "/"], env={"FEEDS_STATE_DIR": str(state)}
    )
    assert result.exit_code == 0
    assert not marker.exists()


def test_a_warm_start_parses_nothing_and_a_changed_file_is_read_again(
    make_site: MakeSite, tmp_path: Path, parses: list[str]
) -> None:
    config = make_site()
    state = tmp_path / "state"
    first = open_site(config, lambda: NOW, state)
    assert len(parses) == 5
    parses.clear()
    again = open_site(config, lambda: NOW, state)
    assert parses == []
    assert again.feed("alle", "atom").body == first.feed("alle", "atom").body
    edited = config.parent / "articles" / "politik" / "erster.md"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Erster Artikel", "Neu"), encoding="utf-8")
    later = open_site(config, lambda: NOW, state)
    assert parses == ["politik/erster.md"]
    assert "Neu" in later.feed("alle", "atom").body.decode()


def _started_as_if_large(monkeypatch: pytest.MonkeyPatch, config: Path, state: Path) -> Flask:
    """The live app over ``state``, started as a server over a million articles starts: it
    answers at once and checks its files in the background."""
    import feeds.indexing
    import feeds.site

    monkeypatch.setattr(feeds.site, "CHECK_FIRST", -1)
    monkeypatch.setattr(feeds.indexing, "PARALLEL_FROM", 0)
    return create_app(config, clock=lambda: NOW, watch=True, notify=False, state_dir=state)


def test_a_large_archive_is_checked_in_the_background_and_answered_uncacheably_until_then(
    make_site: MakeSite, tmp_path: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server does not stat a million files before it answers: it serves the index as the
    last run left it, but with ``no-store``, until the writer has compared every file with it."""
    config = make_site()
    state = tmp_path / "state"
    open_site(config, lambda: NOW, state)
    edited = config.parent / "articles" / "politik" / "erster.md"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Erster Artikel", "Neu"), encoding="utf-8")
    parses.clear()
    app = _started_as_if_large(monkeypatch, config, state)
    site = app.extensions["feeds"]
    try:
        if not site.live.snapshot.verified:
            early = app.test_client().get("/feeds/alle.atom")
            assert early.headers["Cache-Control"] == "no-store"
        assert site.live.wait(lambda s: s.verified, 30), "the check never finished"
        answer = app.test_client().get("/feeds/alle.atom")
        assert "Neu" in answer.text and "public" in answer.headers["Cache-Control"]
        assert parses == ["politik/erster.md"]
    finally:
        site.close()


def test_a_large_archives_rows_are_checked_whole_after_its_files_and_repaired(
    make_site: MakeSite, tmp_path: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a start, documents wait only for the file stamps; a forged row of a draft (which no
    document decodes) is found by the check of whole rows that follows, and read again."""
    config = make_site()
    state = tmp_path / "state"
    open_site(config, lambda: NOW, state).close()
    _forge(cache_path(state, config), "UPDATE files SET title = 42 WHERE path = 'klima/entwurf.md'")
    parses.clear()
    app = _started_as_if_large(monkeypatch, config, state)
    site = app.extensions["feeds"]
    try:
        assert site.live.wait(lambda s: s.verified, 30), "the check never finished"

        def repaired(_: object) -> bool:
            with sqlite3.connect(cache_path(state, config)) as db:
                row = db.execute("SELECT typeof(title) FROM files WHERE path = 'klima/entwurf.md'").fetchone()
            return bool(row) and row[0] == "text"

        assert site.live.wait(repaired, 30), "the forged row was never read again"
        assert parses == ["klima/entwurf.md"]
    finally:
        site.close()


def test_a_small_archive_is_checked_before_the_first_answer(
    make_site: MakeSite, tmp_path: Path, parses: list[str]
) -> None:
    config = make_site()
    state = tmp_path / "state"
    open_site(config, lambda: NOW, state)
    (config.parent / "articles" / "politik" / "zweiter.md").unlink()  # a takedown while it was down
    app = create_app(config, clock=lambda: NOW, watch=True, notify=False, state_dir=state)
    try:
        answer = app.test_client().get("/feeds/alle.atom")
        assert "Zweiter Artikel" not in answer.text and "public" in answer.headers["Cache-Control"]
    finally:
        app.extensions["feeds"].close()


def test_malformed_rows_are_ignored_and_those_files_read_again(
    make_site: MakeSite,
    tmp_path: Path,
    parses: list[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import feeds.indexing
    import feeds.site

    config = make_site()
    state = tmp_path / "state"
    good = open_site(config, lambda: NOW, state).feed("alle", "atom").body
    forgeries = {
        "politik/erster.md": "title = 42",  # not text
        "politik/zweiter.md": "problems = 'not json'",
        "klima/dritter.txt": "title = 'bell ' || char(7)",  # would make the feed fail to render
        "klima/entwurf.md": "published = 99999999999999",  # no date a feed can carry
        "klima/sperrfrist.md": "topics = 'no separator'",
    }
    with sqlite3.connect(cache_path(state, config)) as db:
        for rel, change in forgeries.items():
            db.execute(f"UPDATE files SET {change} WHERE path = ?", (rel,))
    with monkeypatch.context() as large:  # as a large archive opens: checked later
        large.setattr(feeds.site, "CHECK_FIRST", -1)
        trusting = open_site(config, lambda: NOW, state, verify=False)
    with caplog.at_level(logging.WARNING):
        assert b"<feed" in trusting.feed("alle", "atom").body  # left out, never a broken document
    assert "malformed" in caplog.text
    parses.clear()
    with caplog.at_level(logging.WARNING):
        site = open_site(config, lambda: NOW, state)
    assert sorted(parses) == sorted(forgeries)
    assert site.feed("alle", "atom").body == good


@pytest.mark.parametrize("content", ["garbage", "foreign"])
def test_a_corrupt_or_foreign_file_is_left_alone(
    make_site: MakeSite, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    config = make_site()
    state = tmp_path / "state"
    path = cache_path(state, config)
    state.mkdir()
    if content == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE files (path TEXT, size INTEGER, mtime_ns INTEGER, meta TEXT)")
            db.execute("INSERT INTO files VALUES ('politik/erster.md', 1, 1, 'x')")
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        site = open_site(config, lambda: NOW, state)
    assert "Erster Artikel" in site.feed("alle", "atom").body.decode()
    assert path.read_bytes() == before  # never overwritten: it is not ours
    assert str(path) in caplog.text and "delete the file" in caplog.text


def test_an_index_made_under_another_config_or_code_is_not_used(
    make_site: MakeSite, tmp_path: Path, parses: list[str]
) -> None:
    path = make_site()
    state = tmp_path / "state"
    open_site(path, lambda: NOW, state)
    text = path.read_text(encoding="utf-8").replace("news.example.org", "andere.example.org")
    path.write_text(text, encoding="utf-8")
    parses.clear()
    site = open_site(path, lambda: NOW, state)
    assert len(parses) == 5
    assert "https://andere.example.org/" in site.feed("alle", "atom").body.decode()
    index = cache_path(state, path)
    with sqlite3.connect(index) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        db.execute("UPDATE info SET value = 'made by another version' WHERE key = 'config'")
    parses.clear()
    open_site(path, lambda: NOW, state)
    assert len(parses) == 5  # rebuilt in place: the file is ours
    assert IndexStore(index).ready(config_key(load_config(path)))


# --- rows forged while the server runs -------------------------------------------------------------


def _forge(index: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(index) as db:
        assert db.execute(sql, params).rowcount >= 1


def _everything(client: FlaskClient) -> str:
    paths = ["/", "/feeds.opml", "/articles/erster", "/articles/zweiter", "/articles/klima/dritter"]
    paths += [
        f"/feeds/{name}.{fmt}" for name in ("alle", "politik", "klima") for fmt in ("rss", "atom", "json")
    ]
    return "\n".join(client.get(p).get_data(as_text=True) for p in paths)


def test_forged_urls_are_never_published_and_the_files_are_read_again(
    make_site: MakeSite, tmp_path: Path
) -> None:
    config = make_site()
    state = tmp_path / "state"
    app = create_app(config, clock=lambda: NOW, watch=True, notify=False, state_dir=state)
    site, client = app.extensions["feeds"], app.test_client()
    try:
        assert "javascript:" not in _everything(client)
        generation = site.live.snapshot.generation
        index = cache_path(state, config)
        _forge(index, "UPDATE files SET url = 'javascript:alert(1)' WHERE path = 'politik/erster.md'")
        _forge(index, "UPDATE files SET image = 'javascript:alert(2)' WHERE path = 'politik/zweiter.md'")
        _forge(index, "UPDATE files SET permalink = 'javascript:alert(3)' WHERE path = 'klima/dritter.txt'")
        assert site.live.wait(lambda s: s.generation > generation, 10), "the writer never saw the write"
        assert "javascript:" not in _everything(client)

        def repaired(_: object) -> bool:
            forged = "url LIKE 'javascript:%' OR image LIKE 'javascript:%' OR permalink LIKE 'javascript:%'"
            with sqlite3.connect(index) as db:
                return not db.execute(f"SELECT 1 FROM files WHERE {forged}").fetchone()

        assert site.live.wait(repaired, 10), "the forged rows were never read again from their files"
        titles = [e.title for e in feedparser.parse(client.get("/feeds/alle.atom").data).entries]
        assert {"Erster Artikel", "Zweiter Artikel", "Dritter Artikel im Exportformat"} <= set(titles)
    finally:
        site.close()


@pytest.mark.parametrize("path", ["/proc/self/environ", "../../etc/passwd.md", "politik/geist.md"])
def test_a_forged_row_whose_file_is_no_article_is_dropped(
    make_site: MakeSite, tmp_path: Path, path: str
) -> None:
    config = make_site()
    state = tmp_path / "state"
    app = create_app(config, clock=lambda: NOW, watch=True, notify=False, state_dir=state)
    site, client = app.extensions["feeds"], app.test_client()
    try:
        assert client.get("/feeds/alle.rss").status_code == 200
        index = cache_path(state, config)
        columns = "size, mtime_ns, retry, problems, title, published, updated, url, permalink, topics, tags, "
        columns += "authors, language, draft, image, image_type, image_length, image_alt, sources, summary, "
        columns += "digest, body_start, dated_by"
        _forge(index, f"INSERT INTO files (path, id, {columns}) SELECT ?, 'forged', {columns} FROM files "
                      "WHERE path = 'politik/erster.md'", path)  # fmt: skip
        _forge(index, "UPDATE files SET entry = 1, published = published + 86400 WHERE id = 'forged'")
        _forge(index, "INSERT INTO entry_topics SELECT 'politik', 'forged', published, path, 'Politik' "
                      "FROM files WHERE id = 'forged'")  # fmt: skip

        def dropped(_: object) -> bool:
            answer = client.get("/feeds/alle.rss")
            with sqlite3.connect(index) as db:
                gone = db.execute("SELECT 1 FROM files WHERE path = ?", (path,)).fetchone() is None
            return gone and "public" in answer.headers["Cache-Control"] and answer.status_code == 200

        assert site.live.wait(dropped, 15), "the forged row stayed"
        assert client.get("/articles/forged").status_code == 404
        assert "environ" not in _everything(client) and "root:" not in _everything(client)
    finally:
        site.close()


# --- state files planted as symbolic links --------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "validators.sqlite",
        "validators.sqlite.lock",
        "{index}",
        "{index}-wal",
        "{index}.lock",
        "{index}.write",
    ],
)
def test_a_state_file_planted_as_a_symlink_is_refused_never_followed(
    make_site: MakeSite, tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_site()
    state = tmp_path / "state"
    state.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = state / name.format(index=index_name(load_config(config)))
    planted.symlink_to(outside / "target")
    with caplog.at_level(logging.WARNING):
        app = create_app(config, clock=lambda: NOW, state_dir=state)
        client = app.test_client()
        assert "Erster Artikel" in client.get("/feeds/alle.rss").get_data(as_text=True)
        (config.parent / "articles" / "politik" / "neu.md").write_text(
            "---\ntitle: Neu\ndate: 2025-06-01\n---\nx\n"
        )
        assert app.extensions["feeds"].apply(["politik/neu.md"])
        assert "Neu" in client.get("/feeds/alle.rss").get_data(as_text=True)
    assert list(outside.iterdir()) == []  # nothing created or written where the link points
    assert planted.is_symlink()  # and the link itself left alone
    health = client.get("/healthz").get_json()
    assert health["status"] == "degraded" and "symbolic link" in health["reason"]
    assert "symbolic link" in caplog.text
