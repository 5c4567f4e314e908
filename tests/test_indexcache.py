"""The index cache in the state folder: data only, checked on the way back, never code.

Whoever can write into the state folder must not be able to run code as the server (the old
cache was a pickle), and a corrupt, foreign or old file is ignored with a log line, never
overwritten and never fatal.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import feeds.records
from feeds import create_app
from feeds.cli import cli
from feeds.config import load_config
from feeds.indexcache import APPLICATION_ID, IndexCache
from feeds.records import load_records

from conftest import NOW, MakeSite


def cache_path(state: Path, config_path: Path) -> Path:
    articles = load_config(config_path).articles_dir
    return state / f"index-{hashlib.sha256(str(articles).encode()).hexdigest()[:12]}.sqlite"


class Planted:
    """Unpickling this writes a file: proof that code from the state folder ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "code from the state folder ran"))  # type: ignore[return-value]


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths parsed from disk (a warm start over an unchanged archive parses none)."""
    seen: list[str] = []
    real = feeds.records.parse_meta

    def counting(source, config):  # type: ignore[no-untyped-def]
        seen.append(source.path)
        return real(source, config)

    monkeypatch.setattr(feeds.records, "parse_meta", counting)
    return seen


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
    config = load_config(make_site())
    cache = IndexCache(tmp_path / "index.sqlite")
    first = load_records(config, cache)
    assert len(parses) == 5
    parses.clear()
    assert load_records(config, cache) == first
    assert parses == []
    edited = config.articles_dir / "politik" / "erster.md"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Erster Artikel", "Neu"), encoding="utf-8")
    again = load_records(config, cache)
    assert parses == ["politik/erster.md"]
    assert again["politik/erster.md"].meta.title == "Neu"  # type: ignore[union-attr]


def test_malformed_rows_are_ignored_and_those_files_read_again(
    make_site: MakeSite, tmp_path: Path, parses: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(make_site())
    cache = IndexCache(tmp_path / "index.sqlite")
    good = load_records(config, cache)
    forgeries = {
        "politik/erster.md": "title = 42",  # not text
        "politik/zweiter.md": "problems = 'not json'",
        "klima/dritter.txt": "title = 'bell ' || char(7)",  # would make the feed fail to render
        "klima/entwurf.md": "published = 99999999999999",  # no date a feed can carry
        "klima/sperrfrist.md": "topics = 'no separator'",
    }
    with sqlite3.connect(cache.path) as db:
        for rel, change in forgeries.items():
            db.execute(f"UPDATE files SET {change} WHERE path = ?", (rel,))
    parses.clear()
    with caplog.at_level(logging.WARNING):
        assert load_records(config, cache) == good
    assert sorted(parses) == sorted(forgeries)
    assert "malformed" in caplog.text


@pytest.mark.parametrize("content", ["garbage", "foreign"])
def test_a_corrupt_or_foreign_file_is_left_alone(
    make_site: MakeSite, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    config = load_config(make_site())
    path = tmp_path / "index.sqlite"
    if content == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE files (path TEXT, size INTEGER, mtime_ns INTEGER, meta TEXT)")
            db.execute("INSERT INTO files VALUES ('politik/erster.md', 1, 1, 'x')")
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        records = load_records(config, IndexCache(path))
    assert records["politik/erster.md"].meta is not None
    assert path.read_bytes() == before  # never overwritten: it is not ours
    assert str(path) in caplog.text and "delete the file" in caplog.text


def test_a_cache_made_under_another_config_is_not_used(
    make_site: MakeSite, tmp_path: Path, parses: list[str]
) -> None:
    path = make_site()
    cache = IndexCache(tmp_path / "index.sqlite")
    load_records(load_config(path), cache)
    text = path.read_text(encoding="utf-8").replace("news.example.org", "andere.example.org")
    path.write_text(text, encoding="utf-8")
    parses.clear()
    records = load_records(load_config(path), cache)
    assert len(parses) == 5
    assert records["politik/erster.md"].meta.url.startswith("https://andere.example.org/")  # type: ignore[union-attr]
    with sqlite3.connect(cache.path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
