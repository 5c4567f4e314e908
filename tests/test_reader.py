"""A real aggregator against a real server: the ``reader`` library polling gunicorn on loopback.

What a subscriber sees over time: every entry on the first poll, a 304 (counted in the
server's access log, not by the client) when nothing changed, exactly one new entry for a new
article, and the same entry updated in place, never duplicated, when an article is edited.
And what it does when a polling budget refuses it: wait as long as Retry-After says.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from reader import Entry, Reader, make_reader

from conftest import StartServer
from support import harness
from support.waiting import PATIENCE, wait_until

FEED = "alle"  # every published article of the demo site, full content
EDITED = "articles/klima/2025-11-05-klimakonferenz.md"
EDITED_ID = "klimakonferenz-2025"
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) .*python-reader')


@dataclass
class Subscription:
    server: harness.Server
    access_log: Path
    site: Path
    path: str  # of the feed on the server
    reader: Reader

    @property
    def url(self) -> str:
        return self.server.url(self.path)

    def update(self) -> list[Entry]:
        self.reader.update_feeds(feed=self.url, scheduled=False)
        feed = self.reader.get_feed(self.url)
        assert feed.last_exception is None, feed.last_exception
        return list(self.reader.get_entries(feed=self.url))

    def reader_requests(self, at_least: int = 0) -> list[tuple[str, int]]:
        """(path, status) of every request the reader made, from the server's access log."""
        deadline = time.monotonic() + PATIENCE
        while True:  # gunicorn writes the line just after the response: wait for it
            text = self.access_log.read_text() if self.access_log.exists() else ""
            found = [(m["path"], int(m["status"])) for m in map(ACCESS_LINE.search, text.splitlines()) if m]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def served_ids(self) -> list[str]:
        return [e.id for e in feedparser.parse(self.server.fetch(self.path).body).entries]

    def wait_for_new_bytes(self, etag: str) -> None:
        """Poll until the server serves changed bytes (live reload picked the files up)."""
        wait_until(
            lambda: self.server.fetch(self.path).headers.get("etag") != etag,
            f"the server serving other bytes than ETag {etag} after the articles changed",
        )


@pytest.fixture(params=["rss", "atom"])
def subscription(
    request: pytest.FixtureRequest, tmp_path: Path, start_server: StartServer
) -> Iterator[Subscription]:
    config = harness.copy_demo_site(tmp_path / "site")
    access_log = tmp_path / "access.log"
    server = start_server(config, "reader", access_log=access_log)
    reader = make_reader(str(tmp_path / "db.sqlite"))
    subscription = Subscription(server, access_log, config.parent, f"/feeds/{FEED}.{request.param}", reader)
    reader.add_feed(subscription.url)
    yield subscription
    reader.close()


def ids_of(entries: list[Entry]) -> list[str]:
    return [e.id for e in entries]


def no_duplicates(entries: list[Entry]) -> None:
    duplicates = [i for i, n in Counter(ids_of(entries)).items() if n > 1]
    assert not duplicates, duplicates


def test_first_update_gets_every_entry_and_an_unchanged_feed_is_a_304(subscription: Subscription) -> None:
    expected = subscription.served_ids()
    assert len(expected) >= 10
    entries = subscription.update()
    no_duplicates(entries)
    assert sorted(ids_of(entries)) == sorted(expected)
    assert all(e.title and e.link and (e.published or e.updated) for e in entries)

    again = subscription.update()
    path = subscription.path
    requests = subscription.reader_requests(at_least=2)
    assert [r for r in requests if r[0] == path] == [(path, 200), (path, 304)], requests
    assert sorted(ids_of(again)) == sorted(expected)


def test_a_new_article_is_exactly_one_new_entry(subscription: Subscription) -> None:
    before = subscription.update()
    etag = subscription.server.fetch(subscription.path).headers["etag"]
    published = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()
    new = subscription.site / "articles" / "klima" / "reader-neu.md"
    new.write_text(
        f"---\nid: reader-neu\ntitle: Neu für den Reader\ndate: {published}\n"
        "topics: [Klima]\n---\nEin neuer Artikel, während der Reader abonniert ist.\n",
        encoding="utf-8",
    )
    subscription.wait_for_new_bytes(etag)

    after = subscription.update()
    no_duplicates(after)
    assert len(after) == len(before) + 1
    added = set(ids_of(after)) - set(ids_of(before))
    assert len(added) == 1
    entry = next(e for e in after if e.id in added)
    assert entry.id.endswith(":reader-neu") and entry.title == "Neu für den Reader"


