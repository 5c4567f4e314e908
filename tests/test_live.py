"""Every way operators deploy articles reaches every worker of the production server (issue 16).

Each test runs the production server (granian, two workers) over a small site in tmp_path, with
its own state folder, and changes the site the way a deployment does: a folder swapped in, a
release symlink switched, the folder renamed away and back or replaced by a symlink, files
changed while the server was down, the state folder turning unwritable or full while serving.

What a reader sees is checked on loopback the way readers and caches see it:

- A "visit" is one fresh connection. The kernel hands each new connection to one worker, and
  that worker answers every request sent on it: ``/healthz`` first (its ``pid``, where the
  server reports one, names the worker), then the documents. A state counts as served by every
  worker once :data:`CONSECUTIVE` visits in a row show it and, where ``/healthz`` reports pids,
  every worker's pid was among them. The time that took is printed (``pytest -s``); only the
  generous :data:`DEADLINE` is asserted, so a busy machine does not fail a test.
- After a (re)start, no cacheable answer (a 200 without ``Cache-Control: no-store``) may show
  the past: an article deleted or edited before the start, or lack one added before it.
- ``/healthz`` answers 200 with ``{"status": "ok"}``, or ``{"status": "degraded", "reason": ...}``
  while it serves the last good state; the reason names the cause ("articles", "state").
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import feedparser
import pytest
import yaml

from support import harness

pytestmark = pytest.mark.slow  # ten starts of granian, and a restart that reads a thousand files

WORKERS = 2
CONSECUTIVE = 12  # visits in a row that must agree: both workers are then very likely among them
DEADLINE = 20.0  # seconds for a change to reach every worker, generous for a busy machine
BATCH = 1000  # articles added while the server is down, beside the takedown, the edit and the addition
WATCH_AFTER_START = 4.0  # seconds every document is polled after a restart's first answer
FEEDS = ("alle", "politik")  # the configured feed and the topic feed every article is in
FORMATS = ("atom", "rss", "json")

CONFIG: dict[str, Any] = {
    "site": {
        "title": "Testseite",
        "url": "https://news.example.org",
        "description": "Eine kleine Testseite",
        "language": "de",
        "timezone": "Europe/Berlin",
        "author": "Redaktion",
    },
    "articles": "articles",
    "defaults": {"limit": 50, "max_age": 300, "content": "full"},
    "topic_feeds": True,
    "feeds": {"alle": {"title": "Alle Meldungen", "description": "Alles"}},
}

# Titles are distinct words, so a title found in a document names one version of one article.
KEEP = ("bleibt", "Meldung Bleibt Alpha", 1)
GONE = ("geloescht", "Meldung Geloescht Bravo", 2)  # deleted by the deployment
EDITED_OLD = ("geaendert", "Meldung Charlie alte Fassung", 3)
EDITED_NEW = ("geaendert", "Meldung Charlie ueberarbeitet neu", 3)
ADDED = ("hinzu", "Meldung Hinzu Delta", 4)  # added by the deployment
LATER = ("spaeter", "Meldung Spaeter Echo", 5)  # created after the deployment
Article = tuple[str, str, int]  # id, title, day of May 2025


def article_text(article: Article) -> str:
    ident, title, day = article
    return (
        f"---\nid: {ident}\ntitle: {title}\ndate: 2025-05-{day:02d}T08:00:00+02:00\n"
        f"topics: [Politik]\n---\nText der {title}.\n"
    )


def put(folder: Path, article: Article) -> None:
    """Write an article as a deployment does: the whole file appears at once (rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{article[0]}.md"
    staging = folder.parent / f".staging-{article[0]}.md"  # beside the folder, not in it
    staging.write_text(article_text(article), encoding="utf-8")
    os.replace(staging, target)


def fill(folder: Path, *articles: Article) -> Path:
    for article in articles:
        put(folder, article)
    return folder


def add_older(folder: Path, count: int) -> None:
    """``count`` articles older than all others (they stay out of sight behind the feed limit),
    added in one go as a deployment does: reading them makes a start-up check take a while."""
    folder.mkdir(parents=True)
    for i in range(count):
        front = f"id: batch-{i:05d}\ntitle: Aeltere Meldung {i}\ndate: 2024-01-01T08:00:00+01:00"
        text = f"---\n{front}\n---\nText.\n"
        (folder / f"b{i:05d}.md").write_text(text, encoding="utf-8")


def write_config(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Want:
    """A state of the site as readers must see it."""

    shown: Mapping[str, str]  # id -> title: in every feed; its page answers 200 with the title
    gone: frozenset[str] = frozenset()  # ids whose page answers 404
    stale: frozenset[str] = frozenset()  # titles no document may show (deleted, older versions)
    health: str = "ok"  # /healthz status
    reason: str = ""  # a word the degraded reason must contain

    def titles(self) -> set[str]:
        return set(self.shown.values())


def want(*shown: Article, gone: tuple[Article, ...] = (), stale: tuple[Article, ...] = ()) -> Want:
    return Want(
        shown={a[0]: a[1] for a in shown},
        gone=frozenset(a[0] for a in gone),
        stale=frozenset(a[1] for a in (*gone, *stale)),
    )


BEFORE = want(KEEP, GONE, EDITED_OLD)
AFTER = want(KEEP, EDITED_NEW, ADDED, gone=(GONE,), stale=(EDITED_OLD,))
AFTER_LATER = replace(AFTER, shown={**AFTER.shown, LATER[0]: LATER[1]})


def degraded(state: Want, word: str) -> Want:
    return replace(state, health="degraded", reason=word)


# -- reading what a worker serves ---------------------------------------------------------------


class Visit:
    """Requests on one fresh connection: one worker answers all of them.

    The connection is never reopened behind our back (``auto_open`` off): if the worker closes
    it, the next request fails instead of silently reaching another worker.
    """

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection(harness.HOST, port, timeout=10)
        self.conn.auto_open = 0
        self.conn.connect()

    def get(self, path: str) -> harness.Reply:
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        return harness.Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)

    def __enter__(self) -> Visit:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.conn.close()


def feed_titles(reply: harness.Reply, fmt: str) -> set[str]:
    if fmt == "json":
        return {item.get("title", "") for item in json.loads(reply.body).get("items", [])}
    parsed = feedparser.parse(reply.body)
    if parsed.bozo:
        raise ValueError(f"feed does not parse: {parsed.bozo_exception!r}")
    return {entry.get("title", "") for entry in parsed.entries}


def cacheable(reply: harness.Reply) -> bool:
    return reply.status == 200 and "no-store" not in reply.headers.get("cache-control", "")


def feed_problems(path: str, reply: harness.Reply, fmt: str, state: Want) -> list[str]:
    if reply.status != 200:
        return [f"{path}: {reply.status}"]
    titles = feed_titles(reply, fmt)
    problems = [f"{path} lacks {t!r}" for t in sorted(state.titles() - titles)]
    return problems + [f"{path} still shows {t!r}" for t in sorted(state.stale & titles)]


def page_problems(path: str, reply: harness.Reply, state: Want, ident: str | None = None) -> list[str]:
    """An HTML document: the index, a feed page, or the page of article ``ident``."""
    text = reply.body.decode("utf-8", "replace")
    if ident in state.gone:
        return [f"{path}: {reply.status}, expected 404"] if reply.status != 404 else []
    if reply.status != 200:
        return [f"{path}: {reply.status}"]
    wanted = [state.shown[ident]] if ident is not None else sorted(state.titles())
    problems = [f"{path} lacks {t!r}" for t in wanted if t not in text]
    return problems + [f"{path} still shows {t!r}" for t in sorted(state.stale) if t in text]


def health_problems(health: Mapping[str, Any], state: Want) -> list[str]:
    problems = []
    if health.get("status") != state.health:
        problems.append(f"/healthz says {health.get('status')!r}, expected {state.health!r}: {health}")
    elif state.reason and state.reason not in str(health.get("reason", "")):
        problems.append(f"/healthz reason {health.get('reason')!r} does not name {state.reason!r}")
    return problems


def served_problems(visit: Visit, state: Want) -> list[str]:
    """What one worker gets wrong about ``state``: the Atom feeds and every article page."""
    problems = []
    for name in FEEDS:
        path = f"/feeds/{name}.atom"
        problems += feed_problems(path, visit.get(path), "atom", state)
    for ident in sorted({*state.shown, *state.gone}):
        path = f"/articles/{ident}"
        problems += page_problems(path, visit.get(path), state, ident)
    return problems


@dataclass
class Convergence:
    streak: int = 0
    pids: set[int] = field(default_factory=set)  # workers that showed the state in this streak
    reports_pids: bool = False
    last: list[str] = field(default_factory=list)

    def done(self) -> bool:
        return self.streak >= CONSECUTIVE and (not self.reports_pids or len(self.pids) >= WORKERS)


def converge(server: harness.Server, state: Want, what: str, deadline: float = DEADLINE) -> float:
    """Seconds until every worker serves ``state`` (documents and /healthz); fails after ``deadline``."""
    seen = Convergence()
    started = time.monotonic()
    while True:
        pid = None
        try:
            with Visit(server.port) as visit:
                reply = visit.get("/healthz")
                health = json.loads(reply.body) if reply.status == 200 else {"http": reply.status}
                pid = health.get("pid")
                seen.reports_pids |= pid is not None
                problems = health_problems(health, state) + served_problems(visit, state)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            problems = [f"request failed: {exc!r}"]
        elapsed = time.monotonic() - started
        if problems:
            seen = Convergence(reports_pids=seen.reports_pids, last=problems)
        else:
            seen.streak += 1
            if isinstance(pid, int):
                seen.pids.add(pid)
            if seen.done():
                print(f"\n{what}: every worker after {elapsed:.2f} s")
                return elapsed
        if elapsed > deadline:
            pytest.fail(
                f"{what}: not served by every worker within {deadline:g} s "
                f"({seen.streak} good visits in a row, pids {sorted(seen.pids)}); "
                f"the last visit saw: {seen.last}\n--- server log ---\n{server.log_tail(2000)}"
            )
        time.sleep(0.01)  # a polling interval, not a wait for something


def watched_paths(state: Want) -> list[tuple[str, str | None, str | None]]:
    """(path, feed format, article id) of every document that shows articles."""
    paths: list[tuple[str, str | None, str | None]] = []
    for name in FEEDS:
        paths += [(f"/feeds/{name}.{fmt}", fmt, None) for fmt in FORMATS]
        paths.append((f"/feeds/{name}", None, None))
    paths.append(("/", None, None))
    paths += [(f"/articles/{ident}", None, ident) for ident in sorted({*state.shown, *state.gone})]
    return paths


def no_past_after_start(server: harness.Server, state: Want, seconds: float = WATCH_AFTER_START) -> None:
    """From a fresh start's first answer on, poll every document for ``seconds``: no cacheable
    answer may show anything but ``state``. Then every worker must reach ``state``."""
    paths = watched_paths(state)
    first: float | None = None
    counts = {"cacheable": 0, "200 no-store": 0, "other status": 0, "failed": 0}
    past: list[str] = []
    started = time.monotonic()
    while first is None or time.monotonic() - first < seconds:
        if time.monotonic() - started > 60.0 or server.process.poll() is not None:
            pytest.fail(f"the server exited or did not answer for 60 s:\n{server.log_tail()}")
        for path, fmt, ident in paths:
            try:
                reply = server.fetch(path, timeout=10.0)
            except (OSError, http.client.HTTPException):
                if first is not None:
                    counts["failed"] += 1
                continue
            now = time.monotonic()
            first = now if first is None else first
            if not cacheable(reply):
                counts["200 no-store" if reply.status == 200 else "other status"] += 1
                continue
            counts["cacheable"] += 1
            try:
                found = (
                    feed_problems(path, reply, fmt, state)
                    if fmt
                    else page_problems(path, reply, state, ident)
                )
            except ValueError as exc:
                found = [f"{path}: {exc}"]
            past += [f"{now - first:.2f} s after the first answer: {p}" for p in found]
    print(f"\nafter the start: {counts} answers in {seconds:g} s; cacheable with the past: {len(past)}")
    assert not past, "cacheable answers showed the past after a restart:\n" + "\n".join(past[:20])
    converge(server, state, "after the restart")


# -- servers and mounts ---------------------------------------------------------------------------


class Servers:
    """Starts the production server (granian, two workers, live reload) over a config and
    stops every server it started."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.started: list[harness.Server] = []

    def __call__(
        self, config: Path, state_dir: Path, *, wait: bool = True, preload: bool = False
    ) -> harness.Server:
        def command(port: int) -> list[str]:
            if preload:  # gunicorn makes the app once and forks the workers from it
                return harness.gunicorn_command(
                    port, WORKERS, threads=4, extra=["--preload", "--graceful-timeout", "2"]
                )
            return harness.production_command(port, workers=WORKERS)

        server = harness.start(
            command,
            self.log,
            config=config,
            state_dir=state_dir,
            ready="/healthz" if wait else None,
            timeout=60.0,
            grace=5.0,
        )
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            harness.stop(server)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Servers]:
    servers = Servers(tmp_path / "server.log")
    yield servers
    servers.stop_all()


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@contextmanager
def mounted(mountpoint: Path, *argv: str) -> Iterator[Path]:
    """``mount ARGV mountpoint`` for the block (skipped where mounting is not permitted)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    done = run("mount", *argv, str(mountpoint)) if shutil.which("mount") else None
    if done is None or done.returncode != 0:
        reason = f"needs root to mount a small file system: {done.stderr.strip() if done else 'no mount'}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI runs as root)")
        pytest.skip(reason)
    try:
        yield mountpoint
    finally:
        if run("umount", str(mountpoint)).returncode != 0:
            run("umount", "-l", str(mountpoint))


