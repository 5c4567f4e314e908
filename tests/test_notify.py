"""WebSub publish notifications: one per changed feed document, however many workers run.

The outbox and the notifier are tested in-process against a recording hub (a real HTTP server
on loopback); then real gunicorn servers with several workers and live reload count what a hub
receives, and a real hub (flask-websub, run in-process with Celery in eager mode) distributes a
change to a subscriber.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask

from feeds import create_app
from feeds.notify import Notifier, Outbox, publish
from feeds.site import FORMATS, open_site

from conftest import MakeSite, StartServer
from support import harness
from support.waiting import PATIENCE, wait_until

HOST = harness.HOST
TESTS = Path(__file__).resolve().parent
SITE_URL = "https://news.example.org/"
ARTICLES = {
    "politik/erster.md": """\
        ---
        id: erster
        title: Erster Artikel
        date: 2025-04-28T09:30:00+02:00
        ---
        Text des ersten Artikels.
        """,
    "politik/zweiter.md": """\
        ---
        id: zweiter
        title: Zweiter Artikel
        date: 2025-05-01T08:00:00+02:00
        ---
        Text des zweiten Artikels.
        """,
    "klima/dritter.md": """\
        ---
        id: dritter
        title: Dritter Artikel
        date: 2025-05-03T08:00:00+02:00
        ---
        Text des dritten Artikels.
        """,
}
# BASE_CONFIG's operator feeds are "alle" (every article) and "kurz" (the newest two: dritter,
# zweiter); the topic feeds are "politik" and "klima".
FEEDS = ("alle", "kurz", "politik", "klima")


def paths(*names: str) -> list[str]:
    """The subscription documents of ``names`` in every format there is."""
    return sorted(f"/feeds/{name}.{fmt}" for name in names for fmt in FORMATS)


# -- a hub that records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    at: float  # time.monotonic()
    form: dict[str, str]
    content_type: str
    status: int  # what the hub answered


class RecordingHub:
    """A hub on loopback recording each POST's form; it answers 503 to the first ``fail_each``
    POSTs about each topic. With a ``gate`` it holds every POST (``arrived`` counts them) until
    the gate is set, and only then records and answers it: a hub that hangs, for as long as a
    test needs, whatever the machine's speed."""

    def __init__(self, fail_each: int = 0, gate: threading.Event | None = None) -> None:
        self.fail_each = fail_each
        self.gate = gate
        self.arrived = 0
        self.posts: list[Post] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(harness.QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                with hub.lock:
                    hub.arrived += 1
                if hub.gate is not None:
                    hub.gate.wait(PATIENCE)
                with hub.lock:
                    earlier = sum(p.form.get("hub.topic") == form.get("hub.topic") for p in hub.posts)
                    status = 503 if earlier < hub.fail_each else 202
                    hub.posts.append(Post(time.monotonic(), form, self.headers["Content-Type"], status))
                self.answer(status)

        self._serving = ExitStack()
        self.server = self._serving.enter_context(harness.in_thread(harness.loopback(Handler)))

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_port}/"

    def accepted(self) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.status == 202]

    def published(self, since: int = 0) -> list[str]:
        """Paths of the topics accepted (from the ``since``-th accepted POST on)."""
        return sorted(urlsplit(p.form["hub.topic"]).path for p in self.accepted()[since:])

    def settle(
        self, since: int, at_least: int = 1, quiet: float = 1.0, timeout: float = PATIENCE
    ) -> list[str]:
        """Wait for a round: ``at_least`` accepted POSTs after the first ``since`` (so a machine
        that stalls mid-round does not cut it short), then ``quiet`` seconds without any POST (a
        duplicate would come in that time); the paths accepted in the round."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                last = self.posts[-1].at if self.posts else 0.0
            if len(self.accepted()) >= since + at_least and time.monotonic() - last >= quiet:
                return self.published(since)
            time.sleep(0.05)
        raise AssertionError(f"no quiet round of {at_least} after {timeout:g} s: {self.published(since)}")

    def close(self) -> None:
        self._serving.close()


@pytest.fixture
def hub() -> Iterator[RecordingHub]:
    recording = RecordingHub()
    yield recording
    recording.close()


def write_site(make_site: MakeSite, hubs: list[str], url: str = SITE_URL) -> Path:
    return make_site(ARTICLES, {"site": {"url": url}, "websub": {"hubs": hubs}})


def retitle(config: Path, rel: str, title: str) -> None:
    path = config.parent / "articles" / rel
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition("title: ")
    path.write_text(head + "title: " + title + "\n" + rest.split("\n", 1)[1], encoding="utf-8")


# -- the outbox -------------------------------------------------------------------------------------


def test_a_failing_hub_is_retried_with_backoff_and_every_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = RecordingHub(fail_each=2)
    outbox = Outbox(delays=(0.1, 0.2, 0.4))
    try:
        with caplog.at_level(logging.INFO, "feeds.notify"):
            outbox.put(publish(flaky.url, SITE_URL + "feeds/alle.atom"))
            assert outbox.join(PATIENCE)
        first, second, third = flaky.posts
        assert [p.status for p in flaky.posts] == [503, 503, 202]
        # No retry comes before its delay (a busy machine may make one late; the log says when).
        assert second.at - first.at >= 0.1 and third.at - second.at >= 0.2
        assert third.form == {
            "hub.mode": "publish",
            "hub.url": SITE_URL + "feeds/alle.atom",
            "hub.topic": SITE_URL + "feeds/alle.atom",
        }
        assert third.content_type == "application/x-www-form-urlencoded"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            f"WebSub publish of {SITE_URL}feeds/alle.atom to {flaky.url} failed (HTTP 503); "
            f"attempt {n} of 4, next in {delay} s"
            for n, delay in ((1, 0.1), (2, 0.2))
        ]
    finally:
        outbox.close()
        flaky.close()


def test_a_hub_that_is_down_gets_one_error_line_when_the_attempts_run_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = f"http://{HOST}:{harness.free_port()}/"
    outbox = Outbox(delays=(0.01, 0.01))
    try:
        with caplog.at_level(logging.INFO, "feeds.notify"):
            outbox.put(publish(down, SITE_URL + "feeds/alle.rss"))
            assert outbox.join(PATIENCE)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and down in errors[0] and "gave up after 3 attempts" in errors[0]
        assert "refused" in errors[0]
    finally:
        outbox.close()


def test_a_newer_change_replaces_a_retry_still_waiting() -> None:
    flaky = RecordingHub(fail_each=1)
    outbox = Outbox(delays=(3600.0,))
    try:
        outbox.put(publish(flaky.url, SITE_URL + "feeds/alle.rss"))
        wait_until(lambda: len(flaky.posts) == 1, "the first attempt")
        outbox.put(publish(flaky.url, SITE_URL + "feeds/alle.rss"))  # the feed changed again
        assert outbox.join(PATIENCE)  # nothing left waiting: the retry an hour away is gone
        assert [p.status for p in flaky.posts] == [503, 202]
    finally:
        outbox.close()
        flaky.close()


def test_a_slow_hub_delays_no_other_hub() -> None:
    """The slow hub holds its first request until the fast one has both: no clock involved."""
    held = threading.Event()
    slow, fast = RecordingHub(gate=held), RecordingHub()
    outbox = Outbox(timeout=2 * PATIENCE)  # the held request does not run out meanwhile
    try:
        for topic in ("alle.rss", "alle.atom"):
            outbox.put(publish(slow.url, SITE_URL + "feeds/" + topic))
            outbox.put(publish(fast.url, SITE_URL + "feeds/" + topic))
        wait_until(lambda: slow.arrived > 0, "the first notification at the slow hub")
        wait_until(
            lambda: len(fast.posts) == 2, "both notifications at the fast hub while the slow one holds"
        )
        assert slow.posts == [] and slow.arrived == 1  # still held, and the second waits behind it
    finally:
        held.set()
        outbox.close(0.1)
        slow.close()
        fast.close()


def test_sending_threads_are_bounded_however_many_hosts(caplog: pytest.LogCaptureFixture) -> None:
    """2,000 hubs once made 2,015 threads per worker: 32 hosts get a thread each, the rest share one."""
    dead: set[int] = set()
    while len(dead) < 40:  # nothing listens there: each delivery is refused at once
        dead.add(harness.free_port())
    live = [RecordingHub(), RecordingHub()]
    before = set(threading.enumerate())
    outbox = Outbox(delays=())
    try:
        with caplog.at_level(logging.INFO, "feeds.notify"):
            for port in sorted(dead):
                outbox.put(publish(f"http://{HOST}:{port}/", SITE_URL + "feeds/alle.rss"))
            for hub in live:  # hosts 41 and 42: on the shared thread
                outbox.put(publish(hub.url, SITE_URL + "feeds/alle.rss"))
            assert outbox.join(PATIENCE)
        senders = [t for t in threading.enumerate() if t not in before and t.name.startswith("feeds-send")]
        assert len(senders) == 33
        assert [len(hub.accepted()) for hub in live] == [1, 1]
        gave_up = [r for r in caplog.records if r.levelno == logging.ERROR and "gave up" in r.getMessage()]
        assert len(gave_up) == 40  # every host was tried
        shared = [r.getMessage() for r in caplog.records if "share one sending thread" in r.getMessage()]
        assert len(shared) == 1 and shared[0].startswith("more than 32 hosts to send to;")
    finally:
        outbox.close()
        for hub in live:
            hub.close()


# -- the notifier, in-process ---------------------------------------------------------------------


def test_only_changed_documents_are_announced_and_by_one_worker(
    make_site: MakeSite, tmp_path: Path, hub: RecordingHub
) -> None:
    config = write_site(make_site, [hub.url])
    workers = [open_site(config, state_dir=tmp_path / "state") for _ in range(2)]
    outbox = Outbox()
    notifiers = [Notifier(site, outbox) for site in workers]
    try:
        assert [n.sweep() for n in notifiers] == [[], []]  # the first look: a baseline
        retitle(config, "politik/erster.md", "Erster Artikel, berichtigt")
        for site in workers:
            assert site.apply(["politik/erster.md"])
        first, second = (n.sweep() for n in notifiers)
        assert sorted(urlsplit(url).path for url in first) == paths("alle", "politik")
        assert second == []
        assert outbox.join(PATIENCE)
        assert hub.published() == paths("alle", "politik")
        assert [n.sweep() for n in notifiers] == [[], []]
    finally:
        outbox.close()
        for site in workers:
            site.ledger.close()


def test_an_embargo_ending_is_announced(make_site: MakeSite, tmp_path: Path, hub: RecordingHub) -> None:
    release = datetime(2026, 1, 1, 12, tzinfo=UTC)
    now = [release - timedelta(seconds=1)]
    articles = dict(ARTICLES)
    articles["klima/sperre.md"] = "---\ntitle: Sperrfrist\ndate: 2026-01-01T12:00:00Z\n---\nText.\n"
    config = make_site(articles, {"site": {"url": SITE_URL}, "websub": {"hubs": [hub.url]}})
    site = open_site(config, clock=lambda: now[0], state_dir=tmp_path / "state")
    notifier = Notifier(site, Outbox())
    try:
        assert notifier.sweep() == []
        assert site.view().valid_until == release
        now[0] = release
        assert sorted(urlsplit(u).path for u in notifier.sweep()) == paths("alle", "kurz", "klima")
    finally:
        notifier.close()


@pytest.mark.parametrize("key, value, edge", [("delay", 30, 30), ("window", 1, 60)])
def test_a_partner_feed_changing_with_the_clock_is_announced_and_purged_once(
    make_site: MakeSite, tmp_path: Path, hub: RecordingHub, key: str, value: int, edge: int
) -> None:
    """An entry comes out of a delay, or leaves a window, with no file changing: at that
    instant the feed's documents change, and are announced to the hubs and purged, once."""
    published = datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    instant = published + timedelta(minutes=edge)
    now = [instant - timedelta(seconds=1)]
    articles = {"politik/neu.md": f"---\nid: neu\ntitle: Neu\ndate: {published.isoformat()}\n---\nText.\n"}
    partner = {"title": "Partner", key: value}
    config = make_site(
        articles,
        {
            "site": {"url": SITE_URL},
            "websub": {"hubs": [hub.url]},
            "cache": {"purge": [f"http://{HOST}:9"]},
            "feeds": {"partner": partner},
        },
    )
    site = open_site(config, clock=lambda: now[0], state_dir=tmp_path / "state")
    notifier = Notifier(site, Outbox())
    try:
        assert notifier.sweep() == []  # the first look learns
        assert site.view().valid_until == instant
        before = [e.id for e in site.feed_entries(site.specs["partner"])]
        now[0] = instant
        after = [e.id for e in site.feed_entries(site.specs["partner"])]
        assert (before, after) == (([], ["neu"]) if key == "delay" else (["neu"], []))
        announced = sorted(urlsplit(u).path for u in notifier.sweep())
        assert [p for p in announced if p.startswith("/feeds/partner.")] == paths("partner")
        assert "/feeds/partner" in announced  # its page too (a cache holds it)
        assert not any(p.startswith("/feeds/alle") for p in announced)  # unchanged: not purged
        assert notifier.sweep() == []  # once
    finally:
        notifier.close()


