"""Bodies: an entry is complete (the version the index holds) or left out, never hollow."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from feeds.articles import Meta
from feeds.bodies import Bodies
from feeds.config import SiteConfig, load_config
from feeds.records import parse_file

from conftest import MakeSite

V1 = "---\nid: x\ntitle: Eins\ndate: 2025-01-01\n---\nVERSION-ONE body.\n"
V2 = "---\nid: x\ntitle: Zwei\ndate: 2025-01-01\n---\nVERSION-TWO body, longer than the first.\n"


@pytest.fixture
def config(make_site: MakeSite) -> SiteConfig:
    return load_config(make_site(articles={"a/x.md": V1}))


def read(config: SiteConfig) -> tuple[Meta, str]:
    record, body = parse_file(config, "a/x.md")
    assert record is not None and record.meta is not None
    return record.meta, body


def rewrite(config: SiteConfig, text: str, age: float = 0.0) -> None:
    path = config.articles_dir / "a" / "x.md"
    path.write_text(text, encoding="utf-8")
    if age:
        past = time.time() - age
        os.utime(path, (past, past))


def test_the_version_the_index_holds_is_rendered(config: SiteConfig) -> None:
    meta, _ = read(config)
    article = Bodies(config).article(meta)
    assert article is not None and "VERSION-ONE" in article.html and article.summary


def test_a_rendered_version_stays_available_while_its_file_is_rewritten(config: SiteConfig) -> None:
    bodies = Bodies(config)
    bodies.watched = True
    meta, _ = read(config)
    assert bodies.article(meta) is not None
    rewrite(config, V2[:40])  # a writer half-way through
    again = bodies.article(meta)
    assert again is not None and "VERSION-ONE" in again.html


def test_a_body_handed_over_at_read_time_survives_the_next_rewrite(config: SiteConfig) -> None:
    bodies = Bodies(config)
    bodies.watched = True
    rewrite(config, V2)
    meta, body = read(config)  # what the watcher read when the writer closed the file
    bodies.offer(meta, body)
    rewrite(config, V1[:30])  # the next writer already started
    article = bodies.article(meta)
    assert article is not None and "VERSION-TWO" in article.html


def test_an_unsettled_body_is_none_not_hollow(config: SiteConfig) -> None:
    bodies = Bodies(config)
    bodies.watched = True
    meta, _ = read(config)
    rewrite(config, V2[:40])  # never rendered, never offered, and now being rewritten
    assert bodies.article(meta) is None


def test_without_a_watcher_a_quiet_file_is_read_whole(config: SiteConfig) -> None:
    bodies = Bodies(config)
    meta, _ = read(config)
    rewrite(config, V2, age=10)  # changed, and quiet for longer than any writer pauses
    article = bodies.article(meta)
    assert article is not None and "VERSION-TWO" in article.html and article.title == "Zwei"


def test_a_file_replaced_by_a_pipe_leaves_the_entry_out(config: SiteConfig, tmp_path: Path) -> None:
    bodies = Bodies(config)
    meta, _ = read(config)
    path = config.articles_dir / "a" / "x.md"
    path.unlink()
    os.mkfifo(path)
    assert bodies.article(meta) is None  # and it returned: nothing blocked on the pipe
