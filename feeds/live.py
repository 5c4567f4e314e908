"""The live writer: the one place where what readers see changes.

Each worker process has one :class:`Live`. It alone takes in file events, the check of every
file after a start, config reloads and the writes of other workers sharing the index; it builds
the next state and publishes it as an immutable :class:`Snapshot`, swapped in with one
assignment. Requests read :attr:`Live.snapshot` and query the index on connections of their
own, so they never wait for a change being applied: the writer's lock is the writer's alone.

It follows the configured paths by name (see :mod:`feeds.watch`): a folder swapped, a release
symlink switched, a folder renamed away and back are each noticed on the next batch (events in
the folders holding them, and an identity check at least every ``TICK``), the new folder is
watched, and every file is compared with the index, deletions included. A configured folder
that is gone leaves the last good articles served and the health ``degraded``.

A state folder that stops taking writes (a full disk, a read-only mount) does not stop changes:
the index is copied into memory and changes go on there, the health says why, and once the
folder takes writes again every file changed meanwhile is written to it and the copy dropped.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from . import indexing, spawning
from .articles import SUFFIXES, Meta
from .config import SiteConfig, load_config
from .errors import ConfigError, Problem
from .parsing import teaser
from .pictures import TYPES as PICTURE_TYPES
from .records import Record, dated, parse_file
from .sources import scan
from .store import (
    Applied,
    IndexStore,
    Ledger,
    StoreError,
    config_key,
    index_name,
    predecessor,
    remove_superseded,
)
from .watch import Event, Watcher, identify

log = logging.getLogger(__name__)
TICK = 0.25  # seconds between looks at the configured paths when no event comes
DEFER = 1.0  # a created file opened by someone is read once unchanged this long
RETRY = 2.0  # seconds between attempts to write to a state folder that refused writes
REBUILD = 60.0  # seconds between attempts to build this version's index after one failed
RETIRE = 60.0  # seconds a replaced index stays open for the requests still reading it
PICTURES_SEEN = 4096  # changed pictures remembered for the caches in front (see _note_pictures)
Clock = Callable[[], datetime]
Offer = Callable[[Meta, str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    """Everything a request needs besides the index's rows, published whole by the writer.

    ``verified`` is False while files may have changed since the index was written (a start
    that trusted an index from an earlier run, before its check): documents are then answered
    uncacheably. ``degraded`` holds why the site serves a last good state. ``upgrading``: the
    store is an earlier version's index, standing in while this version's is built.
    """

    config: SiteConfig
    store: IndexStore
    generation: int
    verified: bool
    degraded: tuple[str, ...] = ()
    config_error: ConfigError | None = None
    articles: int = 0
    problems: tuple[Problem, ...] = field(default=(), repr=False)
    upgrading: bool = False


def _with_teasers(
    config: SiteConfig,
    records: dict[str, Record],
    reads: Mapping[str, tuple[Record | None, str]],
    stored: Mapping[str, tuple[int, str | None, int]],
) -> dict[str, Record]:
    """``records`` with their summary's digest: kept from the row while the body and the summary
    given in front matter are as they were (unknown, after a cold start, it stays so: a file
    touched moves no document's key), otherwise worked out from the body (rendering it)."""
    found: dict[str, Record] = {}
    for rel, record in records.items():
        meta = record.meta
        if meta is not None:
            old = stored.get(rel)
            if old is not None and old[:2] == (meta.body_digest, meta.given_summary):
                digest = old[2]
            else:
                digest = _yielding(teaser(meta, reads[rel][1], config))
            record = replace(record, meta=replace(meta, teaser=digest))
        found[rel] = record
    return found


def _yielding(value: T) -> T:
    """``value``, after letting a request thread waiting for the interpreter have it.

    Parsing a burst of files is pure Python: without a pause between files a request waits up to
    the interpreter's switch interval (5 ms) each time it needs it back (every query, every
    write to its socket), which adds up to tenths of a second during an rsync of thousands.
    """
    time.sleep(0)
    return value


def _gone(config: SiteConfig) -> str:
    return f"the articles folder {config.articles_dir} is gone; serving the last good articles"


def open_store(
    config: SiteConfig, state_dir: Path | None, ledger: Ledger, clock: Clock
) -> tuple[IndexStore, bool, str | None]:
    """The index of ``config``'s articles; whether it was trusted rather than built; why not on disk.

    Of workers starting together, one builds the index while the others wait for it.
    """
    spawning.refuse_in_bootstrap()
    store, reason = IndexStore.open(state_dir / index_name(config) if state_dir else None)
    try:
        with store.exclusive():
            trusted = store.ready(config_key(config))
            if not trusted:
                indexing.load(config, store, lambda ids: ledger.first_seen(ids, clock()))
    except StoreError as exc:  # a planted lock file, a folder that turned read-only meanwhile
        log.warning("index not usable, kept in memory instead: %s", exc)
        store.close()
        store, trusted, reason = IndexStore(None), False, str(exc)
        indexing.load(config, store, lambda ids: ledger.first_seen(ids, clock()))
    return store, trusted, reason


def stand_in(config: SiteConfig, state_dir: Path) -> tuple[IndexStore, Path] | None:
    """An upgrade's start: if this version's index is not built yet but an earlier version left
    one this code can read, that one (to serve meanwhile) and the path of the index to build.

    The earlier version's workers may still be reading and writing it (a rolling restart): it
    is never reset, only read and kept up to date like any index until the switch.
    """
    path = state_dir / index_name(config)
    try:
        own = IndexStore(path)
    except StoreError:
        return None
    try:
        if own.ready(config_key(config)):
            return None
    finally:
        own.close()
    found = predecessor(state_dir, config)
    if found is None:
        return None
    try:
        store = IndexStore(found)
    except StoreError as exc:
        log.warning("the index of an earlier version cannot stand in: %s", exc)
        return None
    if not store.serves():
        store.close()
        return None
    log.info(
        "upgrade: serving the rows of %s (an earlier version's index, not cacheable) while %s is built",
        found.name,
        path.name,
    )
    return store, path


class Live:
    """The writer of one worker. Thread-safe: :meth:`apply` and :meth:`check` may be called by
    any thread (tests, the CLI) and take the writer's lock, as the writer thread does."""

    def __init__(
        self,
        config_path: Path,
        snapshot: Snapshot,
        ledger: Ledger,
        *,
        clock: Clock,
        state_dir: Path | None,
        offer: Offer,
        store_reason: str | None = None,
        upgrade: Path | None = None,
    ) -> None:
        self.config_path = config_path
        self._snapshot = snapshot
        self._ledger = ledger
        self._clock = clock
        self._state_dir = state_dir
        self._offer = offer
        self._lock = threading.RLock()  # the writer's; never taken by a request
        self._announced = threading.Condition()  # wakes waiters on a publication (tests, tools)
        self.hooks: list[Callable[[bool], None]] = []  # after each reload: True applied, False refused
        self.published: list[Callable[[Snapshot], None]] = []  # after each publication, on this thread
        self._reasons: dict[str, str] = {"index": store_reason} if store_reason else {}
        self._disk: IndexStore | None = None  # while the state folder refuses writes: where to return
        self._dirty: set[str] = set()  # paths changed in memory meanwhile
        self._retry_at = 0.0
        self._data_version = snapshot.store.data_version()
        self._watcher: Watcher | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._deferred: dict[str, float] = {}  # absolute path -> when to look again
        self._config_id = self._config_seen = identify(snapshot.config.articles_dir, config_path).config
        self._ledger_problem: str | None = None
        self._config_retry = 0.0
        self._check: Future[list[str]] | None = None
        self._validation: Future[list[str]] | None = None  # rows checked whole after the check
        # Pictures whose events the writer saw, newest last; read by the notifier's thread.
        self.pictures_seen: tuple[str, ...] = ()
        self._check_lock: ExitStack | None = None
        self._check_from = 0.0  # wall time the check (or the watch, if later) covers changes from
        self._started = time.time()
        # An upgrade: this version's index, built on a thread of its own while the earlier
        # version's index stands in (see stand_in); replaced indexes, closed after RETIRE.
        self._upgrade_path = upgrade
        self._upgrade: Future[IndexStore] | None = None
        self._upgrade_at = 0.0
        self._retired: list[tuple[float, IndexStore]] = []
        self._swept = False  # earlier versions' indexes looked at since the last switch
        if identify(snapshot.config.articles_dir, config_path).articles is None:
            self._say("articles", _gone(snapshot.config))
        self._publish(changed=False)  # counts and problems of the index as opened

    # -- reading ------------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def wait(self, predicate: Callable[[Snapshot], bool], timeout: float) -> bool:
        """Until a published snapshot satisfies ``predicate`` (tests and tools wait on this)."""
        with self._announced:
            return self._announced.wait_for(lambda: predicate(self._snapshot), timeout)

    # -- publishing ---------------------------------------------------------------------------

    def _publish(
        self,
        *,
        changed: bool = True,
        config: SiteConfig | None = None,
        store: IndexStore | None = None,
        verified: bool | None = None,
        config_error: ConfigError | None | bool = False,
        upgrading: bool | None = None,
    ) -> None:
        old = self._snapshot
        store = store or old.store
        try:
            with store.read() as reader:
                articles, problems = reader.count(), tuple(reader.problems())
        except StoreError as exc:
            log.warning("index unreadable: %s", exc)
            articles, problems = old.articles, old.problems
        ledger_problem = self._ledger.problem
        reasons = dict(self._reasons)
        if ledger_problem:
            reasons.setdefault("state", ledger_problem)
        new = replace(
            old,
            config=config or old.config,
            store=store,
            generation=old.generation + int(changed),
            verified=old.verified if verified is None else verified,
            degraded=tuple(reasons[k] for k in sorted(reasons)),
            config_error=config_error
            if isinstance(config_error, ConfigError) or config_error is None
            else old.config_error,
            articles=articles,
            problems=problems,
            upgrading=old.upgrading if upgrading is None else upgrading,
        )
        for prepare in self.published:  # before waiters wake: what they ask next is ready
            prepare(new)
        with self._announced:
            self._snapshot = new
            self._announced.notify_all()
        if changed:
            for hook in self.hooks:
                hook(True)

    def _say(self, source: str, reason: str | None) -> bool:
        """Set (or clear, with None) why the site is degraded; True if that changed."""
        if self._reasons.get(source) == reason:
            return False
        if reason is None:
            self._reasons.pop(source, None)
            log.info("%s: back to normal", source)
        else:
            self._reasons[source] = reason
            log.error("degraded: %s", reason)
        return True

    # -- changes ------------------------------------------------------------------------------

    def apply(self, paths: Iterable[str] = (), config_changed: bool = False) -> bool:
        """Take in changed article paths (relative) and/or a changed config; True if reloaded."""
        with self._lock:
            changed = self._reload_config() if config_changed else False
            paths = sorted(set(paths))
            if paths:
                changed = self._read(paths) or changed
            return changed

    def refresh(self) -> bool:
        """Publish what other workers sharing the index wrote since the last look; True if any."""
        with self._lock:
            if not self._elsewhere():
                return False
            self._publish()
            return True

    def check(self, aside: bool | None = None) -> int:
        """Compare every file with the index and take in what differs; how many differed.

        ``aside``: in a niced process (default: for a large index), or here (before serving)."""
        with self._lock:
            snapshot = self._snapshot
            if identify(snapshot.config.articles_dir, self.config_path).articles is None:
                return 0
            started = time.time()
            stale = indexing.stale(snapshot.config, snapshot.store, snapshot.articles, aside)
            if stale:
                log.info("%d article file(s) changed since the index was written", len(stale))
                self._read(stale, force=stale)
            self._verified(started)
            return len(stale)

    def _verified(self, since: float) -> None:
        try:
            self._snapshot.store.set_info("checked", repr(since))
        except StoreError as exc:
            log.warning("index: %s", exc)
        self._sweep()
        if not self._snapshot.verified:
            self._publish(changed=False, verified=True)

    def _read(self, paths: list[str], force: Collection[str] = ()) -> bool:
        """Parse first, then write the batch in one transaction: readers see all of it or none.

        Under the index's write lock, so that of the workers taking in the same change one reads
        each file: the others find its row already at the file's version and read nothing.
        ``force``: paths read again whatever their row says (rows found malformed).
        """
        snapshot = self._snapshot
        config = snapshot.config
        root = identify(config.articles_dir, self.config_path).articles
        if root is None:  # read now, every file would look deleted
            self._say("articles", _gone(config))
            self._publish(changed=False)
            return False
        started = time.perf_counter()
        with self._writing(snapshot.store):
            todo = self._unread(paths, snapshot.store, config, force)
            reads = {rel: _yielding(parse_file(config, rel, teaser=False)) for rel in todo}
            if identify(config.articles_dir, self.config_path).articles != root:
                return False  # swapped while being read: the next batch checks every file
            records = {rel: record for rel, (record, _) in reads.items() if record is not None}
            records = _with_teasers(config, records, reads, snapshot.store.teasers(records))
            final: dict[str, Record | None] = dict.fromkeys(todo)
            final.update(dated(records, lambda ids: self._ledger.first_seen(ids, self._clock())))
            applied = self._write(final) if final else Applied((), False)
        if applied is None:
            return False
        for rel, (_, body) in reads.items():
            record = final.get(rel)
            if record is not None and record.meta is not None and body:
                self._offer(record.meta, body)
        elsewhere = self._elsewhere()
        if applied.visible or elsewhere:
            log.info(
                "reloaded %d article file(s) in %.1f ms", len(paths), (time.perf_counter() - started) * 1000
            )
        if applied.wrote or elsewhere:
            self._publish()
        return bool(applied.visible) or elsewhere

    @staticmethod
    def _writing(store: IndexStore) -> ExitStack:
        """The index's write lock, or nothing if its lock file cannot be used (the write that
        follows fails the same way and goes to memory, saying why)."""
        guard = ExitStack()
        try:
            guard.enter_context(store.writing())
        except StoreError as exc:
            log.warning("index: %s", exc)
        return guard

    @staticmethod
    def _unread(paths: list[str], store: IndexStore, config: SiteConfig, force: Collection[str]) -> list[str]:
        """The paths whose file is not the version the index holds (another worker wrote the rest)."""
        known = store.versions(paths)
        todo = []
        for rel in paths:
            row = known.get(rel)
            try:
                st = os.stat(config.articles_dir / rel)
            except (OSError, ValueError):
                if row is not None or rel in force:
                    todo.append(rel)  # gone: its row goes
                continue
            same = row is not None and not row[2] and row[:2] == (st.st_size, st.st_mtime_ns)
            if not same or rel in force or not stat.S_ISREG(st.st_mode):
                todo.append(rel)
        return todo

    def _write(self, batch: dict[str, Record | None]) -> Applied | None:
        """Write to the index; to a copy in memory while the state folder refuses writes."""
        store = self._snapshot.store
        try:
            applied = store.apply(batch)
        except StoreError as exc:
            if store.path is None:  # already in memory: nothing else to fall back on
                log.error("index in memory failed: %s", exc)
                return None
            try:
                copy = store.to_private()
                applied = copy.apply(batch)
            except StoreError as again:
                log.error("cannot keep changes in memory either: %s", again)
                self._say("state", f"{exc}; changes are not applied")
                return None
            self._disk, self._retry_at = store, time.monotonic() + RETRY
            self._say("state", f"{exc}; changes are kept in memory until it takes writes again")
            self._publish(changed=True, store=copy)
            self._dirty.update(batch)
            return applied
        if self._disk is not None:
            self._dirty.update(batch)
        return applied

    def _elsewhere(self) -> bool:
        """True once after another worker sharing the index wrote to it."""
        current = self._snapshot.store.data_version()
        if current == self._data_version:
            return False
        self._data_version = current
        return True

    def _recover(self) -> None:
        """While changes live in memory: try to write them to the state folder, then go back."""
        if self._disk is None or time.monotonic() < self._retry_at:
            return
        self._retry_at = time.monotonic() + RETRY
        disk, config = self._disk, self._snapshot.config
        dirty = sorted(self._dirty)
        reads = {rel: parse_file(config, rel)[0] for rel in dirty}
        records = {rel: r for rel, r in reads.items() if r is not None}
        batch: dict[str, Record | None] = dict.fromkeys(dirty)
        batch.update(dated(records, lambda ids: self._ledger.first_seen(ids, self._clock())))
        try:
            disk.apply(batch)
        except StoreError:
            return
        copy = self._snapshot.store
        self._disk, self._dirty = None, set()
        self._data_version = disk.data_version()
        self._say("state", None)
        self._publish(changed=True, store=disk)
        log.info(
            "the state folder takes writes again: %d file(s) changed meanwhile written to it", len(dirty)
        )
        copy.close()

    def _reload_config(self) -> bool:
        """Use a changed config if it is valid; otherwise keep the last good one and say why."""
        snapshot = self._snapshot
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            known = snapshot.config_error
            if known is not None and known.problems == exc.problems:
                return False  # the same refusal again (a retry): said once already
            for problem in exc.problems:
                log.error("config error, still serving the last good config: %s", problem)
            self._publish(changed=False, config_error=exc)
            for hook in self.hooks:
                hook(False)
            return False
        if config == snapshot.config:
            if snapshot.config_error is not None:
                self._publish(changed=False, config_error=None)
            return False
        old = snapshot.config
        reindex = (
            config.articles_dir,
            config.url,
            config.timezone,
            config.author,
            config.max_article_bytes,
        ) != (
            old.articles_dir,
            old.url,
            old.timezone,
            old.author,
            old.max_article_bytes,
        )
        if reindex:
            store, trusted, reason = open_store(config, self._state_dir, self._ledger, self._clock)
            self._say("index", reason)
            self._say("upgrade", None)
            if self._snapshot.upgrading:
                self._retire(self._snapshot.store)
            self._upgrade_path = None  # a build still running is closed when it ends
            self._publish(config=config, store=store, config_error=None, upgrading=False)
            self._data_version = store.data_version()
            if trusted:  # made by another worker (or an earlier run) for this config
                self.check()
            if self._watcher is not None and config.articles_dir != old.articles_dir:
                self._watcher.watch(config.articles_dir)
        else:
            self._publish(config=config, config_error=None)
        log.info("config reloaded from %s%s", self.config_path, " (articles re-read)" if reindex else "")
        return True

    # -- the thread ---------------------------------------------------------------------------

    def start(self, watcher: Watcher) -> None:
        """Run the writer on a thread of its own, taking ``watcher``'s events.

        A snapshot not yet verified is checked in the background (one worker checks for all;
        the others adopt its result if it covers their start, and are answered no-store until).
        """
        self._watcher = watcher
        self._begin_upgrade()
        if watcher.watched.articles is None:
            watcher.watch(self._snapshot.config.articles_dir)
        if self._snapshot.verified:
            watcher.upgrade()
        self._thread = threading.Thread(target=self._run, name="feeds-live", daemon=True)
        self._thread.start()
        log.info("watching %s and %s for changes", watcher.articles_dir, self.config_path)

    def forked(self, watcher: Watcher) -> None:
        """In a worker forked from a preloaded app: own locks, own thread, and a check of every
        file (what changed before the fork was the parent's to see). The parent's lock files
        are left as they are: an inherited descriptor shares the parent's lock."""
        self._lock = threading.RLock()
        self._announced = threading.Condition()
        self._stop = threading.Event()
        self._check, self._check_lock, self._deferred, self._validation = None, None, {}, None
        self._upgrade, self._retired = None, []
        self._started = time.time()
        self._snapshot = replace(self._snapshot, verified=False)
        self.start(watcher)

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if self._check_lock is not None:
            self._check_lock.close()
        for _, store in self._retired:
            store.close()
        self._retired = []

    def _run(self) -> None:
        watcher = self._watcher
        assert watcher is not None
        while not self._stop.is_set():
            events = watcher.gather(TICK)
            try:
                with self._lock:
                    self._tick(watcher, events)
            except Exception:  # a failed batch must never end the writer
                log.exception("reload failed; keeping what was served before")

    def _tick(self, watcher: Watcher, events: list[Event]) -> None:
        snapshot = self._snapshot
        roots = watcher.roots()
        if roots.articles != watcher.watched.articles:
            self._follow(watcher, roots.articles)
            events = []  # they name the files of the folder watched before
        # A config rewritten in place is reloaded on its writer's close (an event), or once its
        # identity has held still for a tick (a link switched, an event lost).
        config_changed = roots.config == self._config_seen and roots.config != self._config_id
        self._config_seen = roots.config
        if snapshot.config_error is not None and time.monotonic() >= self._config_retry:
            # A config refused for what is not in the file (its articles folder was gone) is
            # accepted once that passes, without an edit.
            self._config_retry = time.monotonic() + RETRY
            config_changed = True
        paths: set[str] = set()
        lost = False
        for event in events:
            if event.kind == "lost":
                lost = True
                continue
            if event.kind == "holder":
                config_changed |= Path(event.path) == watcher.config_path
                continue  # the articles folder: the identity check above does the work
            if event.epoch != watcher.epoch:
                continue
            paths |= self._paths_of(event, watcher, snapshot.config.articles_dir)
        if config_changed:
            self._config_id = self._config_seen = watcher.roots().config
            self._reload_config()
        paths |= set(self._release_deferred())
        changed_pictures = {p for p in paths if _is_picture(p)}
        pictured = self._pictured(changed_pictures)
        paths = {p for p in paths if p.lower().endswith(SUFFIXES)}
        suspects = self._snapshot.store.take_suspects()
        generation = self._snapshot.generation
        if paths or suspects or pictured:
            self._read(sorted(paths | set(suspects) | set(pictured)), force=[*suspects, *pictured])
        else:
            self.refresh()
        if changed_pictures:
            self._note_pictures(changed_pictures)
        if changed_pictures and self._snapshot.generation == generation:
            for hook in self.hooks:  # no entry changed, but a picture did: caches in front purge it
                hook(True)
        if lost:
            log.warning("file events were lost (inotify's queue overflowed in a burst); checking every file")
            self.check()
        self._poll_upgrade()
        self._poll_check()
        self._recover()
        if self._ledger.problem:
            self._ledger.probe()
        if self._ledger.problem != self._ledger_problem:
            self._ledger_problem = self._ledger.problem
            self._publish(changed=False)

    def _follow(self, watcher: Watcher, now: tuple[int, int] | None) -> None:
        """The configured folder names another folder, or none: watch it and check every file."""
        config = self._snapshot.config
        if now is None:
            watcher.watch(config.articles_dir)
            if self._say("articles", _gone(config)):
                self._publish(changed=False)
            return
        log.info("the articles folder %s names another folder now; checking every file", config.articles_dir)
        watcher.watch(config.articles_dir)
        self._say("articles", None)
        self.check()
        self._publish(changed=False)

    def _paths_of(self, event: Event, watcher: Watcher, root: Path) -> set[str]:
        raw = event.path
        if event.kind == "created-unseen" or (event.kind == "created" and watcher.opened_recently(raw)):
            # Opened since it was created (or opens are not observed): a writer whose close
            # will follow, or a reader of a file moved in. Look again once it has been quiet.
            self._deferred[raw] = time.monotonic() + DEFER
            return set()
        self._deferred.pop(raw, None)
        path = Path(raw)
        try:
            rel = path.relative_to(watcher.articles_dir).as_posix()
        except ValueError:
            return set()
        found: set[str] = set()
        if event.kind == "dir" or (event.kind == "gone" and path.suffix.lower() not in SUFFIXES):
            # A folder moved in, out or away: everything known or found under it.
            with self._snapshot.store.read() as reader:
                found.update(reader.paths_under(rel))
            if path.is_dir() and not path.is_symlink():
                found.update(listed.rel for listed in scan(root, rel))
        elif path.suffix.lower() in SUFFIXES or path.suffix.lower() in PICTURE_TYPES:
            found.add(rel)  # a picture: the articles showing it are read again (_pictured)
        if event.kind in ("dir", "gone") and path.suffix.lower() not in SUFFIXES:
            found.add(rel)  # a folder: pictures under it too
        return {p for p in found if not any(part.startswith((".", "_")) for part in p.split("/"))}

    def _note_pictures(self, changed: set[str]) -> None:
        """Remember pictures that changed (the most recent PICTURES_SEEN): a picture that only a
        body shows is in no row, and caches in front must still be told it changed."""
        files = [p for p in sorted(changed) if os.path.splitext(p)[1].lower() in PICTURE_TYPES]
        if files:
            kept = [p for p in self.pictures_seen if p not in changed]
            self.pictures_seen = (*kept, *files)[-PICTURES_SEEN:]  # replaced, never mutated

    def _pictured(self, changed: set[str]) -> list[str]:
        """The articles showing a changed picture (or a picture of a changed folder)."""
        if not changed:
            return []
        try:
            with self._snapshot.store.read() as reader:
                return indexing.showing(self._snapshot.config, reader, changed)
        except StoreError as exc:
            log.warning("index: %s", exc)
            return []

    def _release_deferred(self) -> list[str]:
        now, ready = time.monotonic(), []
        root = self._watcher.articles_dir if self._watcher is not None else self._snapshot.config.articles_dir
        for raw, due in list(self._deferred.items()):
            if due > now:
                continue
            try:
                quiet = time.time() - os.stat(raw).st_mtime > DEFER
            except OSError:
                quiet = True  # gone: reading it reports that
            if quiet:
                del self._deferred[raw]
                try:
                    ready.append(Path(raw).relative_to(root).as_posix())
                except ValueError:
                    continue
            else:
                self._deferred[raw] = now + DEFER
        return ready

    # -- an upgrade ---------------------------------------------------------------------------

    def _begin_upgrade(self) -> None:
        """Build this version's index on a thread of its own (``feeds-upgrade``), or wait for
        the worker building it: of workers starting together one builds, all keep serving."""
        path, config = self._upgrade_path, self._snapshot.config
        if path is None or self._upgrade is not None:
            return
        self._upgrade_at = time.monotonic()
        pool = ThreadPoolExecutor(1, thread_name_prefix="feeds-upgrade")
        try:
            self._upgrade = pool.submit(self._build, path, config)
        finally:
            pool.shutdown(wait=False)

    def _build(self, path: Path, config: SiteConfig) -> IndexStore:
        store = IndexStore(path)
        try:
            with store.exclusive():
                if not store.ready(config_key(config)):
                    indexing.load(config, store, lambda ids: self._ledger.first_seen(ids, self._clock()))
        except BaseException:
            store.close()
            raise
        return store

    def _poll_upgrade(self) -> None:
        """Switch to this version's index once it is built; then it is checked like any index
        trusted at a start (answers stay uncacheable until then)."""
        now = time.monotonic()
        while self._retired and self._retired[0][0] <= now:
            self._retired.pop(0)[1].close()
            self._swept = False
            self._sweep()
        if self._upgrade is None:
            if self._snapshot.upgrading and now >= self._upgrade_at + REBUILD:
                self._begin_upgrade()
            return
        if not self._upgrade.done():
            return
        future, self._upgrade = self._upgrade, None
        try:
            store = future.result()
        except Exception as exc:
            log.error("upgrade: building this version's index failed, again in %.0f s: %s", REBUILD, exc)
            if self._say("upgrade", f"building this version's index failed ({exc}); serving an earlier one"):
                self._publish(changed=False)
            return
        if self._upgrade_path is None or store.file != self._upgrade_path:
            store.close()  # the config moved on to another index meanwhile
            return
        self._upgrade_path = None
        self._retire(self._snapshot.store)
        self._say("upgrade", None)
        self._data_version = store.data_version()
        self._publish(store=store, verified=False, upgrading=False)
        log.info("upgrade: switched to %s; comparing every file with it", store.file.name)

    def _sweep(self) -> None:
        """Once after a start or a switch: delete earlier versions' indexes nobody has open."""
        if self._swept or self._retired or self._snapshot.upgrading or self._state_dir is None:
            return
        self._swept = True
        try:
            remove_superseded(self._state_dir, self._snapshot.config)
        except (OSError, StoreError) as exc:
            log.warning("index: could not tidy earlier versions' indexes: %s", exc)

    def _retire(self, store: IndexStore) -> None:
        """Close ``store`` once the requests that may still read it are done."""
        self._retired.append((time.monotonic() + RETIRE, store))

    # -- the check after a start --------------------------------------------------------------

    def _poll_check(self) -> None:
        self._poll_validation()
        if self._snapshot.verified or self._snapshot.upgrading:
            return  # an index standing in is not checked: the one replacing it will be
        if self._check is None:
            self._begin_check()
            return
        if not self._check.done():
            return
        future, self._check = self._check, None
        try:
            stale = future.result()
        except Exception:
            log.exception("checking the files against the index failed; checking here")
            self.check()
            stale = []
        if stale:
            log.info("%d article file(s) changed since the index was written", len(stale))
            self._read(stale, force=stale)
        self._verified(self._check_from)
        if self._check_lock is not None:
            self._check_lock.close()
            self._check_lock = None
        if self._watcher is not None:
            self._watcher.upgrade(background=True)
        self._validation = _aside(indexing.malformed_aside, self._snapshot.store)

    def _poll_validation(self) -> None:
        """Read again the files whose rows would not decode, once the whole rows are checked."""
        if self._validation is None or not self._validation.done():
            return
        future, self._validation = self._validation, None
        try:
            malformed = future.result()
        except Exception:
            log.exception("checking the index's rows failed; rows are still checked as they are read")
            return
        if malformed:
            log.info("%d index row(s) did not decode; reading their files again", len(malformed))
            self._read(malformed, force=malformed)

    def _begin_check(self) -> None:
        """Take the check lock if free; adopt another worker's check if it covers our start."""
        store, config = self._snapshot.store, self._snapshot.config
        stack = ExitStack()
        if not stack.enter_context(store.first_to_check()):
            stack.close()
            return  # another worker is checking: look again on the next tick
        checked = store.info("checked")
        try:
            covers = checked is not None and float(checked) >= self._started
        except ValueError:
            covers = False
        if covers:  # a check that began after we started watching saw everything we could miss
            stack.close()
            self._verified(float(checked or 0))
            if self._watcher is not None:
                self._watcher.upgrade(background=True)
            return
        self._check_lock = stack
        self._check_from = time.time()
        count = self._snapshot.articles
        # The stamps only: documents wait for this, and a row that would not decode is never
        # published anyway; the whole rows are checked after it (_poll_validation).
        self._check = _aside(indexing.stale, config, store, count, None, False)


def _is_picture(rel: str) -> bool:
    """A picture's path, or a folder's (which may hold pictures)."""
    suffix = os.path.splitext(rel)[1].lower()
    return suffix in PICTURE_TYPES or (not suffix and not rel.lower().endswith(SUFFIXES))


def _aside(work: Callable[..., list[str]], *args: object) -> Future[list[str]]:
    """``work`` on a thread of its own (``feeds-check``), its result taken on a later tick."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="feeds-check")
    try:
        return pool.submit(work, *args)
    finally:
        pool.shutdown(wait=False)


def now_utc() -> datetime:
    return datetime.now(UTC)