def test_the_app_notifies_when_it_is_live_or_asked(make_site: MakeSite, hub: RecordingHub) -> None:
    config = write_site(make_site, [hub.url])
    assert "feeds.notifier" not in create_app(config).extensions  # tests: FEEDS_WATCH=0
    app: Flask = create_app(config, notify=True)
    notifier = app.extensions["feeds.notifier"]
    try:
        assert notifier.wake in app.extensions["feeds"].reload_hooks
    finally:
        notifier.close()
    assert notifier.wake not in app.extensions["feeds"].reload_hooks
    assert hub.posts == []  # a first look is a baseline


# -- real servers -----------------------------------------------------------------------------------


def watching(server: harness.Server, workers: int) -> harness.Server:
    """``server`` once every worker has read the site and watches it (ready means one has)."""
    wait_until(lambda: server.log.read_text().count(" for changes") == workers, "every worker watching")
    return server


def serving(start_server: StartServer, config: Path, workers: int) -> harness.Server:
    """A server whose every worker watches the site, and whose announcing worker (one of them
    leads) has taken its first look at every document (what a change is compared with; a change
    before it is nobody's old version)."""
    server = watching(start_server(config, workers=workers), workers)
    wait_until(lambda: "looked at every document" in server.log.read_text(), "the first look")
    return server


