"""Live reload in one process: files and config.yaml change under a running app (issue 5).

Every test here runs the real watcher (inotify via watchdog) against a site in tmp_path and
polls the Flask test client until the change shows, with a generous deadline (how soon a
change shows is the benchmark's and the soak's measure, not a test's: a busy machine must not
fail one); nothing sleeps for a fixed time except the short windows that check that something
does *not* happen.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import feedparser
import lxml.html
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

import feeds.bodies
import feeds.indexing
import feeds.records
import feeds.site
import feeds.sources
from feeds import create_app
from feeds.cli import cli
from feeds.errors import ConfigError
from feeds.site import Site
from feeds.watch import Watcher

from conftest import NOW, MakeSite
from support.waiting import PATIENCE

NOT_BEFORE = 0.3  # how long a half-written file is watched for not showing up

CONFIG = """\
site:
  title: Testseite
  url: https://news.example.org
  description: Eine kleine Testseite
  language: de
  timezone: Europe/Berlin
  author: Redaktion
articles: articles
defaults:
  limit: 50
  max_age: 300
topic_feeds: true
feeds:
  alle:
    title: Alle Meldungen
    description: Alles
  kurz:
    title: Kurz
    limit: 2
"""
EXTRA_FEED = "  extra:\n    title: EXTRA-FEED\n    topics: [politik]\n"
ALL_FEEDS = ("alle", "kurz", "politik", "klima")


def article(
    article_id: str,
    title: str,
    body: str = "Text.",
    *,
    date: str = "2025-12-01T08:00:00+01:00",
    topics: str = "[Politik]",
    extra: str = "",
) -> str:
    return f"---\nid: {article_id}\ntitle: {title}\ndate: {date}\ntopics: {topics}\n{extra}---\n{body}\n"


# --- helpers -------------------------------------------------------------------------------


def wait_for(condition: Callable[[], object], timeout: float = PATIENCE, what: str = "") -> float:
    """Poll until ``condition()`` is true; returns the seconds it took, fails at the deadline."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def stays(condition: Callable[[], object], seconds: float = NOT_BEFORE) -> None:
    """``condition()`` holds on every check for ``seconds``."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert condition()
        time.sleep(0.02)


@dataclass
class Live:
    app: Flask
    client: FlaskClient
    config: Path
    articles: Path
    now: list[datetime]

    @property
    def site(self) -> Site:
        return self.app.extensions["feeds"]

    def text(self, path: str) -> str:
        """The document's text, "" if it does not exist; any other answer fails the test."""
        response = self.client.get(path)
        assert response.status_code in (200, 404), f"{path}: {response.status}"
        return response.get_data(as_text=True) if response.status_code == 200 else ""

    def status(self, path: str) -> int:
        return self.client.get(path).status_code

    def entries(self, feed: str, fmt: str = "atom") -> list[feedparser.FeedParserDict]:
        response = self.client.get(f"/feeds/{feed}.{fmt}")
        assert response.status_code == 200
        parsed = feedparser.parse(response.get_data())
        assert not parsed.bozo, parsed.get("bozo_exception")
        return parsed.entries

    def titles(self, feed: str, fmt: str = "atom") -> list[str]:
        return [e.title for e in self.entries(feed, fmt)]

    def index_text(self) -> str:
        return lxml.html.fromstring(self.client.get("/").get_data()).text_content()

    def everywhere(self, marker: str, feeds: tuple[str, ...], page: str) -> bool:
        """``marker`` is in each feed (both formats), on the page and on the index."""
        return (
            all(marker in self.text(f"/feeds/{f}.{fmt}") for f in feeds for fmt in ("rss", "atom"))
            and marker in self.text(f"/articles/{page}")
            and marker in self.index_text()
        )

    def nowhere(self, marker: str, page: str) -> bool:
        documents = [self.text(f"/feeds/{f}.{fmt}") for f in self.site.specs for fmt in ("rss", "atom")]
        return (
            not any(marker in d for d in documents)
            and self.status(f"/articles/{page}") == 404
            and marker not in self.index_text()
        )

    def health(self) -> dict:
        response = self.client.get("/healthz")
        assert response.status_code == 200
        return response.get_json()

    def write_config(self, text: str) -> None:
        self.config.write_text(text, encoding="utf-8")


def _stop(app: Flask) -> None:
    app.extensions["feeds"].live.stop()


@pytest.fixture
def start(make_site: MakeSite, tmp_path: Path) -> Iterator[Callable[..., Live]]:
    apps: list[Flask] = []

    def start(
        watch: bool = True,
        state: str = "state",
        config: Path | None = None,
        clock_offset: timedelta = timedelta(),
    ) -> Live:
        if config is None:
            config = make_site(raw_config=CONFIG)
        now = [NOW + clock_offset]
        app = create_app(config, clock=lambda: now[0], watch=watch, state_dir=tmp_path / state)
        apps.append(app)
        return Live(app, app.test_client(), config, config.parent / "articles", now)

    yield start
    for app in apps:
        _stop(app)


@pytest.fixture
def live(start: Callable[..., Live]) -> Live:
    return start()


# --- articles come, change and go --------------------------------------------------------------


