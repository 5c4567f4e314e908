"""Live reload: file-system events feed changed paths to the site, in every worker process.

Events come from inotify (watchdog), so nothing polls the folder and a request never touches
the disk. A modified file is read only once its writer has closed it (or renamed it into
place), so an editor or rsync caught mid-write is never published half-done. Events are
gathered for a short moment so a burst (a git pull, an rsync of a folder) is one reload.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .articles import SUFFIXES
from .site import Site
from .sources import scan

log = logging.getLogger(__name__)
QUIET = 0.05  # seconds without events before a batch is applied
MAX_WAIT = 0.5  # a steady stream of events still gets applied this often
DEFER = 1.0  # a created file opened by someone is read once unchanged this long
OPENED_KEPT = 4096  # recently opened paths remembered (to tell a new file from a moved-in one)


# While the index is read, our own reads of every file would each bring an open and a close
# event, handled in Python, competing with the load: the early observer does not ask for them.
WITHOUT_OPENS = [
    FileCreatedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]


class _Handler(FileSystemEventHandler):
    def __init__(
        self, events: queue.SimpleQueue[tuple[str, str]], closes_reported: bool, sees_opens: bool = True
    ) -> None:
        self.events = events
        self.closes_reported = closes_reported
        self.sees_opens = sees_opens
        self.opened: dict[str, float] = {}  # path -> when it was last opened

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            self.events.put(("gone", src))
            self.events.put(("dir" if event.is_directory else "file", os.fsdecode(event.dest_path)))
        elif isinstance(event, FileDeletedEvent | DirDeletedEvent):
            self.events.put(("gone", src))
        elif isinstance(event, DirCreatedEvent):
            self.events.put(("dir", src))
        elif isinstance(event, FileClosedEvent):
            self.events.put(("file", src))
        elif isinstance(event, FileCreatedEvent):
            self.opened.pop(src, None)
            # Created by a writer (an open follows: wait for its close) or moved in from
            # outside the tree (nothing follows: read it).
            if not self.closes_reported:
                self.events.put(("file", src))
            else:
                self.events.put(("created" if self.sees_opens else "created-unseen", src))
        elif isinstance(event, FileOpenedEvent):
            # Not queued: every read (ours, the other workers') opens files, and queued events
            # would keep a batch open. Only consulted to tell a new file from a moved-in one.
            self.opened[src] = time.monotonic()
            if len(self.opened) > OPENED_KEPT:
                self.opened.clear()
        elif isinstance(event, FileModifiedEvent) and not self.closes_reported:
            self.events.put(("file", src))  # polling fallback: no close events to wait for


class Watcher:
    """Watches the articles folder and the config file of one site.

    Observing can begin before the site exists (:meth:`observing`), so that what changes while
    the index is read queues up as events; a watcher started on a loaded site (after a fork)
    first compares the files with the index instead.
    """

    def __init__(self, config_path: Path, articles_dir: Path) -> None:
        self.config_path = config_path
        self.articles_dir = articles_dir
        self.site: Site | None = None
        self.events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.observer: BaseObserver | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeds-watch", daemon=True)
        self._handler: _Handler | None = None
        self._deferred: dict[str, float] = {}  # files to look at again once quiet, and when
        self._catch_up_first = True

    @classmethod
    def observing(cls, config_path: Path, articles_dir: Path) -> Watcher:
        """A watcher whose events queue up until :meth:`start` gives it the site."""
        watcher = cls(config_path, articles_dir)
        watcher._begin_observing(sees_opens=False)
        watcher._catch_up_first = False
        return watcher

    def start(self, site: Site) -> None:
        self.site = site
        self.articles_dir = site.config.articles_dir  # the config may have changed meanwhile
        early = self.observer
        if early is not None and site.trusted:
            # An index from an earlier run: files may have changed since. They are compared with
            # it on a thread of their own, so changes made meanwhile are applied at once, and
            # under the early observer, which asks for no open events: the check lists every
            # folder, and a million articles' worth of those would overflow inotify's queue.
            self._thread.start()
            checker = threading.Thread(
                target=self._check_then_observe, args=(site, early), name="feeds-check", daemon=True
            )
            checker.start()
        else:
            self._begin_observing()  # the full observer; the early one stops once it runs: no gap
            if early is not None:
                early.stop()
            self._thread.start()
        site.set_watched(True)
        log.info("watching %s and %s for changes", self.articles_dir, self.config_path)

    def _check_then_observe(self, site: Site, early: BaseObserver) -> None:
        try:
            with site.checking() as mine:
                if mine:  # one worker checks for all: the index is shared
                    self._catch_up(site)
        except Exception:
            log.exception("checking the files against the index failed")
        finally:
            if not self._stop.is_set():
                self._begin_observing()
                early.stop()

    def _begin_observing(self, sees_opens: bool = True) -> None:
        try:
            self.observer = self._observe(Observer(), closes_reported=True, sees_opens=sees_opens)
        except OSError as exc:  # e.g. the inotify watch limit; slower but still live
            log.warning("inotify unavailable (%s); polling for changes every second", exc)
            self.observer = self._observe(PollingObserver(timeout=1), closes_reported=False)

    def _observe(
        self, observer: BaseObserver, closes_reported: bool, sees_opens: bool = True
    ) -> BaseObserver:
        handler = _Handler(self.events, closes_reported, sees_opens)
        if sees_opens or self._handler is None:
            self._handler = handler
        wanted = None if sees_opens or not closes_reported else WITHOUT_OPENS
        observer.schedule(handler, str(self.articles_dir), recursive=True, event_filter=wanted)
        observer.schedule(
            handler, str(self.config_path.resolve().parent), recursive=False, event_filter=wanted
        )
        observer.daemon = True
        observer.start()
        return observer

    def stop(self) -> None:
        self._stop.set()
        if self.site is not None:
            self.site.set_watched(False)
        if self.observer is not None:
            self.observer.stop()

    def _run(self) -> None:
        site = self.site
        assert site is not None, "start() gives the watcher its site"
        if self._catch_up_first:
            try:
                with site.checking() as mine:
                    if mine or not site.trusted:  # a trusted index is checked by one worker for all
                        self._catch_up(site)
            except Exception:
                log.exception("catching up with changes made during start-up failed")
        while not self._stop.is_set():
            try:
                first = self.events.get(timeout=0.25)
            except queue.Empty:
                self._release_deferred()
                continue
            batch = [first]
            started = time.monotonic()
            while time.monotonic() - started < MAX_WAIT:
                try:
                    batch.append(self.events.get(timeout=QUIET))
                except queue.Empty:
                    break
            try:
                self._apply(site, batch)
            except Exception:  # a reload must never kill the watcher
                log.exception("reload failed; keeping what was served before")

    def _apply(self, site: Site, batch: list[tuple[str, str]]) -> None:
        config_file = site.config_path.resolve()
        root = site.config.articles_dir
        paths: set[str] = set()
        config_changed = False
        for kind, raw in batch:
            if kind == "created-unseen" or (
                kind == "created" and self._handler is not None and raw in self._handler.opened
            ):
                # Opened since it was created (or opens are not observed): a writer whose close
                # will follow, or a reader of a file moved in. Look again once it has been quiet.
                self._deferred[raw] = time.monotonic() + DEFER
                continue
            self._deferred.pop(raw, None)
            path = Path(raw)
            if path == config_file:
                config_changed = True
                continue
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                continue
            if kind == "dir" or (kind == "gone" and path.suffix.lower() not in SUFFIXES):
                # A folder moved in, out or away: everything known or found under it.
                paths.update(site.known_paths(rel))
                if path.is_dir() and not path.is_symlink():
                    paths.update(listed.rel for listed in scan(root, rel))
            elif path.suffix.lower() in SUFFIXES:
                paths.add(rel)
        paths = {p for p in paths if not any(part.startswith((".", "_")) for part in p.split("/"))}
        if config_changed or paths:
            before = site.config.articles_dir
            site.apply(sorted(paths), config_changed)
            if site.config.articles_dir != before:
                self._rewatch(site.config.articles_dir)

    def _catch_up(self, site: Site) -> None:
        """Read what changed between reading the index and starting the observer.

        That takes seconds for a large archive (or happened in another process before a fork).
        A file modified in the last moment may still be being written: it waits until it has
        been quiet for DEFER seconds, unless its close event comes first.
        """
        root = site.config.articles_dir
        now, ready = time.time(), []
        for rel in site.stale_paths():
            path = os.path.join(root, rel)
            try:
                recent = now - os.stat(path).st_mtime < DEFER
            except OSError:
                recent = False  # gone
            if recent:
                self._deferred[path] = time.monotonic() + DEFER
            else:
                ready.append(rel)
        if ready:
            log.info("%d article file(s) changed since the index was written", len(ready))
            site.apply(ready)
        site.trusted = False

    def _release_deferred(self) -> None:
        now = time.monotonic()
        for raw, due in list(self._deferred.items()):
            if due > now:
                continue
            try:
                quiet = time.time() - os.stat(raw).st_mtime > DEFER
            except OSError:
                quiet = True  # gone: reading it reports that
            if quiet:
                del self._deferred[raw]
                self.events.put(("file", raw))
            else:
                self._deferred[raw] = now + DEFER

    def _rewatch(self, articles_dir: Path) -> None:
        if self.observer is not None:
            self.observer.stop()
        self.articles_dir = articles_dir
        self.observer = self._observe(Observer(), closes_reported=True)