def etags(server: harness.Server) -> dict[str, str]:
    """Every subscription document's ETag, asked three times (on fresh connections, so of
    different workers): they must agree."""
    found: dict[str, str] = {}
    for path in paths(*FEEDS):
        seen = {server.fetch(path).headers["etag"] for _ in range(3)}
        assert len(seen) == 1, f"workers disagree on {path}: {seen}"
        found[path] = seen.pop()
    return found


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(path for path in after if after[path] != before[path])


def test_each_change_reaches_the_hub_once_however_many_workers(
    make_site: MakeSite, start_server: StartServer, hub: RecordingHub
) -> None:
    config = write_site(make_site, [hub.url])
    server = serving(start_server, config, 3)
    before = etags(server)

    retitle(config, "politik/erster.md", "Erster Artikel, berichtigt")
    first = hub.settle(0, len(paths("alle", "politik")))
    after = etags(server)
    assert first == changed(before, after) == paths("alle", "politik")  # each once, nothing else

    retitle(config, "politik/erster.md", "Erster Artikel, noch einmal berichtigt")
    second = hub.settle(len(first), len(paths("alle", "politik")))
    assert second == changed(after, etags(server)) == paths("alle", "politik")

    # Same bytes written again: no change to announce. A change elsewhere then marks the round.
    before = etags(server)
    zweiter = config.parent / "articles" / "politik" / "zweiter.md"
    zweiter.write_bytes(zweiter.read_bytes())
    retitle(config, "klima/dritter.md", "Dritter Artikel, berichtigt")
    third = hub.settle(len(first) + len(second), len(paths("alle", "kurz", "klima")))
    assert third == changed(before, etags(server)) == paths("alle", "kurz", "klima")
    assert {p.form["hub.topic"] for p in hub.posts} <= {SITE_URL + p[1:] for p in paths(*FEEDS)}
    # One worker announces for all: the others never walked the documents.
    assert server.log.read_text().count("looked at every document") == 1