@contextmanager
def unwritable(mountpoint: Path, folder: Path) -> Iterator[str]:
    """The state ``folder`` refuses every write for the block; yields how.

    ``mount -o remount,ro`` is what an operator or the kernel does, but the kernel refuses it
    (EBUSY) while any process holds a file there open for writing, as SQLite does. Then every
    file and folder is made immutable instead (ext4 refuses writes to an immutable file even
    through a descriptor opened before), except SQLite's shared-memory files (``-shm``): they
    are mapped into memory, and a write to a mapped immutable page kills the process (SIGBUS),
    which is not the failure under test.
    """
    if run("mount", "-o", "remount,ro", str(mountpoint)).returncode == 0:
        try:
            yield "remounted read-only"
        finally:
            assert run("mount", "-o", "remount,rw", str(mountpoint)).returncode == 0
        return
    pinned = [folder, *(p for p in folder.rglob("*") if not p.name.endswith("-shm"))]
    done = run("chattr", "+i", *map(str, pinned))
    assert done.returncode == 0, done.stderr
    try:
        yield "made immutable (remounting read-only was refused: files open for writing)"
    finally:
        done = run("chattr", "-R", "-i", str(folder))
        assert done.returncode == 0, done.stderr


@contextmanager
def full(mountpoint: Path) -> Iterator[None]:
    """The file system of ``mountpoint`` has no space left for the block."""
    filler = mountpoint / "filler"
    chunk = b"\0" * (1 << 16)
    try:
        with open(filler, "wb") as out:
            while True:
                out.write(chunk)
                out.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    try:
        yield
    finally:
        filler.unlink()


