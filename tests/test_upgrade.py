"""Upgrades: a new version of feeds builds its index beside the running version's, never over it.

What an operator sees: after ``systemctl reload`` with new code the site keeps answering while the
new version's index is built (an earlier index of the same layout stands in, answered
uncacheably), then the new one is checked and served, and the earlier file is deleted once no
process has it open. A new layout cannot stand in: ``feeds index`` with the new code builds the
index first (docs/operations.md, "Upgrades"), and the running server is never disturbed by it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

import feeds.live
from feeds import create_app
from feeds.cli import cli
from feeds.config import load_config
from feeds.site import open_site
from feeds.store import IndexStore, config_key, index_name, remove_superseded, schema

from conftest import NOW, MakeSite
from support.waiting import wait_until

Upgrade = Callable[..., None]


@pytest.fixture
def upgrade() -> Iterator[Upgrade]:
    """Turn this process into the next version of feeds: other parsing code (the same layout,
    so the earlier index can stand in), or with ``layout=True`` another layout."""

    def fresh() -> None:
        schema.layout.cache_clear()
        schema.fingerprint.cache_clear()

    with pytest.MonkeyPatch.context() as patch:

        def to_next(layout: bool = False) -> None:
            name = "LAYOUT_CODE" if layout else "CODE"
            patch.setattr(schema, name, (*getattr(schema, name), "store/queries.py"))
            fresh()

        yield to_next
    fresh()


def _titles(text: str) -> list[str]:
    return sorted(entry.title for entry in feedparser.parse(text).entries)


def _retitle(config: Path, title: str) -> None:
    article = config.parent / "articles" / "politik" / "erster.md"
    text = article.read_text(encoding="utf-8")
    article.write_text(text.replace("title: Erster Artikel", f"title: {title}"), encoding="utf-8")


def test_an_upgrade_serves_the_earlier_index_while_it_builds_its_own_then_switches(
    make_site: MakeSite, tmp_path: Path, upgrade: Upgrade, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_site()
    state = tmp_path / "state"
    open_site(config, lambda: NOW, state).close()  # the running version's index
    earlier = state / index_name(load_config(config))
    upgrade()
    ours = state / index_name(load_config(config))
    assert ours != earlier and earlier.exists() and not ours.exists()

    built = threading.Event()
    release = threading.Event()
    real_load = feeds.live.indexing.load

    def held_load(*args: object) -> None:  # the build done, the switch held back
        real_load(*args)  # type: ignore[arg-type]
        built.set()
        assert release.wait(30)

    monkeypatch.setattr(feeds.live.indexing, "load", held_load)
    monkeypatch.setattr(feeds.live, "RETIRE", 0.0)
    app = create_app(config, clock=lambda: NOW, watch=True, state_dir=state)
    site = app.extensions["feeds"]
    client = app.test_client()
    try:
        assert site.live.snapshot.upgrading
        assert "upgrading" in client.get("/healthz").get_json()
        answer = client.get("/feeds/alle.atom")
        assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
        assert "Erster Artikel" in _titles(answer.text)

        assert built.wait(30), "this version's index was never built"
        generation = site.live.snapshot.generation
        _retitle(config, "Nach dem Bau bearbeitet")  # after the new index read the files
        assert site.live.wait(lambda s: s.generation > generation, 30)
        assert "Nach dem Bau bearbeitet" in _titles(client.get("/feeds/alle.atom").text)  # at once

        release.set()
        assert site.live.wait(lambda s: not s.upgrading and s.verified, 30), "never switched"
        answer = client.get("/feeds/alle.atom")
        assert "public" in answer.headers["Cache-Control"]
        assert "Nach dem Bau bearbeitet" in _titles(answer.text)  # the check after the switch
        assert site.live.snapshot.store.file == ours
        assert "upgrading" not in client.get("/healthz").get_json()
        wait_until(lambda: not earlier.exists(), "the earlier version's index deleted")
        assert sorted(p.name for p in state.glob("index-*")) == sorted(
            ours.name + suffix
            for suffix in ("", ".check", ".lock", ".use", ".write", "-shm", "-wal")
            if ours.with_name(ours.name + suffix).exists()
        )
        assert not list(state.glob(earlier.name + "*"))
    finally:
        release.set()
        site.close()


def test_a_new_layout_is_built_by_feeds_index_beside_the_running_index(
    make_site: MakeSite, tmp_path: Path, upgrade: Upgrade
) -> None:
    """Rows of another layout cannot be read: the earlier index never stands in, and is neither
    reset nor deleted while the running version has it open."""
    config = make_site()
    state = tmp_path / "state"
    running = open_site(config, lambda: NOW, state)  # the running version, its index open
    earlier = running.live.snapshot.store.file
    before = earlier.read_bytes()
    upgrade(layout=True)
    result = CliRunner().invoke(cli, ["--config", str(config), "index"], env={"FEEDS_STATE_DIR": str(state)})
    assert result.exit_code == 0 and "5 articles, built in" in result.output, result.output
    ours = state / index_name(load_config(config))
    assert ours != earlier and IndexStore(ours).ready(config_key(load_config(config)))
    assert earlier.read_bytes() == before  # never written by the new version
    assert "Erster Artikel" in _titles(running.feed("alle", "atom").body.decode())

    app = create_app(config, clock=lambda: NOW, watch=False, state_dir=state)
    assert not app.extensions["feeds"].live.snapshot.upgrading  # its own index, ready
    assert remove_superseded(state, load_config(config)) == []  # still open by the running one
    assert earlier.exists()
    running.close()
    assert remove_superseded(state, load_config(config)) == [earlier]
    assert not earlier.exists()
    app.extensions["feeds"].close()


def test_only_our_own_marked_indexes_are_ever_deleted(
    make_site: MakeSite, tmp_path: Path, upgrade: Upgrade
) -> None:
    """An index of a version that did not mark its use, a foreign file, a symbolic link and a
    folder under an index's name are left where they are."""
    config = make_site()
    state = tmp_path / "state"
    open_site(config, lambda: NOW, state).close()
    unmarked = state / index_name(load_config(config))
    with sqlite3.connect(unmarked) as db:
        db.execute("DELETE FROM info WHERE key = 'uses'")
    prefix = unmarked.name.rsplit("-", 1)[0]
    foreign = state / f"{prefix}-foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE info (key TEXT, value TEXT)")
        db.execute("INSERT INTO info VALUES ('uses', '1'), ('complete', '1')")
    target = tmp_path / "elsewhere.sqlite"
    target.write_bytes(unmarked.read_bytes())
    link = state / f"{prefix}-link.sqlite"
    link.symlink_to(target)
    (state / f"{prefix}-folder.sqlite").mkdir()
    upgrade()
    site = open_site(config, lambda: NOW, state)
    try:
        assert site.live.snapshot.store.file == state / index_name(load_config(config))
        assert remove_superseded(state, load_config(config)) == []
        assert unmarked.exists() and foreign.exists() and link.is_symlink() and target.exists()
        assert (state / f"{prefix}-folder.sqlite").is_dir()
    finally:
        site.close()


def test_a_foreign_or_linked_file_never_stands_in(
    make_site: MakeSite, tmp_path: Path, upgrade: Upgrade
) -> None:
    """Only a complete index of ours, of this layout, in a plain file stands in; otherwise the
    start builds its own index before answering, as a first start does."""
    config = make_site()
    state = tmp_path / "state"
    open_site(config, lambda: NOW, state).close()
    earlier = state / index_name(load_config(config))
    moved = tmp_path / "moved.sqlite"
    earlier.rename(moved)
    earlier.symlink_to(moved)
    upgrade()
    app = create_app(config, clock=lambda: NOW, watch=True, state_dir=state)
    site = app.extensions["feeds"]
    try:
        assert not site.live.snapshot.upgrading
        assert site.live.snapshot.store.file == state / index_name(load_config(config))
        assert "Erster Artikel" in _titles(app.test_client().get("/feeds/alle.atom").text)
    finally:
        site.close()
    assert earlier.is_symlink() and moved.exists()