def _leader(state: Path) -> int:
    """The process holding the notifier's lock file (from /proc/locks: its device and inode)."""
    inode = (state / "validators.sqlite.notify").stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" not in fields and len(fields) > 5 and fields[5].rsplit(":", 1)[-1] == str(inode):
            return int(fields[4])
    raise AssertionError("nobody holds the notifier's lock")


def test_when_the_announcing_worker_dies_another_takes_over(
    make_site: MakeSite, start_server: StartServer, hub: RecordingHub, tmp_path: Path
) -> None:
    config = write_site(make_site, [hub.url])
    server = serving(start_server, config, 2)
    leader = _leader(tmp_path / "server-state")
    assert leader in server.workers()
    os.kill(leader, signal.SIGKILL)
    wait_until(lambda: leader not in server.workers() and len(server.workers()) == 2, "the worker replaced")
    before = etags(server)
    retitle(config, "politik/erster.md", "Erster Artikel, nach dem Wechsel")
    announced = hub.settle(0, len(paths("alle", "politik")))
    assert announced == changed(before, etags(server)) == paths("alle", "politik")
    assert _leader(tmp_path / "server-state") != leader


def test_an_embargoed_article_is_announced_when_it_comes_out(
    make_site: MakeSite, start_server: StartServer, hub: RecordingHub
) -> None:
    """Both workers must have read the article before its embargo ends. On a busy machine that
    may take longer than the first try allows: then the article was simply new (and announced
    as such), and a new one with a later embargo is tried."""
    config = write_site(make_site, [hub.url])
    server = serving(start_server, config, 2)
    wanted = paths("alle", "kurz", "politik")
    since = 0  # accepted POSTs of earlier tries
    for attempt, lead in enumerate((3, 10, 30), start=1):
        posted = len(hub.posts)
        release = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead)
        released_at = time.monotonic() + (release - datetime.now(UTC)).total_seconds()
        (config.parent / "articles" / "politik" / f"sperre-{attempt}.md").write_text(
            f"---\ntitle: Sperrfrist {attempt}\ndate: {release.isoformat()}\n---\nText.\n", encoding="utf-8"
        )
        wait_until(
            lambda: server.log.read_text().count("reloaded 1 article file(s)") >= 2 * attempt,  # noqa: B023
            "both workers reading the embargoed article",
        )
        before = etags(server)
        if time.monotonic() < released_at:
            break
        since += len(hub.settle(since, len(wanted)))  # it came in late: a new article, announced
    else:
        raise AssertionError("every embargo ended before both workers had read the article")
    round_ = hub.settle(since, len(wanted))
    assert all(p.at >= released_at - 0.05 for p in hub.posts[posted:])  # nothing before it came out
    assert round_ == changed(before, etags(server)) == wanted


