"""Building the index in parser processes: what a script that uses feeds can get wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

import feeds.indexing
from feeds.site import open_site

from conftest import MakeSite


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="parser processes start only with two cores or more"
)
def test_a_script_without_a_main_guard_finishes_instead_of_hanging(
    make_site: MakeSite, tmp_path: Path
) -> None:
    """Each parser process imports the script again ("spawn"); a script that opens the site at
    its top level would open it again there and wait for the index its parent is building."""
    config = make_site()
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            import feeds.indexing
            from feeds.site import open_site
            feeds.indexing.PARALLEL_FROM = 0
            site = open_site({str(config)!r}, state_dir=Path({str(tmp_path / "state")!r}))
            print("articles:", site.article_count())
            """
        )
    )
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "articles: " in run.stdout and "articles: 0" not in run.stdout
    assert "if __name__ == '__main__'" in run.stderr  # said once, by the parser process that refused
    assert "parsing in this process" in run.stderr


def test_the_read_ahead_stays_within_its_lead_of_the_parsers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A million files asked for at once would fill the page cache with what the parsers reach
    only minutes later (and push out what they need now): the kernel is asked for a chunk only
    while fewer than LEAD chunks wait to be parsed."""
    asked: list[list[str]] = []
    each = threading.Semaphore(0)

    def recorded(root: Path, rels: list[str]) -> None:
        asked.append(list(rels))
        each.release()

    monkeypatch.setattr(feeds.indexing, "prefetch", recorded)
    monkeypatch.setattr(feeds.indexing, "LEAD", 3)
    chunks = [[f"a{i}.md"] for i in range(12)]
    ahead = feeds.indexing._ReadAhead(tmp_path)
    try:
        assert list(ahead.handed(chunks)) == chunks  # handed on unchanged, as the pool takes them
        for _ in range(3):
            assert each.acquire(timeout=30)
        ahead.finished()
        assert each.acquire(timeout=30)
    finally:
        ahead.stop()  # wakes the thread that waits for the parsers, and joins it
    assert asked == chunks[:4]


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="parser processes start only with two cores or more"
)
def test_a_cold_start_in_parser_processes_reads_every_file_ahead_and_indexes_it(
    make_site: MakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-ahead follows the parsers to the last chunk (each parsed chunk moves it on), and
    what the parser processes wrote is the whole archive."""
    articles = {
        f"thema-{i % 3}/artikel-{i:02d}.md": f"---\ntitle: Meldung {i}\ndate: 2024-03-{i % 28 + 1:02d}\n"
        f"---\nText {i}.\n"
        for i in range(40)
    }
    config = make_site(articles)
    asked: list[str] = []
    monkeypatch.setattr(feeds.indexing, "prefetch", lambda root, rels: asked.extend(rels))
    monkeypatch.setattr(feeds.indexing, "PARALLEL_FROM", 0)
    monkeypatch.setattr(feeds.indexing, "CHUNK", 2)
    monkeypatch.setattr(feeds.indexing, "LEAD", 1)
    site = open_site(config, lambda: datetime(2025, 1, 1, tzinfo=UTC), tmp_path / "state")
    try:
        assert asked == sorted(articles)
        assert site.article_count() == len(articles)
    finally:
        site.close()
