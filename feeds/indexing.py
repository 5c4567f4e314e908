"""Reading many article files into the index: the cold start, and the check after a restart.

A cold start parses every file into an emptied index, in parallel when there are enough to pay
for the processes (each parser process writes its rows itself: the worker would otherwise spend
a core unpickling a million records). A warm start trusts an index made by the same code and
config, and :func:`stale_paths` compares each file's size and mtime with it, so a stale index
costs a read, never a wrong answer.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from . import spawning
from .articles import read_body
from .config import SiteConfig
from .parsing import teaser
from .pictures import media_url
from .records import FirstSeen, Record, parse_file, refused
from .selection import specs_for_topics
from .sources import Listed, prefetch, probe, read_source, scan
from .store import IndexStore, Reader, config_key

log = logging.getLogger(__name__)
PARALLEL_FROM = 5000  # a cold start with fewer files to parse stays in one process
CHUNK = 2000
LEAD = 10  # chunks the read-ahead may be ahead of the parsers (20,000 files: tens of MB of page cache)
SUMMARIZED = 5_000  # entries of summary-only feeds whose summary a cold start works out (0.5 ms each)
_MISSING = re.compile(r"^(?:image: |picture )(?P<rel>.+): no such file")  # as parsing reports it


def _parse_chunk(config: SiteConfig, rels: list[str]) -> list[tuple[str, Record | None]]:
    """Records of a bulk load: without the summary's digest, which would take rendering every
    body (it comes when a file is read again after a change)."""
    return [(rel, parse_file(config, rel, teaser=False)[0]) for rel in rels]


def _parse_into(config: SiteConfig, db_path: str, rels: list[str]) -> int:
    """In a parser process: parse files and write their rows to the index being built.

    Rows go straight to the database rather than back through a pipe: the worker that started
    the pool would otherwise spend a core unpickling a million records.
    """
    rows = [(rel, record) for rel, record in _parse_chunk(config, rels) if record is not None]
    IndexStore.append(Path(db_path), rows)
    return len(rows)


def parse_all(config: SiteConfig, rels: list[str]) -> Iterator[tuple[str, Record | None]]:
    """Parse many files, on every core when there are enough to pay for the processes."""
    if len(rels) < PARALLEL_FROM or spawning.cores() < 2:
        yield from _parse_chunk(config, rels)
        return
    chunks = [rels[i : i + CHUNK] for i in range(0, len(rels), CHUNK)]
    results: list[list[tuple[str, Record | None]]] = []
    try:
        with spawning.pool(spawning.cores()) as pool:
            results = list(pool.map(_parse_chunk, [config] * len(chunks), chunks))
    except (BrokenProcessPool, OSError, RuntimeError) as exc:  # e.g. a script without a main guard
        log.warning("parallel parsing unavailable (%s); parsing in this process", exc)
        results = [_parse_chunk(config, rels)]
    for done in results:
        yield from done


def load(config: SiteConfig, db: IndexStore, first_seen: FirstSeen) -> None:
    """A cold start: every candidate file parsed into the emptied index, then derived and dated.

    A large archive on a database file is parsed by one process per core (and one more, to keep
    the cores busy while others wait for the disk), each writing its rows itself; they start on
    the first files listed while the rest of the folder is still being listed, and a thread here
    asks the kernel for the files of the next chunks meanwhile (:class:`_ReadAhead`).
    """
    started = time.perf_counter()
    db.reset(config_key(config))
    listing = _Listing(scan(config.articles_dir))
    head = list(itertools.islice(listing, PARALLEL_FROM))
    names: Iterable[str] = itertools.chain(head, listing)  # what is left to parse here
    if db.path is not None and len(head) == PARALLEL_FROM and spawning.cores() >= 2:
        ahead = _ReadAhead(config.articles_dir)
        try:
            with spawning.pool(spawning.cores() + 1) as pool:
                chunks = ahead.handed(_batched(names, CHUNK))
                for _ in pool.map(
                    _parse_into, itertools.repeat(config), itertools.repeat(str(db.file)), chunks
                ):
                    ahead.finished()
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            log.warning("parallel parsing unavailable (%s); parsing in this process", exc)
            db.reset(config_key(config))  # what the processes wrote goes: every file is read again
            listing = _Listing(scan(config.articles_dir))
            names = listing
        finally:
            ahead.stop()
    db.insert((rel, record) for rel, record in parse_all(config, list(names)) if record is not None)
    db.insert((item.rel, refused(item.rel, item.refusal)) for item in listing.refused if item.refusal)
    parsed = time.perf_counter()
    db.finish(first_seen)
    teasers = summarized(config, db)
    log.info(
        "indexed %d files: parsed in %.1f s, tables derived in %.1f s, %d summaries worked out",
        listing.count,
        parsed - started,
        time.perf_counter() - parsed,
        teasers,
    )


class _Listing:
    """The names of the files to parse, one at a time as the folder is listed; those refused
    unread (:func:`~feeds.sources.scan`) are kept aside."""

    def __init__(self, items: Iterable[Listed]) -> None:
        self.refused: list[Listed] = []
        self.count = 0
        self._names = self._split(items)

    def _split(self, items: Iterable[Listed]) -> Iterator[str]:
        for item in items:
            self.count += 1
            if item.refusal is None:
                yield item.rel
            else:
                self.refused.append(item)

    def __iter__(self) -> Iterator[str]:
        return self._names


class _ReadAhead:
    """Asks the kernel for the files of the chunks handed to the parser processes, in order, at
    most :data:`LEAD` chunks ahead of the last one parsed, on one thread of the worker.

    A cold read costs the kernel about 30 µs of CPU per file wherever it is made; made here, it
    overlaps the parsing, and the parser processes keep their one thread: prefetching threads
    in each of them cost a seventh of their CPU in switches, even with every file cached.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._chunks: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._moved = threading.Condition()
        self._parsed = 0  # chunks parsed, counted in the order they were handed
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="feeds-read-ahead", daemon=True)
        self._thread.start()

    def handed(self, chunks: Iterable[list[str]]) -> Iterator[list[str]]:
        """``chunks``, each noted to be read ahead as it is handed on."""
        for chunk in chunks:
            self._chunks.put(chunk)
            yield chunk

    def finished(self) -> None:
        """The oldest chunk not yet counted was parsed."""
        with self._moved:
            self._parsed += 1
            self._moved.notify()

    def stop(self) -> None:
        with self._moved:
            self._stopped = True
            self._moved.notify()
        self._chunks.put(None)
        self._thread.join()

    def _run(self) -> None:
        handed = 0
        while (chunk := self._chunks.get()) is not None:
            with self._moved:
                while not self._stopped and handed - self._parsed >= LEAD:
                    self._moved.wait()
                if self._stopped:
                    return
            prefetch(self._root, chunk)
            handed += 1