def test_an_edited_article_changes_the_same_entry(subscription: Subscription) -> None:
    before = subscription.update()
    entry_id = next(i for i in ids_of(before) if i.endswith(f":{EDITED_ID}"))
    etag = subscription.server.fetch(subscription.path).headers["etag"]
    path = subscription.site / EDITED
    text = path.read_text(encoding="utf-8")
    edited = text.replace(
        "date: 2025-11-05T11:30:00+01:00\n",
        "date: 2025-11-05T11:30:00+01:00\nupdated: 2025-11-06T09:00:00+01:00\n",
    )
    assert edited != text
    path.write_text(edited + "\nKORREKTUR: Die Redaktion hat diesen Artikel ergänzt.\n", encoding="utf-8")
    subscription.wait_for_new_bytes(etag)

    after = subscription.update()
    no_duplicates(after)
    assert sorted(ids_of(after)) == sorted(ids_of(before))
    entry = next(e for e in after if e.id == entry_id)
    old = next(e for e in before if e.id == entry_id)
    contents = " ".join(c.value for c in entry.content) + (entry.summary or "")
    assert "KORREKTUR" in contents
    assert "KORREKTUR" not in " ".join(c.value for c in old.content)
    if subscription.url.endswith(".atom"):  # RSS has no element for the update time
        assert entry.updated == datetime(2025, 11, 6, 8, 0, tzinfo=UTC)


def requests_answered(server: harness.Server, path: str) -> Counter[int]:
    """Requests for ``path`` by status, from /metrics (one worker: counted before answering)."""
    found: Counter[int] = Counter()
    for line in server.fetch("/metrics").body.decode().splitlines():
        if line.startswith("feeds_requests_total{") and f'feed="{path.rpartition("/")[2]}"' in line:
            status = re.search(r'status="(\d+)"', line)
            assert status is not None, line
            found[int(status[1])] += int(float(line.rpartition(" ")[2]))
    return found


def test_reader_waits_as_long_as_retry_after_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reader honours Retry-After on a 429 in its scheduled updates (since 3.15; pyproject asks
    for 3.26). Its own interval is one minute here, and a 429 carries no max-age; once the
    budget refuses it, it asks again only after the seconds the server gave, not a minute later.
    reader's clock is moved (the server's is real: its 600 s do not pass during the test)."""
    config = harness.copy_demo_site(tmp_path / "site")
    config.write_text(
        config.read_text(encoding="utf-8") + "polling:\n  min_interval: 600\n", encoding="utf-8"
    )
    server = harness.start(
        lambda port: harness.production_command(port, 1),
        tmp_path / "server.log",
        config=config,
        state_dir=tmp_path / "state",
        timeout=PATIENCE,
    )
    reader = make_reader(str(tmp_path / "db.sqlite"))
    try:
        reader.set_tag((), reader.make_reader_reserved_name("update"), {"interval": 1})
        path = f"/feeds/{FEED}.atom"
        reader.add_feed(server.url(path))
        start = datetime.now(UTC)
        clock = [start]
        monkeypatch.setattr(reader, "_now", lambda: clock[0])

        reader.update_feeds()  # a new feed is due at once
        assert requests_answered(server, path) == {200: 1}
        clock[0] = start + timedelta(minutes=6)  # past max-age (300 s): it asks, conditionally
        reader.update_feeds()
        assert requests_answered(server, path) == {200: 1, 429: 1}
        feed = reader.get_feed(server.url(path))
        assert feed.last_exception is not None and "429" in feed.last_exception.value_str
        assert feed.update_after is not None
        assert feed.update_after >= clock[0] + timedelta(seconds=590)

        clock[0] = start + timedelta(minutes=11)  # its interval came round five times: it waits
        reader.update_feeds()
        assert requests_answered(server, path) == {200: 1, 429: 1}
        clock[0] = feed.update_after + timedelta(seconds=1)  # then it asks again
        reader.update_feeds()
        assert requests_answered(server, path) == {200: 1, 429: 2}
    finally:
        reader.close()
        harness.stop(server)