# -- the tests -------------------------------------------------------------------------------------


def test_folder_swap_reaches_every_worker(tmp_path: Path, serve: Servers) -> None:
    """``mv articles articles.old; mv articles.new articles``: the new folder is what is served,
    deletions included, and files created in it later are published."""
    site = tmp_path / "site"
    config = write_config(site)
    fill(site / "articles", KEEP, GONE, EDITED_OLD)
    fill(site / "articles.new", KEEP, EDITED_NEW, ADDED)
    server = serve(config, tmp_path / "state")
    converge(server, BEFORE, "the first site")

    os.rename(site / "articles", site / "articles.old")
    os.rename(site / "articles.new", site / "articles")
    converge(server, AFTER, "the swapped-in folder")

    put(site / "articles", LATER)
    converge(server, AFTER_LATER, "a file created in the swapped-in folder")


def test_release_symlink_switch_reaches_every_worker(tmp_path: Path, serve: Servers) -> None:
    """``articles -> releases/r1``, then ``ln -s releases/r2 t && mv -T t articles``."""
    site = tmp_path / "site"
    config = write_config(site)
    fill(site / "releases" / "r1", KEEP, GONE, EDITED_OLD)
    fill(site / "releases" / "r2", KEEP, EDITED_NEW, ADDED)
    (site / "articles").symlink_to(Path("releases") / "r1")
    server = serve(config, tmp_path / "state")
    converge(server, BEFORE, "release r1")

    (site / "t").symlink_to(Path("releases") / "r2")
    os.replace(site / "t", site / "articles")  # mv -T: the link is replaced in one step
    converge(server, AFTER, "release r2")

    put(site / "releases" / "r2", LATER)
    converge(server, AFTER_LATER, "a file added to release r2")