def _batched(names: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(names)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def summarized(config: SiteConfig, db: IndexStore) -> int:
    """After a bulk load (which leaves them unknown): the summaries' digests of the entries that
    summary-only feeds show now (up to ``SUMMARIZED``), from their bodies read again (no other
    parsing). Those feeds are then known by their keys alone from the first change on, instead
    of being rendered to tell."""
    now = datetime.now(UTC)
    with db.read() as reader:
        topics = reader.topics(now) if config.topic_feeds else {}
        specs = [s for s in specs_for_topics(config, topics) if s.content != "full"]
        metas = {m.path: m for s in specs for m in reader.select(s, now) if not m.teaser}
    found = []
    for rel in sorted(metas)[:SUMMARIZED]:
        meta = metas[rel]
        try:
            body = read_body(read_source(config.articles_dir, rel, config.max_article_bytes), meta)
        except OSError:
            continue
        if body is not None:  # else changed since: the writer reads it again
            found.append((rel, meta.body_digest, meta.given_summary, teaser(meta, body, config)))
    db.set_teasers(found)
    return len(found)


def stale_paths(config: SiteConfig, known: Iterable[tuple[str, int, int, bool]]) -> list[str]:
    """Paths whose file is not the version indexed (changed, new, gone), by size and mtime.

    ``known``: (path, size, mtime_ns, has metadata) per indexed file, sorted by path; size -1
    asks for a read. The listing is kept as sorted names only and merged with ``known``: a
    million files cost a list of names, not two maps of them.
    """
    root = config.articles_dir
    base = os.path.join(root, "")  # joined once: a million joins were a tenth of the check
    refused: set[str] = set()
    listed: list[str] = []
    for item in scan(root):
        listed.append(item.rel)
        if item.refusal is not None:
            refused.add(item.rel)
    listed.sort()
    stale: list[str] = []
    i = 0
    for rel, size, mtime_ns, has_meta in known:
        while i < len(listed) and listed[i] < rel:
            stale.append(listed[i])  # new since the index was written
            i += 1
        if i == len(listed) or listed[i] != rel:
            stale.append(rel)  # gone
            continue
        i += 1
        if rel in refused:
            if has_meta:  # was an article, now a pipe or a link out of the folder
                stale.append(rel)
        elif size < 0 or not _unchanged(base + rel, size, mtime_ns):
            stale.append(rel)
    stale += listed[i:]
    return sorted(stale)


def _niced() -> None:
    spawning.die_with_parent()
    os.nice(10)


def _stale_in_child(config: SiteConfig, db_path: str, validate: bool = True) -> list[str]:
    store = IndexStore(Path(db_path))
    try:
        return _stale_all(config, store, validate)
    finally:
        store.close()


def _stale_all(config: SiteConfig, store: IndexStore, validate: bool = True) -> list[str]:
    with store.read() as reader:
        pictures = stale_pictures(config, reader)
    return sorted(set(stale_paths(config, store.stamps(validate))) | set(pictures))


def showing(config: SiteConfig, reader: Reader, changed: Collection[str]) -> list[str]:
    """Article paths whose entries show one of the pictures ``changed`` (paths under the articles
    folder; a folder stands for everything under it): by their image's URL, or by a problem
    naming the picture (one that was missing or refused). A picture changes an entry's length
    and type, never its file, so these are read again although their files did not change."""
    prefix = media_url(config, "")
    found: set[str] = set()
    for path, image, _, _ in reader.pictured(prefix):
        if _within(unquote(image[len(prefix) :]), changed):
            found.add(path)
    for path, problems in reader.problems_of():  # a set lookup per problem, however many changed
        if any(_within(rel, changed) for p in problems for rel in _named(p.message)):
            found.add(path)
    return sorted(found)


def _within(rel: str, changed: Collection[str]) -> bool:
    """``rel`` or a folder holding it is in ``changed``."""
    parts = rel.split("/")
    return any("/".join(parts[:n]) in changed for n in range(1, len(parts) + 1))


def _named(message: str) -> Iterator[str]:
    """The picture paths a problem may name ("image: <rel>: why", "picture <rel>: why"); a path
    may hold ": " too, so every cut is a candidate."""
    for head in ("image: ", "picture "):
        if message.startswith(head):
            rest = message[len(head) :]
            cut = rest.find(": ")
            while cut > 0:
                yield rest[:cut]
                cut = rest.find(": ", cut + 1)


def stale_pictures(config: SiteConfig, reader: Reader) -> list[str]:
    """Article paths whose picture is not what the index says: changed, gone or refused since,
    or missing then and there now (pictures changed while no server watched)."""
    root, prefix = config.articles_dir, media_url(config, "")
    stale = []
    for path, image, length, media_type in reader.pictured(prefix):
        now = probe(root, unquote(image[len(prefix) :]))
        if now.refusal is not None or (now.size, now.media_type) != (length, media_type):
            stale.append(path)
    for path, problems in reader.problems_of():
        for problem in problems:
            missing = _MISSING.match(problem.message)
            if missing is not None and probe(root, missing["rel"]).refusal != "no such file":
                stale.append(path)
                break
    return stale


def _malformed_in_child(db_path: str) -> list[str]:
    store = IndexStore(Path(db_path))
    try:
        return [path for path, size, _, _ in store.stamps() if size < 0]
    finally:
        store.close()


def malformed_aside(store: IndexStore) -> list[str]:
    """Paths of rows that would not decode, read in a process of low priority (a million rows
    take 20 s to read whole and check: after a start, the documents need not wait for that,
    since a row that does not decode is never published; this finds the drafts and embargoed
    articles no document has asked for yet)."""
    if store.path is None:
        return [path for path, size, _, _ in store.stamps() if size < 0]
    try:
        with spawning.pool(1, _niced) as pool:
            return pool.submit(_malformed_in_child, str(store.file)).result()
    except (BrokenProcessPool, OSError, RuntimeError) as exc:
        log.warning("checking the index's rows in a separate process failed (%s); checking here", exc)
        return _malformed_in_child(str(store.file))


def stale_paths_aside(config: SiteConfig, db_path: Path, validate: bool = True) -> list[str]:
    """:func:`stale_paths` for the index file at ``db_path``, in a process of low priority.

    A million files take about 13 s to list, ``stat`` and compare; in a thread of the worker
    that would hold the interpreter's lock against its requests (and changes) all that time,
    while a niced process only takes what the cores leave over.
    """
    try:
        with spawning.pool(1, _niced) as pool:
            return pool.submit(_stale_in_child, config, str(db_path), validate).result()
    except (BrokenProcessPool, OSError, RuntimeError) as exc:
        log.warning("checking the files in a separate process failed (%s); checking here", exc)
        return _stale_in_child(config, str(db_path), validate)


def _unchanged(path: str, size: int, mtime_ns: int) -> bool:
    """Whether the file at ``path`` has the size and mtime indexed (the file's :class:`Stamp`)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns


def stale(
    config: SiteConfig, store: IndexStore, count: int, aside: bool | None = None, validate: bool = True
) -> list[str]:
    """Article paths whose file changed, appeared or went since the index read them (with
    ``validate``, also those whose row would not decode: see :func:`malformed_aside`).

    ``count``: how many articles the index holds; a large one is checked in a niced process
    (unless ``aside`` is False: nothing else runs yet), so that requests keep the interpreter.
    """
    if aside is None:
        aside = count >= PARALLEL_FROM
    if store.path is None or not aside:
        return _stale_all(config, store, validate)
    return sorted(set(stale_paths_aside(config, store.file, validate)) | set(store.take_suspects()))
