"""renderers: a build's documents rendered on more than one process, the export unchanged."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

import feeds.renderers
from feeds.cli import cli
from feeds.export import build
from feeds.outfolder import MANIFEST, MARKER
from feeds.site import open_site

from conftest import MakeSite

ARTICLES: dict[str, str | bytes] = {
    f"{topic}/a{n:03d}.md": f"""\
        ---
        id: a{n:03d}
        title: Meldung {n}
        date: 2025-0{1 + n % 9}-{1 + n % 28:02d}T{n % 24:02d}:00:00Z
        topics: [{topic}]
        tags: [t{n % 3}]
        ---
        Absatz **{n}** über {topic}.

        Noch ein Absatz.
        """
    for n in range(40)
    for topic in (("politik", "sport", "kultur")[n % 3],)
}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Documents rendered in the build's own process (a rendering process imports its own
    module, so what it renders is not counted here)."""
    seen: list[str] = []
    real = feeds.renderers.render

    def counting(site, kind, params):  # type: ignore[no-untyped-def]
        seen.append(kind.place.file(**params))
        return real(site, kind, params)

    monkeypatch.setattr(feeds.renderers, "render", counting)
    monkeypatch.setattr(feeds.renderers, "ALONE", 0)  # processes from the first document on
    monkeypatch.setattr(feeds.renderers, "BATCH", 3)
    return seen


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of an export with its mtime (a web server's Last-Modified)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in (MANIFEST, MARKER):
            found[path.relative_to(root).as_posix()] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def records(root: Path) -> list[str]:
    """The manifest's records (file, key, ETag, sizes), without the inode numbers of this tree."""
    documents = json.loads((root / MANIFEST).read_bytes())["documents"]
    assert documents
    return sorted(
        json.dumps([rel, key, etag, mtime, size, gz_size])
        for rel, key, etag, mtime, size, _, gz_size, _ in documents
    )


def test_a_build_on_two_processes_writes_what_a_build_on_one_writes(
    make_site: MakeSite, tmp_path: Path, counted: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = make_site(ARTICLES)
    state = tmp_path / "state"
    one = build(open_site(config, state_dir=state), tmp_path / "one")
    assert len(counted) == one.rendered > 100  # feeds, archives, pages: all rendered here
    counted.clear()
    with caplog.at_level(logging.INFO, "feeds.renderers"):
        two = build(open_site(config, state_dir=state), tmp_path / "two", workers=2)
    assert counted == []  # every document came from the processes
    assert "rendering the export on 2 processes" in caplog.text
    assert (two.documents, two.rendered, two.written) == (one.documents, one.rendered, one.written)
    assert files(tmp_path / "two") == files(tmp_path / "one")  # same bytes, twins and dates
    assert records(tmp_path / "two") == records(tmp_path / "one")


def test_processes_that_cannot_open_the_site_leave_the_build_to_its_own_process(
    make_site: MakeSite, tmp_path: Path, counted: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = make_site(ARTICLES)
    state = tmp_path / "state"
    build(open_site(config, state_dir=state), tmp_path / "one")
    site = open_site(config, state_dir=state)
    site.view().store.set_info("config", "another")  # as if another config's index replaced it
    counted.clear()
    with caplog.at_level(logging.INFO, "feeds.renderers"):
        done = build(site, tmp_path / "two", workers=2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("rendering the rest of the export in this one" in w for w in warnings), warnings
    assert len(counted) == done.rendered  # all of them here, after all
    assert files(tmp_path / "two") == files(tmp_path / "one")


def test_rendering_processes_killed_mid_build_leave_the_rest_to_the_build(
    make_site: MakeSite,
    tmp_path: Path,
    counted: list[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel's OOM killer, or an operator's kill, an hour into a first build."""
    config = make_site(ARTICLES)
    state = tmp_path / "state"
    build(open_site(config, state_dir=state), tmp_path / "one")
    real = feeds.renderers._Pool._results
    killed: list[int] = []

    def killing(self, batch, future, ask):  # type: ignore[no-untyped-def]
        if not killed:
            for process in list(self._pool._processes.values()):
                os.kill(process.pid, signal.SIGKILL)
                killed.append(process.pid)
        return real(self, batch, future, ask)

    monkeypatch.setattr(feeds.renderers._Pool, "_results", killing)
    counted.clear()
    with caplog.at_level(logging.INFO, "feeds.renderers"):
        done = build(open_site(config, state_dir=state), tmp_path / "two", workers=2)
    assert len(killed) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("rendering the rest of the export in this one" in w for w in warnings), warnings
    assert 0 < len(counted) <= done.rendered
    assert files(tmp_path / "two") == files(tmp_path / "one")


def test_processes_render_with_the_config_the_build_began_with(
    make_site: MakeSite, tmp_path: Path, counted: list[str]
) -> None:
    """An operator editing config.yaml during a long build: the export stays of one config."""
    config = make_site(ARTICLES)
    state = tmp_path / "state"
    build(open_site(config, state_dir=state), tmp_path / "one")
    site = open_site(config, state_dir=state)
    config.write_text(config.read_text().replace("Testseite", "Umbenannt"), encoding="utf-8")
    counted.clear()
    build(site, tmp_path / "two", workers=2)
    assert counted == []
    assert files(tmp_path / "two") == files(tmp_path / "one")


def test_a_site_without_a_state_folder_renders_in_one_process(
    make_site: MakeSite, tmp_path: Path, counted: list[str]
) -> None:
    """Processes date documents from the ledger in the state folder; without one, each process
    would date them on its own."""
    done = build(open_site(make_site(ARTICLES)), tmp_path / "out", workers=2)
    assert len(counted) == done.rendered > 100


def test_feeds_build_jobs(make_site: MakeSite, tmp_path: Path, counted: list[str]) -> None:
    config = make_site(ARTICLES)
    runner = CliRunner()
    env = {"FEEDS_STATE_DIR": str(tmp_path / "state")}
    one = runner.invoke(cli, ["--config", str(config), "build", str(tmp_path / "one")], env=env)
    assert one.exit_code == 0, one.output
    counted.clear()
    two = runner.invoke(
        cli, ["--config", str(config), "build", "--jobs", "2", str(tmp_path / "two")], env=env
    )
    assert two.exit_code == 0, two.output
    assert counted == []
    assert files(tmp_path / "two") == files(tmp_path / "one")
    for bad in ("0", "-3", "many", str(10**9)):
        refused = runner.invoke(
            cli, ["--config", str(config), "build", "--jobs", bad, str(tmp_path / "x")], env=env
        )
        assert refused.exit_code == 2 and "--jobs" in refused.output, (bad, refused.output)
        assert not os.path.lexists(tmp_path / "x")