def test_failing_hubs_are_retried_and_never_hold_up_a_request(
    make_site: MakeSite, start_server: StartServer
) -> None:
    held = threading.Event()
    flaky = RecordingHub(fail_each=2, gate=held)
    down = f"http://{HOST}:{harness.free_port()}/"
    try:
        config = write_site(make_site, [flaky.url, down])
        server = serving(start_server, config, 2)
        retitle(config, "politik/erster.md", "Erster Artikel, berichtigt")
        # The hub holds the first publish. Requests are answered meanwhile, and the server has
        # logged nothing about that publish yet: no request waited for it to end (a request
        # that did would have waited until it ran out, and that is logged).
        wait_until(lambda: flaky.arrived > 0, "the first publish at the hub")
        for path in ("/healthz", "/feeds/alle.rss"):
            assert server.fetch(path, timeout=PATIENCE).status == 200
        assert f"to {flaky.url}" not in server.log.read_text()
        held.set()
        wanted = paths("alle", "politik")
        wait_until(lambda: len(flaky.accepted()) >= len(wanted), "every publish accepted at last")
        assert flaky.published() == wanted, server.log.read_text()[-4000:]
        for path in paths("alle", "politik"):
            tries = [p for p in flaky.posts if p.form["hub.topic"].endswith(path)]
            assert [p.status for p in tries] == [503, 503, 202]
            assert tries[1].at - tries[0].at >= 0.9 and tries[2].at - tries[1].at >= 1.9  # 1 s, 2 s
        refused = [line for line in server.log.read_text().splitlines() if f"to {down} failed" in line]
        assert refused and all("WARNING" in line and "next in" in line for line in refused)
        assert any("feeds/alle.rss" in line and "refused" in line for line in refused)
    finally:
        flaky.close()