def test_a_new_article_appears_in_its_feeds_page_and_index(live: Live) -> None:
    assert live.status("/articles/neu") == 404
    (live.articles / "politik" / "neu.md").write_text(article("neu", "NEW-ARTICLE"), encoding="utf-8")
    wait_for(lambda: live.everywhere("NEW-ARTICLE", ("alle", "kurz", "politik"), "neu"), what="new article")
    assert "NEW-ARTICLE" not in live.text("/feeds/klima.atom")


def test_a_new_topic_gets_its_feed(live: Live) -> None:
    assert live.status("/feeds/wetter.rss") == 404
    (live.articles / "wetter.md").write_text(
        article("wetter", "WEATHER", topics="[Wetter]"), encoding="utf-8"
    )
    wait_for(lambda: "WEATHER" in live.text("/feeds/wetter.rss"), what="topic feed")


def test_an_edited_article_changes_and_keeps_its_entry_id(live: Live) -> None:
    path = live.articles / "politik" / "erster.md"
    before = {e.title: e.id for e in live.entries("alle")}
    assert "Erster Artikel" in before
    path.write_text(
        path.read_text()
        .replace("title: Erster Artikel", "title: EDITED-TITLE")
        .replace("Ein **Absatz**", "EDITED-BODY"),
        encoding="utf-8",
    )
    wait_for(lambda: live.everywhere("EDITED-TITLE", ("alle", "politik"), "erster"), what="edit")
    assert "EDITED-BODY" in live.text("/articles/erster")
    after = {e.title: e.id for e in live.entries("alle")}
    assert "Erster Artikel" not in after
    assert after["EDITED-TITLE"] == before["Erster Artikel"]
    assert "Erster Artikel" not in live.index_text()


def test_a_deleted_article_leaves_every_feed_page_and_index(live: Live) -> None:
    assert "Erster Artikel" in live.text("/feeds/politik.atom")
    (live.articles / "politik" / "erster.md").unlink()
    wait_for(lambda: live.nowhere("Erster Artikel", "erster"), what="deletion")
    assert live.status("/feeds/politik.atom") == 200  # zweiter is still there


def test_a_file_written_in_chunks_is_not_served_until_closed(live: Live) -> None:
    full = article("halb", "HALF-WRITTEN", "First half of the body. " + "x" * 2000 + " BODY-END")
    cut = full.index("x" * 100)
    with open(live.articles / "politik" / "halb.md", "w", encoding="utf-8") as fh:
        fh.write(full[:cut])
        fh.flush()
        os.fsync(fh.fileno())
        stays(
            lambda: (
                "HALF-WRITTEN" not in live.text("/feeds/alle.atom") and live.status("/articles/halb") == 404
            )
        )
        fh.write(full[cut:])
    wait_for(
        lambda: "BODY-END" in live.text("/articles/halb") and "HALF-WRITTEN" in live.text("/feeds/alle.atom"),
        what="article after close",
    )


def test_an_article_rewritten_in_place_keeps_its_old_version_until_closed(live: Live) -> None:
    path = live.articles / "politik" / "erster.md"
    old_feed, old_page = live.text("/feeds/alle.atom"), live.text("/articles/erster")
    assert "Ein <strong>Absatz</strong>" in old_page
    new = article(
        "erster",
        "REWRITTEN",
        "New first paragraph. " + "y" * 2000 + " NEW-END",
        date="2025-04-28T09:30:00+02:00",
    )
    with open(path, "w", encoding="utf-8") as fh:  # truncates: the old bytes are gone from disk
        fh.write(new[: new.index("y" * 100)])
        fh.flush()
        stays(lambda: live.text("/feeds/alle.atom") == old_feed and live.text("/articles/erster") == old_page)
        fh.write(new[new.index("y" * 100) :])
    wait_for(
        lambda: "NEW-END" in live.text("/articles/erster") and "REWRITTEN" in live.text("/feeds/alle.atom"),
        what="rewrite after close",
    )


def test_a_page_first_requested_while_its_file_is_rewritten_is_not_half_written(live: Live) -> None:
    """Bodies are read lazily: with a cold cache the index's (old) metadata meets new bytes.

    Found here first (old title served with the first half of the new body). Now no body of a
    version the index does not hold is ever used: the page asks to retry, the feed leaves the
    entry out and forbids caching that answer, and both are complete once the writer closes.
    """
    _cold_read_while_rewriting(live, stalled=False)


def test_a_stalled_writer_is_not_served_half_written(live: Live) -> None:
    """A writer that stalls mid-file (a slow ``rsync --inplace``, an upload over a slow link).

    Regression: the first fix judged by the file's mtime, so after SETTLE_SECONDS the
    half-written body was served under the old title (fixed in 3af7790).
    """
    _cold_read_while_rewriting(live, stalled=True)


