"""Records: what one file read yields, and which failures keep the last good version."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from feeds.articles import DateSource
from feeds.config import SiteConfig, load_config
from feeds.indexing import parse_all, stale_paths, stale_paths_aside
from feeds.records import Record, dated, parse_file
from feeds.sources import scan
from feeds.store import IndexStore, Ledger, config_key, index_name

from conftest import MakeSite
from support.waiting import PATIENCE

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def load_records(config: SiteConfig) -> dict[str, Record]:
    rels = [item.rel for item in scan(config.articles_dir) if item.refusal is None]
    return {rel: record for rel, record in parse_all(config, rels) if record is not None}


def built(config: SiteConfig, records: dict[str, Record]) -> IndexStore:
    store = IndexStore(None)
    store.reset(config_key(config))
    store.insert(records.items())
    store.finish(lambda ids: {})
    return store


GOOD = "---\ntitle: Gut\ndate: 2025-01-01\n---\nText.\n"


def test_each_outcome_of_reading_a_file(make_site: MakeSite) -> None:
    config = load_config(make_site(articles={"a/gut.md": GOOD, "a/kaputt.md": "---\ntitle: [x\n---\n"}))
    root = config.articles_dir
    os.mkfifo(root / "a" / "pipe.md")
    good, body = parse_file(config, "a/gut.md")
    assert good is not None and good.meta is not None and body.strip() == "Text."
    broken, _ = parse_file(config, "a/kaputt.md")
    assert broken is not None and broken.meta is None and broken.retry  # may be half-written
    pipe, _ = parse_file(config, "a/pipe.md")
    assert pipe is not None and pipe.meta is None and not pipe.retry  # never an article
    assert "named pipe" in pipe.problems[0].message
    assert parse_file(config, "a/weg.md") == (None, "")


def test_a_file_that_stops_parsing_keeps_its_last_good_version_but_a_pipe_does_not(
    make_site: MakeSite,
) -> None:
    config = load_config(make_site(articles={"a/gut.md": GOOD}))
    store = built(config, load_records(config))
    path = config.articles_dir / "a" / "gut.md"
    path.write_text("---\ntitle: [half\n", encoding="utf-8")
    assert store.apply({"a/gut.md": parse_file(config, "a/gut.md")[0]}).visible == ()
    with store.read() as reader:
        assert [m.title for m in reader.articles()] == ["Gut"]
    path.unlink()
    os.mkfifo(path)
    assert store.apply({"a/gut.md": parse_file(config, "a/gut.md")[0]}).visible == ("a/gut.md",)
    with store.read() as reader:
        assert reader.articles() == []
        assert any("named pipe" in p.message for p in reader.problems())


def test_dateless_articles_get_the_date_they_were_first_seen(make_site: MakeSite) -> None:
    config = load_config(make_site(articles={"a/ohne.txt": "Titel\nText.\n", "a/mit.md": GOOD}))
    ledger = Ledger(None)
    records = load_records(config)
    assert records["a/ohne.txt"].meta.dated_by is DateSource.SEEN  # type: ignore[union-attr]
    first = dated(records, lambda ids: ledger.first_seen(ids, T0))
    later = dated(records, lambda ids: ledger.first_seen(ids, datetime(2026, 1, 1, tzinfo=UTC)))
    assert first["a/ohne.txt"].meta.published == T0  # type: ignore[union-attr]
    assert later["a/ohne.txt"].meta.published == T0  # type: ignore[union-attr]
    assert first["a/mit.md"] is records["a/mit.md"]  # dated articles are left as they are


def test_parser_processes_die_with_a_worker_killed_during_a_cold_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A worker killed while its pool parses (granian's kill timeout, the OOM killer) must not
    leave parser processes behind, deadlocked on a full pipe for ever."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time
    from pathlib import Path

    articles = tmp_path / "articles"
    articles.mkdir()
    for i in range(3000):
        (articles / f"a{i}.md").write_text(f"---\ntitle: A{i}\ndate: 2025-01-01\n---\n" + "Text. " * 200)
    (tmp_path / "config.yaml").write_text("site: {title: T, url: 'https://x.example.org'}\n")
    script = textwrap.dedent(f"""
        from pathlib import Path
        import feeds.indexing as r
        from feeds.store import IndexStore
        from feeds.config import load_config
        r.PARALLEL_FROM, r.CHUNK = 1, 50
        if __name__ == "__main__":
            db = IndexStore(Path({str(tmp_path / "index.sqlite")!r}))
            r.load(load_config({str(tmp_path / "config.yaml")!r}), db, lambda ids: {{}})
    """)
    worker = subprocess.Popen([sys.executable, "-c", script])

    def children(pid: int) -> list[int]:
        found = []
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            found += [int(c) for c in task.read_text().split()]
        return found

    try:
        deadline = time.monotonic() + PATIENCE
        while len(children(worker.pid)) < 2 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        parsers = children(worker.pid)
        assert len(parsers) >= 2, "the pool never started"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        deadline = time.monotonic() + PATIENCE
        while any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in parsers):
            assert time.monotonic() < deadline, "parser processes outlived their worker"
            time.sleep(0.05)
    finally:
        worker.kill()


def _state(pid: int) -> str:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_the_check_in_a_process_of_its_own_finds_what_changed(make_site: MakeSite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A large archive is compared with its index in a niced process (not a thread holding the
    worker's interpreter lock): it must find the same files as the check in the worker."""
    from feeds.site import open_site

    config_path = make_site(articles={"a/gut.md": GOOD, "a/zwei.md": GOOD.replace("Gut", "Zwei")})
    state = tmp_path / "state"
    site = open_site(config_path, state_dir=state)
    config = site.config
    (config.articles_dir / "a" / "zwei.md").write_text(GOOD.replace("Gut", "Anders"), encoding="utf-8")
    (config.articles_dir / "a" / "neu.md").write_text(GOOD, encoding="utf-8")
    (config.articles_dir / "a" / "gut.md").unlink()
    index_file = state / index_name(config)
    expected = stale_paths(config, site.live.snapshot.store.stamps())
    assert expected == ["a/gut.md", "a/neu.md", "a/zwei.md"]
    assert stale_paths_aside(config, index_file) == expected