# -- a real hub -----------------------------------------------------------------------------------


class Subscriber:
    """A WebSub subscriber's callback on loopback: confirms what the hub asks, keeps what it sends."""

    def __init__(self) -> None:
        self.verifications: list[dict[str, str]] = []
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        subscriber = self

        class Handler(harness.QuietHandler):
            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                subscriber.verifications.append(query)
                challenge = query.get("hub.challenge", "").encode()
                self.answer(200 if challenge else 404, challenge)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                subscriber.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.answer(200)

        self._serving = ExitStack()
        self.server = self._serving.enter_context(harness.in_thread(harness.loopback(Handler)))
        self.url = f"http://{HOST}:{self.server.server_port}/callback"

    def close(self) -> None:
        self._serving.close()


@pytest.fixture
def websub_hub(tmp_path: Path) -> Iterator[str]:
    """flask-websub's hub on loopback, its Celery tasks run in-process (eager); its URL."""
    from celery import Celery
    from flask_websub.hub import Hub, SQLite3HubStorage
    from werkzeug.serving import make_server

    celery = Celery("websub-hub", set_as_current=False)
    celery.conf.update(task_always_eager=True, broker_url="memory://")
    hub = Hub(SQLite3HubStorage(str(tmp_path / "hub.sqlite")), celery, BACKOFF_BASE=0.1, MAX_ATTEMPTS=3)
    app = Flask("websub-hub")
    app.config["PUBLISH_SUPPORTED"] = True
    app.register_blueprint(hub.build_blueprint(url_prefix="/hub"))
    with harness.in_thread(make_server(HOST, 0, app, threaded=True)) as server:
        yield f"http://{HOST}:{server.server_port}/hub"


def test_a_real_hub_brings_a_subscriber_the_changed_feed(
    make_site: MakeSite, tmp_path: Path, websub_hub: str
) -> None:
    def command(port: int) -> list[str]:
        # The self URL must be where the server listens, so the hub can fetch it.
        write_site(make_site, [websub_hub], url=f"http://{HOST}:{port}/")
        return harness.gunicorn_command(port, 2, extra=["--graceful-timeout", "2"])

    subscriber = Subscriber()
    server = harness.start(
        command,
        tmp_path / "server.log",
        config=tmp_path / "site" / "config.yaml",
        state_dir=tmp_path / "state",
        timeout=PATIENCE,
    )
    try:
        watching(server, 2)
        topic = server.url("/feeds/alle.atom")
        form = {"hub.mode": "subscribe", "hub.topic": topic, "hub.callback": subscriber.url}
        with urllib.request.urlopen(websub_hub, urlencode(form).encode(), timeout=PATIENCE) as answer:
            assert answer.status == 202
        assert [v["hub.mode"] for v in subscriber.verifications] == ["subscribe"]
        assert subscriber.verifications[0]["hub.topic"] == topic

        retitle(tmp_path / "site" / "config.yaml", "politik/erster.md", "WEBSUB-NEU Erster Artikel")
        wait_until(lambda: bool(subscriber.deliveries), "the hub's delivery to the subscriber")
        headers, body = subscriber.deliveries[0]
        assert b"WEBSUB-NEU Erster Artikel" in body
        assert headers["content-type"].startswith("application/atom+xml")
        assert len(subscriber.deliveries) == 1
    finally:
        harness.stop(server)
        subscriber.close()