def _cold_read_while_rewriting(live: Live, stalled: bool) -> None:
    path = live.articles / "politik" / "erster.md"
    new = article(
        "erster",
        "Erster Artikel",
        "Second version. " + "z" * 2000 + " NEW-END",
        date="2025-04-28T09:30:00+02:00",
    )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(new[: new.index("z" * 100)])
        fh.flush()
        if stalled:  # as if the last write was 10 s ago and the writer is still busy
            past = time.time() - 10
            os.utime(path, (past, past))
        page = live.client.get("/articles/erster")  # first request for this page in this process
        feed = live.client.get("/feeds/politik.atom")
        fh.write(new[new.index("z" * 100) :])
    assert page.status_code == 503, "a page without its complete body must not be a 200"
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Retry-After"] == "1"
    assert feed.status_code == 200 and feed.headers["Cache-Control"] == "no-store"
    assert "ETag" not in feed.headers and "Last-Modified" not in feed.headers
    parsed = feedparser.parse(feed.get_data())
    assert not parsed.bozo
    assert "Second version" not in feed.get_data(as_text=True), "half-written body served in the feed"
    assert all(e.get("content") and e.get("summary") for e in parsed.entries), "a hollow entry"
    assert not any(e.id.endswith(":erster") for e in parsed.entries)

    def finished() -> bool:  # 503 and uncacheable answers until the watcher has read the close
        answers = [live.client.get(p) for p in ("/articles/erster", "/feeds/politik.atom")]
        return all(r.status_code == 200 and "NEW-END" in r.get_data(as_text=True) for r in answers)

    wait_for(finished, what="the finished version")
    assert live.client.get("/feeds/politik.atom").headers["Cache-Control"].startswith("public")


def test_a_file_renamed_into_place_appears(live: Live) -> None:
    tmp = live.articles / "politik" / ".neu.md.tmp"
    tmp.write_text(article("umbenannt", "RENAMED-IN"), encoding="utf-8")
    stays(lambda: live.status("/articles/umbenannt") == 404, 0.15)  # dot files are ignored
    os.replace(tmp, live.articles / "politik" / "neu.md")
    wait_for(lambda: live.everywhere("RENAMED-IN", ("alle", "politik"), "umbenannt"), what="rename")


def test_a_replacement_renamed_over_an_article_shows_the_new_version(live: Live) -> None:
    tmp = live.articles / "politik" / ".erster.md.XyZ12"  # rsync's temp name
    tmp.write_text(article("erster", "RSYNC-VERSION", date="2025-04-28T09:30:00+02:00"), encoding="utf-8")
    os.replace(tmp, live.articles / "politik" / "erster.md")
    wait_for(lambda: live.everywhere("RSYNC-VERSION", ("alle", "politik"), "erster"), what="rename over")
    assert live.titles("alle").count("RSYNC-VERSION") == 1


def test_a_folder_moved_out_disappears_and_moved_back_within_the_tree_appears(live: Live) -> None:
    staging = live.articles / "_staging"  # ignored name, same tree: a DirMovedEvent
    os.rename(live.articles / "klima", staging)
    wait_for(
        lambda: live.status("/feeds/klima.rss") == 404 and live.nowhere("Dritter Artikel", "klima/dritter"),
        what="folder moved away",
    )
    os.rename(staging, live.articles / "umwelt")
    wait_for(
        lambda: (
            "Dritter Artikel" in live.text("/feeds/alle.rss")
            and live.status("/articles/umwelt/dritter") == 200
        ),
        what="folder moved back",
    )


def test_a_folder_moved_out_of_the_tree_disappears(live: Live, tmp_path: Path) -> None:
    os.rename(live.articles / "politik", tmp_path / "elsewhere")
    wait_for(
        lambda: live.nowhere("Erster Artikel", "erster") and live.nowhere("Zweiter Artikel", "zweiter"),
        what="folder moved out",
    )


def test_a_folder_moved_in_from_outside_the_tree_appears(live: Live, tmp_path: Path) -> None:
    """Regression (fixed in 8608064): a move from outside is a DirCreatedEvent; it was ignored."""
    outside = tmp_path / "incoming" / "wirtschaft"
    outside.mkdir(parents=True)
    (outside / "boerse.md").write_text(
        article("boerse", "MOVED-IN-FOLDER", topics="[Wirtschaft]"), encoding="utf-8"
    )
    os.rename(outside, live.articles / "wirtschaft")
    wait_for(lambda: "MOVED-IN-FOLDER" in live.text("/feeds/alle.rss"), what="folder moved in")
    assert live.everywhere("MOVED-IN-FOLDER", ("alle", "wirtschaft"), "boerse")


def test_a_file_moved_in_from_outside_the_tree_appears(live: Live, tmp_path: Path) -> None:
    """Regression (fixed in 8608064): ``mv ~/draft.md articles/`` is a FileCreatedEvent, no close."""
    outside = tmp_path / "draft.md"
    outside.write_text(article("verschoben", "MOVED-IN-FILE"), encoding="utf-8")
    os.rename(outside, live.articles / "politik" / "verschoben.md")
    wait_for(lambda: "MOVED-IN-FILE" in live.text("/feeds/alle.rss"), what="file moved in")