def test_articles_folder_renamed_away_and_back(tmp_path: Path, serve: Servers) -> None:
    """Gone: the last good site is served and /healthz says why it is degraded. Back, with a
    file edited meanwhile: healthy again, and the edit is served."""
    site = tmp_path / "site"
    config = write_config(site)
    fill(site / "articles", KEEP, GONE, EDITED_OLD)
    server = serve(config, tmp_path / "state")
    converge(server, BEFORE, "the site")

    os.rename(site / "articles", site / "gone")
    converge(server, degraded(BEFORE, "articles"), "the last good site, degraded, with the folder gone")

    put(site / "gone", EDITED_NEW)
    os.rename(site / "gone", site / "articles")
    back = want(KEEP, GONE, EDITED_NEW, stale=(EDITED_OLD,))
    converge(server, back, "the folder back, with an edit made while it was away")


def test_folder_replaced_by_a_symlink(tmp_path: Path, serve: Servers) -> None:
    """``mv articles elsewhere; ln -s elsewhere articles``, then a file created in it and one
    deleted: both reach every worker."""
    site = tmp_path / "site"
    config = write_config(site)
    fill(site / "articles", KEEP, GONE, EDITED_OLD)
    server = serve(config, tmp_path / "state")
    converge(server, BEFORE, "the site")

    os.rename(site / "articles", site / "elsewhere")
    (site / "articles").symlink_to("elsewhere")
    put(site / "articles", LATER)
    (site / "articles" / f"{GONE[0]}.md").unlink()
    state = want(KEEP, EDITED_OLD, LATER, gone=(GONE,))
    converge(server, state, "a file created and one deleted behind the new symlink")


