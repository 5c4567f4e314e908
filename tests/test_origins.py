"""Several origins behind one cache: separate state folders, the same bytes and validators.

Two production servers (granian, the README's command) over the same articles, each with its own
state folder, started at different times: every document reachable from the index has the same
body, ETag and Last-Modified on both, so a cache or CDN may ask either. Articles without a date
are the documented exception until ``feeds check --stamp-dates`` writes their first-seen date.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import lxml.html
import pytest
from lxml import etree

from conftest import MakeSite
from support import harness

ATOM = "{http://www.w3.org/2005/Atom}"
DATED = {
    f"politik/m{day:02d}.md": f"---\nid: m{day:02d}\ntitle: Meldung {day}\n"
    f"date: 2025-03-{day:02d}T09:00:00+01:00\nimage: /bilder/{day}.jpg\n"
    f"image_alt: Bild {day}\n---\nText {day}.\n"
    for day in range(1, 9)
}
CONFIG = {"feeds": {"kurz": {"limit": 3}}}


def origin(config: Path, state: Path, log: Path) -> harness.Server:
    return harness.start(lambda port: harness.production_command(port), log, config=config, state_dir=state)


def documents(server: harness.Server) -> list[str]:
    """Every document a reader reaches from the index, archive pages included."""
    index = lxml.html.fromstring(server.fetch("/").body)
    found = {"/", "/feeds.opml"} | {
        h for h in index.xpath("//a/@href") if h.startswith(("/feeds/", "/articles/"))
    }
    todo = [p for p in found if p.endswith(".atom")]
    while todo:
        body = server.fetch(todo.pop()).body
        for link in etree.fromstring(body).iter(f"{ATOM}link"):
            href = link.get("href", "")
            if link.get("rel") == "prev-archive":
                path = "/" + href.split("/", 3)[3]
                found |= {path.replace(".atom", f".{fmt}") for fmt in ("rss", "atom", "json")}
                todo.append(path)
    return sorted(found)


def differences(one: harness.Server, two: harness.Server) -> list[str]:
    found = []
    for path in documents(one):
        a, b = one.fetch(path, {"Accept-Encoding": "gzip"}), two.fetch(path, {"Accept-Encoding": "gzip"})
        assert a.status == b.status == 200, path
        for what in ("etag", "last-modified", "cache-control", "content-type"):
            if a.headers.get(what) != b.headers.get(what):
                found.append(f"{path}: {what} {a.headers.get(what)} != {b.headers.get(what)}")
        if a.body != b.body:
            found.append(f"{path}: bytes differ")
    return found


def test_two_origins_with_their_own_state_serve_identical_documents(
    make_site: MakeSite, tmp_path: Path
) -> None:
    config = make_site(DATED, CONFIG)
    with origin(config, tmp_path / "state-1", tmp_path / "one.log") as one:
        time.sleep(1.1)  # a second later: nothing may depend on when an origin started
        with origin(config, tmp_path / "state-2", tmp_path / "two.log") as two:
            paths = documents(one)
            assert any("/archive/" in p for p in paths) and any(p.endswith(".json") for p in paths)
            assert differences(one, two) == []


@pytest.mark.parametrize("stamped", [False, True])
def test_dateless_articles_agree_across_origins_once_stamped(
    make_site: MakeSite, tmp_path: Path, stamped: bool
) -> None:
    articles = {**DATED, "politik/ohne-datum.txt": "Meldung ohne Datum\nErster Absatz.\n"}
    config = make_site(articles, CONFIG)
    if stamped:
        feeds = str(harness.BIN / "feeds")
        env = {"FEEDS_STATE_DIR": str(tmp_path / "stamp-state")}
        subprocess.run(
            [feeds, "--config", str(config), "check", "--stamp-dates"], env=env, capture_output=True
        )
        assert "first_seen:" in (config.parent / "articles" / "politik" / "ohne-datum.txt").read_text()
    with origin(config, tmp_path / "state-1", tmp_path / "one.log") as one:
        time.sleep(1.1)  # the second origin sees the dateless article a second later
        with origin(config, tmp_path / "state-2", tmp_path / "two.log") as two:
            found = differences(one, two)
    if stamped:
        assert found == []
    else:  # documented: its date (and the documents showing it) depend on each state folder
        assert "/articles/politik/ohne-datum: bytes differ" in found