def test_a_file_created_and_deleted_at_once_leaves_no_trace(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    path = live.articles / "politik" / "kurzlebig.md"
    path.write_text(article("kurzlebig", "EPHEMERAL"), encoding="utf-8")
    path.unlink()
    (live.articles / "politik" / "marker.md").write_text(
        article("marker", "AFTER-EPHEMERAL"), encoding="utf-8"
    )
    wait_for(lambda: "AFTER-EPHEMERAL" in live.text("/feeds/alle.rss"), what="later article")
    assert "EPHEMERAL" not in live.text("/feeds/alle.rss").replace("AFTER-EPHEMERAL", "")
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


# --- config.yaml -------------------------------------------------------------------------------


def test_a_config_change_takes_effect(live: Live) -> None:
    assert live.status("/feeds/extra.rss") == 404
    live.write_config(CONFIG + EXTRA_FEED)
    wait_for(lambda: "EXTRA-FEED" in live.text("/feeds/extra.rss"), what="new feed")
    assert "Erster Artikel" in live.text("/feeds/extra.rss")
    # An editor that saves by renaming a temp file over config.yaml.
    tmp = live.config.with_name(".config.yaml.swp")
    tmp.write_text(CONFIG.replace("title: Kurz", "title: RENAMED-CONFIG"), encoding="utf-8")
    os.replace(tmp, live.config)
    wait_for(
        lambda: live.status("/feeds/extra.rss") == 404 and "RENAMED-CONFIG" in live.text("/feeds/kurz.rss"),
        what="config renamed into place",
    )


@pytest.mark.parametrize(
    "broken, line, words",
    [
        (CONFIG + "  extra:\n    title: X\n   limit: 5\n", 22, ["yaml"]),
        (CONFIG + "  extra:\n    title: X\n    topicz: [politik]\n", 22, ["unknown key", "topics"]),
    ],
    ids=["syntax", "unknown key"],
)
def test_a_broken_config_keeps_the_last_good_one_until_fixed(
    live: Live, broken: str, line: int, words: list[str]
) -> None:
    assert live.health()["status"] == "ok"
    before = live.text("/feeds/alle.rss")
    live.write_config(broken)
    wait_for(lambda: live.health()["status"] == "degraded", what="degraded")
    health = live.health()
    where = f"{live.config}:{line}"
    assert any(where in e for e in health["errors"]), health
    assert all(w in " ".join(health["errors"]).lower() for w in words), health
    assert "config" in health["reason"]
    assert live.text("/feeds/alle.rss") == before
    assert live.status("/feeds/extra.rss") == 404
    metrics = live.client.get("/metrics").get_data(as_text=True)
    assert _sample(metrics, "feeds_reload_errors_total") >= 1
    assert _sample(metrics, "feeds_config_degraded") == 1

    live.write_config(CONFIG + EXTRA_FEED)
    wait_for(
        lambda: live.health()["status"] == "ok" and live.status("/feeds/extra.rss") == 200,
        what="fixed config",
    )
    assert "errors" not in live.health()
    assert _sample(live.client.get("/metrics").get_data(as_text=True), "feeds_config_degraded") == 0


def _sample(exposition: str, name: str) -> float:
    for row in exposition.splitlines():
        if row.startswith(name + " ") or row.startswith(name + "{"):
            return float(row.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


BROKEN_START = CONFIG + "  extra:\n    titel: X\n"  # line 21: unknown key (did you mean title?)


def test_start_up_with_a_broken_config_fails_fast(make_site: MakeSite, tmp_path: Path) -> None:
    path = make_site(raw_config=BROKEN_START)
    with pytest.raises(ConfigError) as raised:
        create_app(path, watch=True, state_dir=tmp_path / "state")
    assert f"{path}:21" in str(raised.value)


@pytest.mark.parametrize("args", [["serve", "--port", "1"], ["check"], ["check", "--format", "json"]])
def test_cli_with_a_broken_config_exits_non_zero_with_file_and_line(
    make_site: MakeSite, args: list[str]
) -> None:
    path = make_site(raw_config=BROKEN_START)
    result = CliRunner().invoke(cli, ["--config", str(path), *args])
    assert result.exit_code != 0
    if "json" in args:
        problems = json.loads(result.stdout)["problems"]
        assert (problems[0]["file"], problems[0]["line"]) == (str(path), 21)
    else:
        assert f"{path}:21" in result.output


# --- unreadable and vanishing files -----------------------------------------------------------


def _deny(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Reading ``denied`` fails as it would for a file without read permission (tests run as root)."""
    real = feeds.records.read_source

    def read_source(root: Path, rel: str, max_bytes: int):  # type: ignore[no-untyped-def]
        if Path(root) / rel == denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(denied))
        return real(root, rel, max_bytes)

    for module in (feeds.records, feeds.bodies):  # every reader of article files
        if hasattr(module, "read_source"):
            monkeypatch.setattr(module, "read_source", read_source)


def test_an_unreadable_file_keeps_its_previous_good_version(
    start: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = start(watch=False)  # the test triggers the reload itself
    path = live.articles / "politik" / "erster.md"
    old = {p: live.text(p) for p in ("/feeds/alle.atom", "/feeds/politik.rss", "/articles/erster", "/")}
    assert "Erster Artikel" in old["/articles/erster"]
    path.write_text(path.read_text().replace("Erster Artikel", "UNREADABLE-VERSION"), encoding="utf-8")
    _deny(monkeypatch, path)
    assert live.site.apply(["politik/erster.md"]) is False
    # A later change elsewhere re-selects every document: still the old version of erster.
    (live.articles / "klima" / "neu.md").write_text(article("k", "OTHER", topics="[Klima]"), encoding="utf-8")
    assert live.site.apply(["klima/neu.md"]) is True
    for p in old:
        now = live.text(p)
        assert "Erster Artikel" in now and "UNREADABLE-VERSION" not in now, p
    problems = [str(p) for p in live.site.problems()]
    assert any("politik/erster.md" in p and "cannot read" in p for p in problems), problems
    monkeypatch.undo()
    assert live.site.apply(["politik/erster.md"]) is True
    assert "UNREADABLE-VERSION" in live.text("/articles/erster")


def test_a_file_deleted_between_listing_and_reading_gives_no_error(
    make_site: MakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = make_site(raw_config=CONFIG)
    victim = path.parent / "articles" / "politik" / "zweiter.md"
    real = feeds.indexing.scan

    def scan(root: Path) -> Iterator[feeds.sources.Listed]:
        listed = list(real(root))
        assert "politik/zweiter.md" in [found.rel for found in listed]
        for found in listed:
            if found.rel == "politik/zweiter.md":
                victim.unlink()  # gone after the listing, before the read
            yield found

    monkeypatch.setattr(feeds.indexing, "scan", scan)
    app = create_app(path, clock=lambda: NOW, watch=False, state_dir=tmp_path / "state")
    client = app.test_client()
    assert client.get("/articles/zweiter").status_code == 404
    assert client.get("/articles/erster").status_code == 200
    assert "Zweiter Artikel" not in client.get("/feeds/alle.rss").get_data(as_text=True)
    site: Site = app.extensions["feeds"]
    assert not any("zweiter" in str(p) for p in site.problems())
    assert site.apply(["politik/zweiter.md", "politik/never-there.md"]) is False
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


# --- validators ------------------------------------------------------------------------------


def _validators(client: FlaskClient, path: str) -> tuple[str, str, bytes]:
    response = client.get(path)
    assert response.status_code == 200
    return response.headers["ETag"], response.headers["Last-Modified"], response.get_data()


def test_etag_changes_whenever_bytes_change(live: Live) -> None:
    paths = ("/feeds/alle.rss", "/feeds/politik.atom", "/articles/erster")  # the index shows no bodies
    before = {p: _validators(live.client, p) for p in paths}
    index = _validators(live.client, "/")
    untouched = _validators(live.client, "/feeds/klima.atom")
    path = live.articles / "politik" / "erster.md"
    path.write_text(path.read_text().replace("Ein **Absatz**", "Ein geänderter **Absatz**"), encoding="utf-8")
    wait_for(lambda: "geänderter" in live.text("/articles/erster"), what="edit")
    for p in paths:
        etag, _, body = _validators(live.client, p)
        assert body != before[p][2] and etag != before[p][0], p
        gz = live.client.get(p, headers={"Accept-Encoding": "gzip"}).headers["ETag"]
        assert gz != etag and gz.startswith(etag[:-1]), p
    assert _validators(live.client, "/feeds/klima.atom") == untouched  # same bytes, same tag
    assert _validators(live.client, "/") == index


def _hide_newest(live: Live, how: str) -> None:
    path = live.articles / "politik" / "neu.md"
    if how == "deleted":
        path.unlink()
    else:
        path.write_text(article("neu", "NEWEST", extra="draft: true\n"), encoding="utf-8")


@pytest.mark.parametrize("how", ["deleted", "draft"])
def test_last_modified_never_goes_backwards(start: Callable[..., Live], how: str) -> None:
    live = start()
    (live.articles / "politik" / "neu.md").write_text(article("neu", "NEWEST"), encoding="utf-8")
    wait_for(
        lambda: "NEWEST" in live.text("/feeds/alle.rss") and "NEWEST" in live.index_text(), what="newest"
    )
    paths = ("/feeds/alle.rss", "/feeds/politik.atom", "/feeds/kurz.rss", "/")
    seen = {p: live.client.get(p) for p in paths}
    for p, response in seen.items():
        lm = response.headers["Last-Modified"]
        assert parsedate_to_datetime(lm) == datetime(2025, 12, 1, 7, 0, tzinfo=UTC), p
        assert live.client.get(p, headers={"If-Modified-Since": lm}).status_code == 304

    _hide_newest(live, how)
    wait_for(
        lambda: "NEWEST" not in live.text("/feeds/alle.rss") and "NEWEST" not in live.index_text(),
        what=f"newest {how}",
    )
    for p, response in seen.items():
        old_lm = parsedate_to_datetime(response.headers["Last-Modified"])
        again = live.client.get(p, headers={"If-Modified-Since": response.headers["Last-Modified"]})
        assert again.status_code == 200, p  # an If-Modified-Since-only reader gets the new document
        assert b"NEWEST" not in again.get_data()
        assert parsedate_to_datetime(again.headers["Last-Modified"]) > old_lm, p
        assert again.headers["ETag"] != response.headers["ETag"]


def test_two_apps_over_one_state_dir_report_the_same_last_modified(start: Callable[..., Live]) -> None:
    first = start()
    # Another worker whose clock reads a few seconds later: without the shared ledger it would
    # stamp the changed document with its own "now".
    second = start(config=first.config, clock_offset=timedelta(seconds=7))
    paths = ("/feeds/alle.rss", "/feeds/politik.atom", "/")
    for live in (first, second):  # both serve these documents already, as busy workers do
        for p in paths:
            _validators(live.client, p)
    (first.articles / "politik" / "neu.md").write_text(article("neu", "NEWEST"), encoding="utf-8")
    for live in (first, second):
        wait_for(
            lambda live=live: "NEWEST" in live.text("/feeds/alle.rss") and "NEWEST" in live.index_text(),
            what="newest",
        )
    before = {p: _validators(first.client, p)[:2] for p in paths}
    assert before == {p: _validators(second.client, p)[:2] for p in paths}

    (first.articles / "politik" / "neu.md").unlink()
    for live in (first, second):
        wait_for(
            lambda live=live: (
                "NEWEST" not in live.text("/feeds/alle.rss") and "NEWEST" not in live.index_text()
            ),
            what="deleted",
        )
    after_first = {p: _validators(first.client, p)[:2] for p in paths}
    after_second = {p: _validators(second.client, p)[:2] for p in paths}
    assert after_first == after_second
    for p in paths:
        assert parsedate_to_datetime(after_first[p][1]) > parsedate_to_datetime(before[p][1])
    # A restart over the same state folder keeps the dates too.
    third = start(watch=False, config=first.config, clock_offset=timedelta(seconds=30))
    assert {p: _validators(third.client, p)[:2] for p in paths} == after_first


def test_a_worker_that_applies_a_burst_in_two_steps_agrees_on_last_modified(
    start: Callable[..., Live],
) -> None:
    """Workers that batch a burst of changes differently converge on one Last-Modified.

    Worker A reads files a and b in one batch and stamps the new feed with its natural date.
    Worker B (same files, same state folder) reads a, renders, then reads b: its intermediate
    document is a version A never served, so the final one (A's ETag) must date after it for
    B's readers. The ledger records that date for the ETag, and A, which re-reads the date of
    the document it serves every second, adopts it: same bytes, same validators.
    """
    first = start()  # watching: reads a and b together
    second = start(watch=False, config=first.config, clock_offset=timedelta(seconds=7))
    for live in (first, second):
        _validators(live.client, "/feeds/alle.rss")
    (first.articles / "politik" / "a.md").write_text(
        article("a", "BURST-A", date="2025-12-01"), encoding="utf-8"
    )
    (first.articles / "politik" / "b.md").write_text(
        article("b", "BURST-B", date="2025-12-02"), encoding="utf-8"
    )
    wait_for(
        lambda: "BURST-A" in first.text("/feeds/alle.rss") and "BURST-B" in first.text("/feeds/alle.rss"),
        what="burst",
    )
    second.site.apply(["politik/a.md"])
    assert "BURST-A" in second.text("/feeds/alle.rss")
    second.site.apply(["politik/b.md"])
    b = _validators(second.client, "/feeds/alle.rss")
    wait_for(lambda: _validators(first.client, "/feeds/alle.rss") == b, what="converged validators")


def test_a_worker_that_served_nothing_while_an_article_came_and_went_agrees_after(
    start: Callable[..., Live],
) -> None:
    """Regression (fixed in 3af7790): bytes that return to a cached version kept their old date.

    Both workers serve the feed. An article is added and deleted again; readers asked only the
    first worker in between. The first worker stamped the reverted bytes with a new date (the
    ledger saw the article's version in between), but the second found its cached document's
    fingerprint unchanged and served it with the old, earlier date without asking the ledger:
    a reader that saw the article and asked the second worker with If-Modified-Since got 304
    and kept the deleted article.
    """
    first = start(watch=False)  # both apply the same changes, by hand, at the same moments
    second = start(watch=False, config=first.config)
    path = "/feeds/politik.atom"
    for live in (first, second):
        _validators(live.client, path)
    added = first.articles / "politik" / "neu.md"
    added.write_text(article("neu", "NEWEST"), encoding="utf-8")
    for live in (first, second):
        live.site.apply(["politik/neu.md"])
    seen = first.client.get(path)  # a reader, via the first worker
    assert b"NEWEST" in seen.get_data()
    added.unlink()
    for live in (first, second):
        live.site.apply(["politik/neu.md"])
    a, b = _validators(first.client, path), _validators(second.client, path)
    assert a[2] == b[2] and a[0] == b[0]
    assert a[1] == b[1], "same bytes and ETag, different Last-Modified"
    again = second.client.get(path, headers={"If-Modified-Since": seen.headers["Last-Modified"]})
    assert again.status_code == 200, "304 for a reader who still holds the deleted article"


def test_an_embargoed_article_appears_when_the_clock_passes_its_date(live: Live) -> None:
    lifts = datetime(2030, 1, 1, 7, 0, tzinfo=UTC)  # conftest's sperrfrist.md
    assert "EMBARGO-SECRET" not in live.text("/feeds/alle.atom")
    before = _validators(live.client, "/feeds/alle.atom")
    generation = live.site.live.snapshot.generation
    live.now[0] = lifts - timedelta(seconds=1)
    assert "EMBARGO-SECRET" not in live.text("/feeds/alle.atom")
    live.now[0] = lifts
    for fmt in ("rss", "atom"):
        assert live.titles("alle", fmt)[0].startswith("EMBARGO-SECRET")
    assert "EMBARGO-SECRET" in live.index_text()
    assert live.status("/articles/klima/sperrfrist") == 200
    after = _validators(live.client, "/feeds/alle.atom")
    assert after[0] != before[0]
    assert parsedate_to_datetime(after[1]) > parsedate_to_datetime(before[1])
    assert live.site.live.snapshot.generation == generation  # no file event was needed
    since = live.client.get(
        "/feeds/alle.atom",
        headers={"If-Modified-Since": format_datetime(parsedate_to_datetime(before[1]), usegmt=True)},
    )
    assert since.status_code == 200


# --- memory under change ---------------------------------------------------------------------


def test_replaced_documents_are_not_kept_alive(start: Callable[..., Live]) -> None:
    """Regression (fixed in 3af7790): every document version served stayed in memory (up to 8192).

    http.DocumentApp cached header lists keyed by ``id(doc)``, holding the document itself; a
    replaced document's entry was never dropped, so its body and gzip bytes stayed alive. Each
    worker grew from about 60 MB to 160 MB in the 3-minute soak (bench/SOAK.md).
    """
    live = start(watch=False)
    path = live.articles / "politik" / "erster.md"
    urls = ("/", "/feeds/alle.rss", "/feeds/alle.atom", "/feeds/politik.rss", "/articles/erster")
    for n in range(40):
        path.write_text(path.read_text() + f"\nMEMORY-EDIT-{n}.\n", encoding="utf-8")
        assert live.site.apply(["politik/erster.md"])
        for url in urls:
            assert live.client.get(url).status_code == 200
    gc.collect()
    alive = [  # versions made by this test (other tests' apps may still be alive in this process)
        o for o in gc.get_objects() if isinstance(o, feeds.site.Document) and b"MEMORY-EDIT-0." in o.body
    ]
    assert len(alive) <= 3 * len(urls), f"{len(alive)} documents alive for {len(urls)} URLs"


def test_changes_made_while_the_index_was_loading_are_not_missed(make_site: MakeSite, tmp_path: Path) -> None:
    """A worker reads its index before its watcher starts (seconds at 100,000 articles, or in
    another process before a fork): an edit, a new file, a deletion or a pipe made in that window
    must reach it without the files being touched again."""
    from feeds.watch import Watcher

    path = make_site(raw_config=CONFIG)
    app = create_app(path, clock=lambda: NOW, watch=False, state_dir=tmp_path / "state")
    client = app.test_client()
    articles = path.parent / "articles"
    erster = articles / "politik" / "erster.md"
    erster.write_text(
        erster.read_text(encoding="utf-8").replace("Erster Artikel", "WHILE-LOADING"), encoding="utf-8"
    )
    (articles / "politik" / "neu.md").write_text(article("neu", "NEW-WHILE-LOADING"), encoding="utf-8")
    (articles / "politik" / "zweiter.md").unlink()
    assert "WHILE-LOADING" not in client.get("/feeds/alle.atom").get_data(as_text=True)
    site = app.extensions["feeds"]
    watcher = Watcher(site.config_path, site.config.articles_dir)
    site.live.forked(watcher)  # as in a worker forked after the index was read: no early events
    try:
        wait_for(
            lambda: (
                "WHILE-LOADING" in (feed := client.get("/feeds/alle.atom").get_data(as_text=True))
                and "NEW-WHILE-LOADING" in feed
                and client.get("/articles/zweiter").status_code == 404
            ),
            what="changes made before the watcher started",
        )
    finally:
        site.live.stop()


def test_a_change_made_just_after_the_index_was_read_is_not_missed(
    make_site: MakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the benchmark: the slower of two workers served an edit made during its start-up
    only after the next change. The observer now starts before the articles are read."""
    import feeds.app

    path = make_site(raw_config=CONFIG)
    erster = path.parent / "articles" / "politik" / "erster.md"
    real = feeds.app.open_site

    def load_then_edit(*args, **kwargs):  # type: ignore[no-untyped-def]
        site = real(*args, **kwargs)  # the index holds the old version now
        erster.write_text(
            erster.read_text(encoding="utf-8").replace("Erster Artikel", "JUST-AFTER"), encoding="utf-8"
        )
        return site

    monkeypatch.setattr(feeds.app, "open_site", load_then_edit)
    app = create_app(path, clock=lambda: NOW, watch=True, state_dir=tmp_path / "state")
    try:
        client = app.test_client()
        wait_for(
            lambda: "JUST-AFTER" in client.get("/feeds/alle.atom").get_data(as_text=True), what="the edit"
        )
    finally:
        _stop(app)


def test_a_config_that_is_a_switched_release_link_is_followed(make_site: MakeSite, tmp_path: Path) -> None:
    """``config.yaml -> releases/c1.yaml``, then ``ln -s releases/c2.yaml t && mv -T t config.yaml``:
    the config the path names now is the one served, though no event touched the file watched."""
    path = make_site(raw_config=CONFIG)
    releases = path.parent / "releases"
    releases.mkdir()
    (releases / "c1.yaml").write_text(CONFIG, encoding="utf-8")
    (releases / "c2.yaml").write_text(
        CONFIG.replace("title: Testseite", "title: Zweite Fassung"), encoding="utf-8"
    )
    path.unlink()
    path.symlink_to(releases / "c1.yaml")
    app = create_app(path, clock=lambda: NOW, watch=True, notify=False, state_dir=tmp_path / "state")
    site = app.extensions["feeds"]
    try:
        assert site.config.title == "Testseite"
        link = path.parent / "config.next"
        link.symlink_to(releases / "c2.yaml")
        os.replace(link, path)
        assert site.live.wait(lambda s: s.config.title == "Zweite Fassung", PATIENCE), (
            "the new release was never read"
        )
        assert "Zweite Fassung" in app.test_client().get("/").get_data(as_text=True)
    finally:
        site.close()


def test_the_articles_folder_swapped_for_another_is_followed_deletions_included(
    make_site: MakeSite, tmp_path: Path
) -> None:
    path = make_site(raw_config=CONFIG)
    articles = path.parent / "articles"
    fresh = path.parent / "articles.new"
    fresh.mkdir()
    (fresh / "politik").mkdir()
    (fresh / "politik" / "neu.md").write_text(article("neu", "NEW-IN-THE-SWAP"), encoding="utf-8")
    app = create_app(path, clock=lambda: NOW, watch=True, notify=False, state_dir=tmp_path / "state")
    site, client = app.extensions["feeds"], app.test_client()
    try:
        assert client.get("/articles/erster").status_code == 200
        os.rename(articles, path.parent / "articles.old")
        assert site.live.wait(lambda s: "articles" in " ".join(s.degraded), PATIENCE)
        assert client.get("/articles/erster").status_code == 200  # the last good site meanwhile
        assert client.get("/healthz").get_json()["status"] == "degraded"
        os.rename(fresh, articles)
        assert site.live.wait(lambda s: not s.degraded and s.articles == 1, PATIENCE), (
            "the new folder was never read"
        )
        assert client.get("/articles/erster").status_code == 404
        assert "NEW-IN-THE-SWAP" in client.get("/feeds/alle.atom").get_data(as_text=True)
        assert client.get("/healthz").get_json()["status"] == "ok"
    finally:
        site.close()


def test_reading_the_config_is_no_reason_to_reload_it(
    make_site: MakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every worker reads config.yaml when it reloads: if a read (a close without writing) made
    the others reload, two workers would bounce reloads between them for ever."""
    import feeds.live

    path = make_site(raw_config=CONFIG)
    app = create_app(path, clock=lambda: NOW, watch=True, notify=False, state_dir=tmp_path / "state")
    site = app.extensions["feeds"]
    loads: list[Path] = []
    real = feeds.live.load_config
    monkeypatch.setattr(feeds.live, "load_config", lambda p: loads.append(p) or real(p))
    try:
        for _ in range(5):
            path.read_bytes()  # as another worker's reload reads it
        generation = site.live.snapshot.generation
        (path.parent / "articles" / "politik" / "neu.md").write_text(article("neu", "AFTER-THE-READS"))
        assert site.live.wait(lambda s: s.generation > generation, PATIENCE), "the edit was never applied"
        assert loads == []
    finally:
        site.close()


def test_a_config_refused_while_its_articles_folder_was_gone_is_taken_once_it_is_back(
    make_site: MakeSite, tmp_path: Path
) -> None:
    path = make_site(raw_config=CONFIG)
    app = create_app(path, clock=lambda: NOW, watch=True, notify=False, state_dir=tmp_path / "state")
    site = app.extensions["feeds"]
    articles = path.parent / "articles"
    try:
        articles.rename(path.parent / "away")
        assert site.live.wait(lambda s: bool(s.degraded), PATIENCE)
        path.write_text(CONFIG.replace("title: Testseite", "title: Neuer Titel"), encoding="utf-8")
        assert site.live.wait(lambda s: s.config_error is not None, PATIENCE)  # "folder does not exist"
        (path.parent / "away").rename(articles)
        assert site.live.wait(
            lambda s: s.config_error is None and not s.degraded and s.config.title == "Neuer Titel", PATIENCE
        ), "the config stayed refused after the folder came back"
        assert app.test_client().get("/healthz").get_json()["status"] == "ok"
    finally:
        site.close()


def test_a_background_upgrade_keeps_the_events_flowing_and_then_sees_opens(tmp_path: Path) -> None:
    """After the check of a large archive the watches are redone to see open events too; that
    lists the whole tree, so it happens beside the writer, which takes events meanwhile."""
    folder = tmp_path / "articles"
    (folder / "politik").mkdir(parents=True)
    watcher = Watcher(tmp_path / "config.yaml", folder)
    watcher.watch(opens=False)
    try:
        watcher.upgrade(background=True)
        (folder / "politik" / "neu.md").write_text("---\ntitle: Neu\n---\nText\n", encoding="utf-8")
        deadline = time.monotonic() + PATIENCE
        seen: list[str] = []
        while not any(path.endswith("neu.md") for path in seen) and time.monotonic() < deadline:
            seen += [event.path for event in watcher.gather(0.1)]
        assert any(path.endswith("neu.md") for path in seen)  # from either observer
        opened = str(folder / "politik" / "offen.md")
        while time.monotonic() < deadline:
            with open(opened, "w", encoding="utf-8") as handle:
                handle.write("x")
            watcher.gather(0.05)  # the writer's tick: takes the new observer once it is built
            if watcher.opened_recently(opened):
                break
        assert watcher.opened_recently(opened)
    finally:
        watcher.stop()