def test_restart_never_serves_the_past(tmp_path: Path, serve: Servers) -> None:
    """Changes made while the server was down (a takedown, an edit, an addition): from the first
    answer after the start on, no cacheable answer shows the state from before."""
    site = tmp_path / "site"
    config = write_config(site)
    folder = fill(site / "articles", KEEP, GONE, EDITED_OLD)
    state_dir = tmp_path / "state"
    server = serve(config, state_dir)
    converge(server, BEFORE, "the site before the stop")
    for fmt in FORMATS:  # every document rendered and remembered, as readers would have them
        for name in FEEDS:
            server.fetch(f"/feeds/{name}.{fmt}")
    harness.stop(server)

    (folder / f"{GONE[0]}.md").unlink()  # the legal takedown
    put(folder, EDITED_NEW)
    put(folder, ADDED)
    add_older(folder / "batch", BATCH)
    no_past_after_start(serve(config, state_dir, wait=False), AFTER)


def test_state_folder_unwritable_while_serving(tmp_path: Path, serve: Servers) -> None:
    """The state folder refuses writes: edits are still served (in memory), /healthz is degraded
    naming the state; once writable again it is healthy, the edit is kept and survives a restart."""
    if shutil.which("mkfs.ext4") is None or shutil.which("chattr") is None:
        pytest.skip("needs mkfs.ext4 and chattr (e2fsprogs) for a small file system to break")
    image = tmp_path / "state.ext4"
    with open(image, "wb") as fh:
        fh.truncate(32 << 20)
    done = run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
    assert done.returncode == 0, done.stderr
    site = tmp_path / "site"
    config = write_config(site)
    folder = fill(site / "articles", KEEP, GONE, EDITED_OLD)
    with mounted(tmp_path / "mnt", "-o", "loop", str(image)) as mnt:
        try:
            state_dir = mnt / "state"
            server = serve(config, state_dir)
            converge(server, BEFORE, "the site")

            with unwritable(mnt, state_dir) as how:
                print(f"\nthe state folder {how}")
                put(folder, EDITED_NEW)
                during = want(KEEP, GONE, EDITED_NEW, stale=(EDITED_OLD,))
                converge(server, degraded(during, "state"), "an edit while the state folder is unwritable")
            converge(server, during, "healthy again once the state folder is writable")

            put(folder, ADDED)
            after = want(KEEP, GONE, EDITED_NEW, ADDED, stale=(EDITED_OLD,))
            converge(server, after, "a change after the state folder is writable again")
            harness.stop(server)
            no_past_after_start(serve(config, state_dir, wait=False), after)
        finally:
            serve.stop_all()  # before the file system goes


