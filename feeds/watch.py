"""File-system events under the configured paths, for the live writer (:mod:`feeds.live`).

Events come from inotify (watchdog), so nothing polls the articles and a request never touches
the disk for them. inotify watches an inode, while operators deploy by name: a folder swapped
for a new one, a release symlink switched, a folder renamed away and back. So a
:class:`Watcher` also watches the folders that *hold* the configured paths (a rename or a new
link there is seen at once), and :meth:`Watcher.roots` tells which folder and config file the
configured paths name right now; the writer compares that with what is being watched on every
batch and re-watches (and checks every file) when they differ. Events from an observer that
watched an earlier folder carry its ``epoch`` and are dropped: they name the old folder's files
by the new folder's paths.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,
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

log = logging.getLogger(__name__)
QUIET = 0.05  # seconds without events before a batch is handed over
MAX_WAIT = 0.5  # a steady stream of events is still handed over this often
OPENED_KEPT = 4096  # recently opened paths remembered (to tell a new file from a moved-in one)

# While every file is read (a start-up check), our own reads would each bring an open and a
# close event, handled in Python and competing with the reads: the quiet observer asks for none.
WITHOUT_OPENS = [
    FileCreatedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]


class Event(NamedTuple):
    """``kind``: file, dir, gone, created, created-unseen, lost (events were dropped), or holder
    (a holding folder changed)."""

    kind: str
    path: str
    epoch: int


@dataclass(frozen=True)
class Roots:
    """What the configured paths name now: the articles folder's identity, the config file's."""

    articles: tuple[int, int] | None  # (st_dev, st_ino) of the folder; None: it is gone
    config: tuple[int, ...] | None


def identify(articles_dir: Path, config_path: Path) -> Roots:
    """Follows symlinks: a release link switched to another folder is another folder."""
    try:
        st = os.stat(articles_dir)
        folder = (st.st_dev, st.st_ino) if os.path.isdir(articles_dir) else None
    except OSError:
        folder = None
    try:
        cs = os.stat(config_path)
        config: tuple[int, ...] | None = (cs.st_dev, cs.st_ino, cs.st_size, cs.st_mtime_ns, cs.st_ctime_ns)
    except OSError:
        config = None
    return Roots(folder, config)


class _Handler(FileSystemEventHandler):
    """Events of the watched folder, named by the configured path (``named``) rather than the
    real folder that inotify watches (``real``), which a release link may lead to."""

    def __init__(
        self, events: queue.SimpleQueue[Event], epoch: int, closes: bool, opens: bool, real: str, named: str
    ) -> None:
        self.events = events
        self.epoch = epoch
        self.closes = closes  # inotify: a writer's close is reported (polling: only modifications)
        self.opens = opens
        self.real, self.named = real, named
        self.opened: dict[str, float] = {}  # path -> when it was last opened

    def put(self, kind: str, path: str) -> None:
        self.events.put(Event(kind, path, self.epoch))

    def name(self, raw: bytes | str) -> str:
        path = os.fsdecode(raw)
        if path == self.real or path.startswith(self.real + os.sep):
            return self.named + path[len(self.real) :]
        return path

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = self.name(event.src_path)
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            self.put("gone", src)
            self.put("dir" if event.is_directory else "file", self.name(event.dest_path))
        elif isinstance(event, FileDeletedEvent | DirDeletedEvent):
            self.put("gone", src)
        elif isinstance(event, DirCreatedEvent):
            self.put("dir", src)
        elif isinstance(event, FileClosedEvent):
            self.put("file", src)
        elif isinstance(event, FileCreatedEvent):
            self.opened.pop(src, None)
            # Created by a writer (an open follows: wait for its close) or moved in from
            # outside the tree (nothing follows: read it).
            if not self.closes:
                self.put("file", src)
            else:
                self.put("created" if self.opens else "created-unseen", src)
        elif isinstance(event, FileOpenedEvent):
            # Not queued: every read (ours, the other workers') opens files, and queued events
            # would keep a batch open. Only consulted to tell a new file from a moved-in one.
            self.opened[src] = time.monotonic()
            if len(self.opened) > OPENED_KEPT:
                self.opened.clear()
        elif isinstance(event, FileModifiedEvent) and not self.closes:
            self.put("file", src)  # polling fallback: no close events to wait for
        elif isinstance(event, EventsLostEvent):
            self.put("lost", src)  # inotify's queue overflowed (a burst): every file is compared


_CHANGES = (
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,  # closed after writing; not FileClosedNoWriteEvent, a read
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
)


class _Holders(FileSystemEventHandler):
    """Events in the folders holding the configured paths: only those naming them count, and only
    a change of what they are (a rename, a new file or link, a writer's close): the other workers
    read config.yaml too, and a reload for every read would bounce between them."""

    def __init__(self, events: queue.SimpleQueue[Event], names: set[str]) -> None:
        self.events = events
        self.names = names

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not isinstance(event, _CHANGES):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = os.fsdecode(raw)
            if path and path in self.names:
                self.events.put(Event("holder", path, -1))


class Watcher:
    """inotify watches on the articles folder (recursive) and on the folders holding it and the
    config file (not recursive). Owned by the live writer, which alone calls its methods; its
    observer threads only put events into the queue, and the thread of :meth:`upgrade` only
    builds an observer that the writer takes in :meth:`gather`."""

    def __init__(self, config_path: Path, articles_dir: Path) -> None:
        self.config_path = config_path.absolute()
        self.articles_dir = articles_dir.absolute()
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.epoch = 0
        self.watched: Roots = Roots(None, None)  # what the current observer watches
        self._observer: BaseObserver | None = None
        self._holders: BaseObserver | None = None
        self._handler: _Handler | None = None
        self._opens = False  # whether the current observer asks for open events
        self._upgrading: Future[tuple[BaseObserver, _Handler]] | None = None

    def roots(self) -> Roots:
        return identify(self.articles_dir, self.config_path)

    def opened_recently(self, path: str) -> bool:
        return self._handler is not None and path in self._handler.opened

    def watch(self, articles_dir: Path | None = None, *, opens: bool = True) -> Roots:
        """(Re)start the watches on what the configured paths name now; returns that.

        Events still queued from the observer before are dropped by their epoch. With
        ``opens`` False the observer asks for no open events (see WITHOUT_OPENS).
        """
        if articles_dir is not None:
            self.articles_dir = articles_dir.absolute()
        self.epoch += 1
        before = self._observer
        self.watched = self.roots()
        self._observer = None
        if self.watched.articles is not None:
            try:
                self._observer = self._observe(Observer(), closes=True, opens=opens)
            except OSError as exc:  # e.g. the inotify watch limit; slower but still live
                log.warning("inotify unavailable (%s); polling for changes every second", exc)
                try:
                    self._observer = self._observe(PollingObserver(timeout=1), closes=False, opens=opens)
                except OSError as again:
                    log.warning("cannot watch %s: %s", self.articles_dir, again)
        if before is not None:
            before.stop()  # after the new one runs: no gap
        self._opens = opens
        self._watch_holders()
        return self.watched

    def upgrade(self, background: bool = False) -> None:
        """Ask for open events too, once every file has been read: the same folder and epoch, so
        events of the quiet observer still count, and the new one runs before it stops.

        Starting a recursive inotify watch lists the whole tree (2.6 s at a million files), so
        with ``background`` (a large archive, after its check) the new observer is built on a
        thread of its own while the writer goes on taking events from the old one, and
        :meth:`gather` swaps it in.
        """
        if self._observer is None or self._opens or self._upgrading is not None:
            return
        if not background:
            before = self._observer
            try:
                self._observer = self._observe(Observer(), closes=True, opens=True)
            except OSError as exc:
                log.warning("cannot watch %s for open events: %s", self.articles_dir, exc)
                return
            self._opens = True
            before.stop()
            return
        epoch = self.epoch
        pool = ThreadPoolExecutor(1, thread_name_prefix="feeds-watch-upgrade")
        self._upgrading = pool.submit(self._build, Observer(), True, True, epoch)
        pool.shutdown(wait=False)

    def _take_upgrade(self) -> None:
        future = self._upgrading
        if future is None or not future.done():
            return
        self._upgrading = None
        try:
            observer, handler = future.result()
        except OSError as exc:
            log.warning("cannot watch %s for open events: %s", self.articles_dir, exc)
            return
        if handler.epoch != self.epoch or self._observer is None:
            observer.stop()  # the folder was watched anew meanwhile
            return
        before, self._observer, self._handler, self._opens = self._observer, observer, handler, True
        before.stop()

    def _observe(self, observer: BaseObserver, closes: bool, opens: bool) -> BaseObserver:
        observer, handler = self._build(observer, closes, opens, self.epoch)
        if opens or self._handler is None:
            self._handler = handler
        return observer

    def _build(
        self, observer: BaseObserver, closes: bool, opens: bool, epoch: int
    ) -> tuple[BaseObserver, _Handler]:
        """A started observer of the folder the configured path names now (touches no state)."""
        real = os.path.realpath(self.articles_dir)  # inotify watches inodes: the folder it names now
        handler = _Handler(self.events, epoch, closes, opens, real, str(self.articles_dir))
        wanted = None if opens or not closes else WITHOUT_OPENS
        observer.schedule(handler, real, recursive=True, event_filter=wanted)
        observer.daemon = True
        observer.start()
        return observer, handler

    def _watch_holders(self) -> None:
        if self._holders is not None:
            self._holders.stop()
            self._holders = None
        names = {str(self.articles_dir), str(self.config_path)}
        folders = {str(Path(name).parent) for name in names}
        observer = Observer()
        handler = _Holders(self.events, names)
        try:
            for folder in sorted(folders):
                if os.path.isdir(folder):
                    observer.schedule(handler, folder, recursive=False)
            observer.daemon = True
            observer.start()
        except OSError as exc:  # the identity check on every batch still finds every change
            log.warning("cannot watch the folders holding %s: %s", ", ".join(sorted(names)), exc)
            return
        self._holders = observer

    def gather(self, timeout: float) -> list[Event]:
        """The events of one burst (gathered until quiet), or [] after ``timeout``."""
        self._take_upgrade()
        try:
            first = self.events.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        started = time.monotonic()
        while time.monotonic() - started < MAX_WAIT:
            try:
                batch.append(self.events.get(timeout=QUIET))
            except queue.Empty:
                break
        return batch

    def stop(self) -> None:
        if self._upgrading is not None:
            self._upgrading.add_done_callback(_stop_built)
            self._upgrading = None
        for observer in (self._observer, self._holders):
            if observer is not None:
                observer.stop()
        self._observer = self._holders = None


def _stop_built(future: Future[tuple[BaseObserver, _Handler]]) -> None:
    """An observer built for an upgrade after its watcher stopped: stopped too."""
    if future.exception() is None:
        future.result()[0].stop()
