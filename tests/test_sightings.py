"""Who reads each feed: requests noted by the server, access logs, and the audience file they fill.

In-process first (two Sightings over one file stand for two workers, a clock the test moves), then
through the real production server (granian, two workers) with the User-Agents hosted readers
really send, and through real Varnish with the shipped VCL, counted from real ``varnishncsa`` output.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_audience import RECORDED
from test_cache import Stack, program

from feeds import create_app, sightings
from feeds.audience import FEED_IDS, MAX_SUBSCRIBERS, Report, parse_agent
from feeds.cli import cli
from feeds.sightings import Sightings, count_logs, read_log
from feeds.store import AudienceStore
from feeds.store import audience as store_audience

from conftest import NOW, MakeSite
from support import harness
from support.waiting import wait_until

FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 131 subscribers; )"
FEEDBIN = "Feedbin feed-id:1234 - 56 subscribers"
NEWSBLUR = (
    "NewsBlur Feed Fetcher - 12 subscribers - https://www.newsblur.com/site/1234/beispiel "
    '("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) '
    'Version/14.0.1 Safari/605.1.15")'
)
INOREADER = "Inoreader/1.0 (+http://www.inoreader.com/feed-fetcher; 7 subscribers; )"
OLD_READER = "Mozilla/5.0 (compatible; theoldreader.com; 3 subscribers; feed-id=cead6c3a837650eeefd8fe4a)"
TTRSS = "Tiny Tiny RSS/23.05-a4543de (Unsupported) (https://tt-rss.org/)"
MINIFLUX = "Mozilla/5.0 (compatible; Miniflux/2.1.3; +https://miniflux.app)"
FETCHERS = {
    "feedly": FEEDLY,
    "feedbin": FEEDBIN,
    "newsblur": NEWSBLUR,
    "inoreader": INOREADER,
    "theoldreader": OLD_READER,
}
EXPECTED = {"feedly": 131, "feedbin": 56, "newsblur": 12, "inoreader": 7, "theoldreader": 3}


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def env(agent: str, address: str = "192.0.2.1") -> dict[str, str]:
    return {"HTTP_USER_AGENT": agent, "REMOTE_ADDR": address}


def worker(tmp_path: Path, clock: Clock) -> Sightings:
    return Sightings(AudienceStore(tmp_path / "state" / "audience.sqlite"), clock)


# -- one worker, then two -----------------------------------------------------------------------


def test_readers_count_once_a_day_and_fetchers_as_they_report(tmp_path: Path) -> None:
    seen = worker(tmp_path, Clock())
    for _ in range(3):  # polling again is not another reader
        seen.note("feed", "alle.rss", env(TTRSS, "192.0.2.1"))
    seen.note("feed", "alle.rss", env(TTRSS, "192.0.2.2"))  # another address
    seen.note("feed", "alle.atom", env(MINIFLUX, "192.0.2.1"))  # another client on the same one
    seen.note("feed", "alle.rss", env("", ""))  # no User-Agent, no address: still one reader
    seen.note("page", "", env(TTRSS, "192.0.2.9"))  # not a feed
    seen.note("archive", "alle", env(TTRSS, "192.0.2.9"))  # an archive page is not a subscription
    for agent in FETCHERS.values():
        seen.note("feed", "alle.rss", env(agent, "198.51.100.1"))
    seen.note("feed", "klima.json", env(FEEDLY, "198.51.100.1"))
    seen.flush()
    assert seen.current() == {
        ("alle", "direct"): 4,
        **{("alle", source): n for source, n in EXPECTED.items()},
        ("klima", "feedly"): 131,
    }


def test_a_fetcher_counts_per_url_or_feed_id_and_its_latest_report_wins(tmp_path: Path) -> None:
    clock = Clock()
    seen = worker(tmp_path, clock)
    seen.note("feed", "alle.rss", env(FEEDLY))
    seen.note("feed", "alle.atom", env(FEEDLY.replace("131", "20")))  # no feed id: per URL
    seen.note("feed", "alle.rss", env("Feedbin feed-id:1 - 5 subscribers"))
    seen.note("feed", "alle.atom", env("Feedbin feed-id:2 - 6 subscribers"))
    seen.flush()
    assert seen.current() == {("alle", "feedly"): 151, ("alle", "feedbin"): 11}
    clock.now += timedelta(hours=1)
    seen.note("feed", "alle.rss", env(FEEDLY.replace("131", "125")))  # some unsubscribed
    seen.flush()
    assert seen.current()[("alle", "feedly")] == 145


def test_a_report_counts_the_next_day_and_readers_start_again(tmp_path: Path) -> None:
    clock = Clock()
    seen = worker(tmp_path, clock)
    seen.note("feed", "alle.rss", env(FEEDLY))
    seen.note("feed", "alle.rss", env(TTRSS))
    seen.flush()
    clock.now += timedelta(days=1)
    seen.flush()
    assert seen.current() == {("alle", "feedly"): 131}  # yesterday's report, no reader yet today
    clock.now += timedelta(days=1)
    seen.flush()
    assert seen.current() == {}
    history = seen.store.counts()
    assert history == {(NOW.date(), "alle", "feedly"): 131, (NOW.date(), "alle", "direct"): 1}


def test_workers_share_the_days_key_and_forget_it_when_the_day_ends(tmp_path: Path) -> None:
    clock = Clock()
    one, two = worker(tmp_path, clock), worker(tmp_path, clock)
    one.note("feed", "alle.rss", env(TTRSS))
    two.note("feed", "alle.rss", env(TTRSS))  # the same reader, answered by the other worker
    two.note("feed", "alle.rss", env(FEEDBIN))
    one.flush()
    two.flush()
    assert one.current() == two.current() == {("alle", "direct"): 1, ("alle", "feedbin"): 56}
    path = tmp_path / "state" / "audience.sqlite"
    with sqlite3.connect(path) as db:
        assert [d for (d,) in db.execute("SELECT day FROM keys")] == [NOW.date().isoformat()]
    clock.now += timedelta(days=1)
    one.note("feed", "alle.rss", env(TTRSS))
    one.flush()
    with sqlite3.connect(path) as db:  # yesterday's hashes can no longer be linked to anyone
        assert [d for (d,) in db.execute("SELECT day FROM keys")] == [clock.now.date().isoformat()]
        assert {d for (d,) in db.execute("SELECT day FROM visitors")} == {clock.now.date().isoformat()}
    assert one.store.counts()[(NOW.date(), "alle", "direct")] == 1


def test_client_addresses_are_never_stored(tmp_path: Path) -> None:
    seen = worker(tmp_path, Clock())
    for i in range(50):
        seen.note("feed", "alle.rss", env(TTRSS, f"203.0.113.{i}"))
    seen.note("feed", "alle.rss", env(TTRSS, "2001:db8::77"))
    seen.flush()
    assert seen.current() == {("alle", "direct"): 51}
    seen.store.close()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir())
    assert b"203.0.113." not in stored and b"2001:db8" not in stored
    assert TTRSS.encode() not in stored  # nor the User-Agents of direct readers


def test_the_thread_writes_sightings_without_being_asked(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    seen = worker(tmp_path, Clock())
    seen.note("feed", "alle.rss", env(INOREADER))
    wait_until(lambda: seen.current() == {("alle", "inoreader"): 7}, "the sighting written by feeds-audience")
    (thread,) = [t for t in threading.enumerate() if t not in before and t.name == "feeds-audience"]
    seen.close()
    assert not thread.is_alive()


# -- bounds ----------------------------------------------------------------------------------------


def test_past_the_queue_bound_sightings_are_dropped_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sightings, "PENDING", 10)
    seen = worker(tmp_path, Clock())
    seen._thread = threading.current_thread()  # no flushing thread: the queue fills
    for i in range(25):
        seen.note("feed", "alle.rss", env(TTRSS, f"192.0.2.{i}"))
    with caplog.at_level(logging.WARNING):
        seen.flush()
    assert seen.current() == {("alle", "direct"): 10}
    assert "15 feed requests came faster than they could be counted" in caplog.text


def test_past_the_readers_bound_a_day_counts_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(store_audience, "VISITORS", 100)
    seen = worker(tmp_path, Clock())
    with caplog.at_level(logging.WARNING):
        for batch in range(3):
            for i in range(60):
                seen.note("feed", "alle.rss", env(TTRSS, f"10.0.{batch}.{i}"))
            seen.flush()
    assert seen.current() == {("alle", "direct"): 100}
    assert caplog.text.count("has 100 direct readers; more are not counted that day") == 1


def test_a_fetcher_naming_endless_feed_ids_is_bounded(tmp_path: Path) -> None:
    seen = worker(tmp_path, Clock())
    for i in range(FEED_IDS * 3):
        seen.note("feed", "alle.rss", env(f"Feedbin feed-id:{i} - 9999999 subscribers"))
    seen.flush()
    assert seen.current() == {("alle", "feedbin"): MAX_SUBSCRIBERS}
    with sqlite3.connect(tmp_path / "state" / "audience.sqlite") as db:
        assert db.execute("SELECT count(*) FROM reports").fetchone() == (FEED_IDS,)


def test_counts_are_kept_400_days(tmp_path: Path) -> None:
    store = AudienceStore(tmp_path / "audience.sqlite")
    today = NOW.date()
    store.merge({(today - timedelta(days=d), "alle", "direct"): d + 1 for d in range(0, 500, 50)})
    store.settle(today)
    assert sorted(d for d, _, _ in store.counts()) == [today - timedelta(days=d) for d in range(350, -1, -50)]


# -- a hostile state folder ------------------------------------------------------------------------


def test_an_audience_file_that_is_a_symlink_is_never_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "elsewhere.sqlite"
    target.write_bytes(b"not yours")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "audience.sqlite").symlink_to(target)
    seen = worker(tmp_path, Clock())
    with caplog.at_level(logging.WARNING):
        seen.note("feed", "alle.rss", env(FEEDLY))
        seen.flush()
    assert seen.current() == {("alle", "feedly"): 131}  # counted in memory
    assert target.read_bytes() == b"not yours"
    assert "symbolic link" in caplog.text and "kept in memory" in caplog.text


def test_a_foreign_database_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audience.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (name TEXT)")
    before = path.read_bytes()
    seen = worker(tmp_path, Clock())
    seen.note("feed", "alle.rss", env(FEEDLY))
    seen.flush()
    assert seen.current() == {("alle", "feedly"): 131}
    assert path.read_bytes() == before


def test_forged_rows_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = AudienceStore(tmp_path / "audience.sqlite")
    day = NOW.date().isoformat()
    store.merge({(NOW.date(), "alle", "direct"): 3})
    store.close()
    with sqlite3.connect(tmp_path / "audience.sqlite") as db:
        db.executemany(
            "INSERT INTO counts VALUES (?, ?, ?, ?, ?)",
            [
                (day, "alle", "feedly", "log", 10**15),  # absurd
                (day, "alle", "feedly", "server", "many"),  # not a number
                ("yesterday", "alle", "direct", "log", 1),  # not a day
                (day, "<script>", "direct", "log", 1),  # not a feed name
                (day, "alle", "evil", "log", 1),  # not a source
            ],
        )
        db.execute("INSERT INTO reports VALUES (?, 'alle', 'feedly', 'x', ?, 0)", (day, -5))
        db.execute("INSERT INTO keys VALUES (?, ?)", (day, "short"))
    with caplog.at_level(logging.WARNING):
        assert store.counts() == {(NOW.date(), "alle", "direct"): 3}
        assert store.current(NOW.date()) == {("alle", "direct"): 3}
    assert "ignoring a malformed row" in caplog.text
    assert len(store.key(NOW.date())) == 32  # a planted key of the wrong shape is replaced


# -- access logs -----------------------------------------------------------------------------------


def line(
    agent: str,
    path: str = "/feeds/alle.rss",
    *,
    address: str = "192.0.2.1",
    at: str = "01/Jan/2026:12:00:00 +0000",
    status: int = 200,
    method: str = "GET",
) -> str:
    return f'{address} - - [{at}] "{method} {path} HTTP/1.1" {status} 100 "-" "{agent}"\n'


def feed_of(path: str) -> tuple[str, str] | None:
    name, _, fmt = path.removeprefix("/feeds/").partition(".")
    known = path.startswith("/feeds/") and name in ("alle", "klima") and fmt in ("rss", "atom", "json")
    return (name, fmt) if known else None


def test_logs_are_counted_as_the_server_counts_requests() -> None:
    lines = [
        line(TTRSS),
        line(TTRSS),
        line(TTRSS, address="192.0.2.2"),
        line(MINIFLUX, "/feeds/klima.atom"),
        line(FEEDLY, at="31/Dec/2025:12:00:00 +0000"),  # yesterday's report counts today too
        line(FEEDLY.replace("131", "140"), at="01/Jan/2026:00:30:00 +0100"),  # still 31 Dec in UTC
        line(FEEDBIN, "/feeds/alle.atom"),
        line(TTRSS, address="192.0.2.3", status=404),  # not answered
        line(TTRSS, address="192.0.2.3", method="POST"),
        line(TTRSS, "/feeds/unbekannt.rss", address="192.0.2.4"),
        line(TTRSS, "/feeds/alle", address="192.0.2.5"),  # the feed's page
        line(TTRSS, address="192.0.2.6", at="01/Jan/2020:12:00:00 +0000"),  # older than kept
        "not a log line\n",
        "x" * 10_000 + "\n",
    ]
    found = count_logs([("access.log", iter(lines))], feed_of, NOW.date())
    assert found.counts == {
        (date(2025, 12, 31), "alle", "feedly"): 140,
        (NOW.date(), "alle", "feedly"): 140,
        (NOW.date(), "alle", "direct"): 2,
        (NOW.date(), "alle", "feedbin"): 56,
        (NOW.date(), "klima", "direct"): 1,
    }
    assert (found.lines, found.counted, found.malformed, found.outside) == (14, 7, 2, 1)


def test_files_given_newest_first_count_the_same() -> None:
    old = [line(FEEDLY.replace("131", "100"), at="01/Jan/2026:01:00:00 +0000"), line(TTRSS)]
    new = [line(FEEDLY, at="01/Jan/2026:11:00:00 +0000"), line(TTRSS)]
    ordered = count_logs([("a", iter(old)), ("b", iter(new))], feed_of, NOW.date()).counts
    assert ordered == count_logs([("b", iter(new)), ("a", iter(old))], feed_of, NOW.date()).counts
    assert ordered[(NOW.date(), "alle", "feedly")] == 131
    assert ordered[(NOW.date(), "alle", "direct")] == 1


def test_read_log_takes_gzip_and_bounds_lines(tmp_path: Path) -> None:
    plain, packed = tmp_path / "access.log", tmp_path / "access.log.2.gz"
    plain.write_text(line(TTRSS) + "y" * 100_000 + "\n" + line(FEEDLY), encoding="utf-8")
    packed.write_bytes(gzip.compress(line(FEEDBIN).encode()))
    lines = list(read_log(plain))
    assert len(lines) == 3 and len(lines[1]) <= sightings.LOG_LINE_BYTES + 1 and lines[2] == line(FEEDLY)
    assert list(read_log(packed)) == [line(FEEDBIN)]


def test_read_log_refuses_what_is_not_a_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        list(read_log(fifo))  # and never waits for a writer
    with pytest.raises(IsADirectoryError):
        list(read_log(tmp_path))


# -- the command, in-process -----------------------------------------------------------------------


def test_stats_reads_logs_and_reading_them_again_counts_nobody_twice(
    make_site: MakeSite, tmp_path: Path
) -> None:
    config = make_site()
    today = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    log_file = tmp_path / "access.log"
    log_file.write_text(
        line(TTRSS, at=today) + line(FEEDLY, at=today) + line(TTRSS, "/feeds/politik.json", at=today)
    )
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(
            cli, ["--config", str(config), "stats", "--format", "json", "--log", str(log_file)]
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["log"] == {"files": 1, "lines": 3, "counted": 3, "malformed": 0, "outside": 0}
        assert {f["feed"]: (f["today"], f["sources"]) for f in report["feeds"]} == {
            "alle": (132, {"feedly": 131, "direct": 1}),
            "politik": (1, {"direct": 1}),
        }


def test_stats_names_a_log_it_cannot_read(make_site: MakeSite, tmp_path: Path) -> None:
    config = make_site()
    broken = tmp_path / "access.log.1.gz"
    broken.write_bytes(gzip.compress(line(TTRSS).encode() * 100)[:40])
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config), "stats", "--log", str(tmp_path / "missing.log")])
    assert (
        result.exit_code == 1
        and "could not read the access log" in result.output
        and "missing.log" in result.output
    )
    result = runner.invoke(cli, ["--config", str(config), "stats", "--log", str(broken)])
    assert result.exit_code == 1 and str(broken) in result.output
    result = runner.invoke(cli, ["--config", str(config), "stats", "access.log"])
    assert result.exit_code == 2 and "after --log" in result.output


def test_metrics_show_todays_subscribers(make_site: MakeSite) -> None:
    app = create_app(make_site(), clock=lambda: NOW, watch=False)
    client = app.test_client()
    client.get("/feeds/alle.rss", headers={"User-Agent": FEEDLY})
    client.get("/feeds/alle.atom", headers={"User-Agent": TTRSS})
    app.extensions["feeds"].audience.flush()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'feeds_subscribers{feed="alle",source="feedly"} 131.0' in text
    assert 'feeds_subscribers{feed="alle",source="direct"} 1.0' in text


# -- the real production server, and real Varnish in front of it -------------------------------------


def stats_json(config: Path, state: Path, *logs: Path) -> dict:
    """``feeds stats --format json`` as an operator runs it beside the server."""
    command = [str(harness.BIN / "feeds"), "--config", str(config), "stats", "--format", "json"]
    if logs:
        command += ["--log", *map(str, logs)]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FEEDS_STATE_DIR": str(state)},
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def sources_of(report: dict, feed: str) -> dict[str, int]:
    return next((f["sources"] for f in report["feeds"] if f["feed"] == feed), {})


def test_the_production_server_counts_hosted_readers_and_direct_ones(
    make_site: MakeSite, tmp_path: Path
) -> None:
    config, state = make_site(), tmp_path / "state"
    with harness.start(lambda port: harness.production_command(port, 2), tmp_path / "server.log",
                       config=config, state_dir=state) as server:  # fmt: skip
        expected: dict[str, int] = {}
        formats: dict[str, int] = {}
        for agent, report in RECORDED:  # every hosted reader's own User-Agent, on fresh connections
            # Two reports of one fetcher without feed ids: one per URL, or the later would replace
            # the earlier (which is later, when two workers count them, is up to the clock).
            fmt = ("rss", "atom", "json")[formats.setdefault(report.source, 0)]
            formats[report.source] += 1
            assert server.fetch(f"/feeds/alle.{fmt}", {"User-Agent": agent}).status == 200
            expected[report.source] = expected.get(report.source, 0) + report.subscribers
        etag = server.fetch("/feeds/alle.atom", {"User-Agent": TTRSS}).headers["etag"]
        for _ in range(5):  # polling with conditional requests: still one reader
            assert (
                server.fetch("/feeds/alle.atom", {"User-Agent": TTRSS, "If-None-Match": etag}).status == 304
            )
        server.fetch("/feeds/alle.json", {"User-Agent": MINIFLUX}, method="HEAD")
        server.fetch("/feeds/alle/archive/1.rss", {"User-Agent": "Archive Reader"})
        expected["direct"] = 2
        wait_until(
            lambda: sources_of(stats_json(config, state), "alle") == expected,
            "the counts in the state folder",
        )
        metrics = server.fetch("/metrics").body.decode()
        for source, n in expected.items():
            assert f'feeds_subscribers{{feed="alle",source="{source}"}} {float(n)}' in metrics


def varnishncsa(workdir: Path, out: Path) -> subprocess.Popen[bytes]:
    """varnishncsa as the deploy docs run it (its default format is the combined one)."""
    return subprocess.Popen(
        [program("varnishncsa"), "-n", str(workdir), "-w", str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    started: list = []
    yield Stack(tmp_path, started)
    for what in reversed(started):
        if isinstance(what, harness.Server):
            harness.stop(what)
        else:
            what.process.terminate()
            what.process.wait(timeout=30)


def test_behind_varnish_the_log_counts_what_the_origin_never_sees(
    make_site: MakeSite, stack: Stack, tmp_path: Path
) -> None:
    config = make_site()
    origins = stack.origins(config, count=1)
    cache = stack.varnish(origins)
    log_file = tmp_path / "varnishncsa.log"
    logger = varnishncsa(cache.workdir, log_file)
    try:
        # varnishncsa logs from the moment it is attached: until then, knock at the front page.
        wait_until(
            lambda: cache.fetch("/").status == 200 and log_file.exists() and log_file.stat().st_size > 0,
            "varnishncsa writing its log",
        )
        logged = len(log_file.read_text().splitlines())
        first = cache.fetch(
            "/feeds/alle.rss", {"User-Agent": TTRSS}
        )  # the one request that reaches the origin
        assert first.status == 200
        requests = 1
        for source, agent in FETCHERS.items():
            assert cache.fetch("/feeds/alle.rss", {"User-Agent": agent}).headers.get("x-cache") == "HIT", (
                source
            )
            requests += 1
        for agent in (MINIFLUX, "NetNewsWire (RSS Reader; https://netnewswire.com/)"):
            cache.fetch("/feeds/alle.rss", {"User-Agent": agent, "If-None-Match": first.headers["etag"]})
            requests += 1
        cache.fetch("/feeds/alle/archive/1.rss", {"User-Agent": "Archive Reader"})
        requests += 1
        wait_until(
            lambda: len(log_file.read_text().splitlines()) >= logged + requests, "every request in the log"
        )
    finally:
        logger.terminate()
        logger.wait(timeout=30)
    text = log_file.read_text()
    assert '"GET http://' in text  # varnishncsa's %r: the absolute URL
    state = tmp_path / "origin1-state"
    # The origin saw one request, from Varnish: one reader, and none of the fetchers.
    origin_only = {"direct": 1}
    wait_until(lambda: sources_of(stats_json(config, state), "alle") == origin_only, "the origin's own count")
    report = stats_json(config, state, log_file)
    assert report["log"]["counted"] == requests - 1 and report["log"]["malformed"] == 0  # not the archive
    assert sources_of(report, "alle") == {**EXPECTED, "direct": 3}
    assert parse_agent(FEEDLY) == Report("feedly", "", 131)


def test_metrics_of_all_workers_give_each_count_once(make_site: MakeSite, tmp_path: Path) -> None:
    """In prometheus_client's multiprocess mode the counts are read from the shared state folder,
    not added up over the workers."""
    config, metrics_dir = make_site(), tmp_path / "prometheus"
    metrics_dir.mkdir()
    with harness.start(lambda port: harness.gunicorn_command(port, 2), tmp_path / "server.log", config=config,
                       env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as server:  # fmt: skip
        for _ in range(6):  # fresh connections: both workers see Feedly
            server.fetch("/feeds/alle.rss", {"User-Agent": FEEDLY})
        wanted = 'feeds_subscribers{feed="alle",source="feedly"} 131.0'

        def lines() -> list[str]:
            return [
                line
                for line in server.fetch("/metrics").body.decode().splitlines()
                if "feeds_subscribers{" in line
            ]

        wait_until(lambda: lines() == [wanted], "one feeds_subscribers sample, the shared count")
        assert "feeds_requests_total" in server.fetch("/metrics").body.decode()


def test_workers_forked_from_a_preloaded_app_count_too(make_site: MakeSite, tmp_path: Path) -> None:
    """gunicorn --preload: the app (and its Sightings) is made before the fork; each worker
    starts its own thread and opens its own connection."""
    config, state = make_site(), tmp_path / "state"
    preloaded = lambda port: harness.gunicorn_command(port, 2, extra=["--preload"])  # noqa: E731
    with harness.start(preloaded, tmp_path / "server.log", config=config, state_dir=state) as server:
        for i in range(8):
            server.fetch("/feeds/alle.rss", {"User-Agent": f"Reader/{i}"})
        wait_until(
            lambda: sources_of(stats_json(config, state), "alle") == {"direct": 8}, "8 readers counted"
        )