def test_state_folder_full_while_serving(tmp_path: Path, serve: Servers) -> None:
    """The state folder's file system is full: edits are still served, /healthz is degraded
    naming the state; once space is freed it is healthy, the edit is kept and survives a restart."""
    site = tmp_path / "site"
    config = write_config(site)
    folder = fill(site / "articles", KEEP, GONE, EDITED_OLD)
    with mounted(tmp_path / "mnt", "-t", "tmpfs", "-o", "size=16m", "tmpfs") as mnt:
        try:
            state_dir = mnt / "state"
            server = serve(config, state_dir)
            converge(server, BEFORE, "the site")

            with full(mnt):
                put(folder, EDITED_NEW)
                during = want(KEEP, GONE, EDITED_NEW, stale=(EDITED_OLD,))
                converge(server, degraded(during, "state"), "an edit while the state folder is full")
            converge(server, during, "healthy again once space is freed")

            put(folder, ADDED)
            after = want(KEEP, GONE, EDITED_NEW, ADDED, stale=(EDITED_OLD,))
            converge(server, after, "a change after space is freed")
            harness.stop(server)
            no_past_after_start(serve(config, state_dir, wait=False), after)
        finally:
            serve.stop_all()  # before the file system goes


def test_workers_forked_from_a_preloaded_app_reopen_everything(tmp_path: Path, serve: Servers) -> None:
    """``gunicorn --preload``: the app is made once and the workers are forked from it. Each
    opens its own index and ledger connections and runs its own writer, which first compares
    every file with the index (what changed before the fork was the parent's to see)."""
    site = tmp_path / "site"
    config = write_config(site)
    fill(site / "articles", KEEP, GONE, EDITED_OLD)
    server = serve(config, tmp_path / "state", preload=True)
    converge(server, BEFORE, "the site, in workers forked from the preloaded app")
    articles = site / "articles"
    (articles / f"{GONE[0]}.md").unlink()
    put(articles, EDITED_NEW)
    put(articles, ADDED)
    converge(server, AFTER, "changes, in every forked worker")
    log = (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and "database is locked" not in log and "misuse" not in log
