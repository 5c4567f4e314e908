"""The article index: every file's metadata in memory, kept current file by file.

A change to one file costs work proportional to that file: its new metadata replaces the old
one in the id table and in the newest-first lists (overall and per topic) by binary search.
Bodies are not kept; documents render the few entries they show. The index reads nothing from
disk: records arrive already parsed (:mod:`feeds.records`), so no parse runs under its lock.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from .articles import Meta
from .config import FeedSpec, SiteConfig
from .errors import Problem
from .records import Record
from .selection import matches

log = logging.getLogger(__name__)


def _key(meta: Meta) -> tuple[float, str]:
    return (-meta.published.timestamp(), meta.id)


def _updated_key(meta: Meta) -> tuple[float, str]:
    return (-meta.updated.timestamp(), meta.id)


class NewestFirst:
    """Metas sorted newest first (ties by id), with O(log n) search and memmove updates.

    Keys are computed during the binary search rather than stored: at 100,000 articles a list
    of key tuples per ordering would cost tens of megabytes.
    """

    __slots__ = ("metas", "key")

    def __init__(self, key: Callable[[Meta], tuple[float, str]] = _key) -> None:
        self.metas: list[Meta] = []
        self.key = key

    @classmethod
    def of(cls, metas: Iterable[Meta], key: Callable[[Meta], tuple[float, str]]) -> NewestFirst:
        result = cls(key)
        result.metas = sorted(metas, key=key)
        return result

    def add(self, meta: Meta) -> None:
        self.metas.insert(bisect.bisect_left(self.metas, self.key(meta), key=self.key), meta)

    def remove(self, meta: Meta) -> None:
        wanted = self.key(meta)
        i = bisect.bisect_left(self.metas, wanted, key=self.key)
        if i < len(self.metas) and self.key(self.metas[i]) == wanted:
            del self.metas[i]

    def first_published(self, now: datetime) -> int:
        """Index of the first entry visible at ``now`` (embargoed ones sort first)."""
        return bisect.bisect_left(self.metas, (-now.timestamp(), ""), key=_key)

    def published(self, now: datetime) -> Iterator[Meta]:
        return itertools.islice(self.metas, self.first_published(now), None)

    def has_published(self, now: datetime) -> bool:
        return bool(self.metas) and self.metas[-1].published <= now

    def __len__(self) -> int:
        return len(self.metas)


@dataclass
class Index:
    """Mutated only through :meth:`apply`; read under ``lock`` when several reads must agree.

    Holds the records of every candidate file, with metas already dated (see
    :func:`feeds.records.dated`); builds nothing from the disk itself.
    """

    config: SiteConfig
    records: dict[str, Record] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _claims: dict[str, list[str]] = field(default_factory=dict)  # id -> paths, sorted
    _by_id: dict[str, Meta] = field(default_factory=dict)
    _all: NewestFirst = field(default_factory=NewestFirst)
    _topics: dict[str, NewestFirst] = field(default_factory=dict)
    _by_updated: NewestFirst = field(default_factory=lambda: NewestFirst(_updated_key))
    _names: dict[str, dict[str, str]] = field(default_factory=dict)  # slug -> path -> spelling
    _spelling: dict[str, tuple[str, str]] = field(default_factory=dict)  # slug -> first (path, name)
    _revision: int = 0  # moves with every record taken in, visible or not
    _problems: tuple[int, list[Problem]] | None = None

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def of(cls, config: SiteConfig, metas: Iterable[Meta]) -> Index:
        """An index of articles already in memory (tests, tools); no files are read."""
        return cls.build(config, {m.path: Record(m, m.version) for m in metas})

    @classmethod
    def build(cls, config: SiteConfig, records: dict[str, Record]) -> Index:
        index = cls(config)
        index._rebuild(records)
        return index

    def apply(self, rel: str, record: Record | None) -> bool:
        """Take in one file as just read (None: it is gone); True if anything visible changed.

        A file that stops parsing or cannot be read for a moment keeps its last good version
        until a complete one is read, so readers never see a truncated or missing entry.
        """
        with self.lock:
            self._revision += 1
            old = self.records.get(rel)
            if record is None:
                if old is None:
                    return False
                self._drop(rel)
                return True
            if record.meta is None and record.retry and old is not None and old.meta is not None:
                note = Problem(rel, None, "keeping the last good version until the file reads again")
                self._put(rel, Record(old.meta, old.stamp, (*record.problems, note)))
                return False
            self._put(rel, record)
            return old is None or old.meta != record.meta

    def paths_under(self, rel_dir: str) -> list[str]:
        """Paths known under a folder (for a folder that was moved or deleted)."""
        prefix = rel_dir.rstrip("/") + "/"
        with self.lock:
            return [p for p in self.records if p.startswith(prefix) or not rel_dir]

    # -- bookkeeping --------------------------------------------------------------------------

    def _rebuild(self, records: dict[str, Record]) -> None:
        """All structures from scratch: one sort each instead of 100,000 insertions."""
        self.records = records
        self._claims, self._by_id, self._topics, self._names, self._spelling = {}, {}, {}, {}, {}
        for rel in sorted(records):
            meta = records[rel].meta
            if meta is not None:
                self._claims.setdefault(meta.id, []).append(rel)
        winners = [m for m in (records[paths[0]].meta for paths in self._claims.values()) if m]
        self._by_id = {m.id: m for m in winners}
        shown = [m for m in winners if not m.draft]
        self._all = NewestFirst.of(shown, _key)
        self._by_updated = NewestFirst.of(shown, _updated_key)
        for meta in self._all.metas:  # already newest first: each topic's list comes out sorted
            for topic in meta.topics:
                bucket = self._topics.get(topic.slug)
                if bucket is None:
                    bucket = self._topics[topic.slug] = NewestFirst(_key)
                bucket.metas.append(meta)
                self._names.setdefault(topic.slug, {})[meta.path] = topic.name
        for slug, names in self._names.items():
            first = min(names)
            self._spelling[slug] = (first, names[first])

    def _put(self, rel: str, record: Record) -> None:
        if rel in self.records:
            self._unlink(rel)
        self.records[rel] = record
        meta = record.meta
        if meta is None:
            return
        paths = self._claims.setdefault(meta.id, [])
        bisect.insort(paths, rel)
        if paths[0] == rel:
            displaced = self._by_id.get(meta.id)
            if displaced is not None:
                self._unpublish(displaced)
            self._publish(meta)

    def _drop(self, rel: str) -> None:
        self._unlink(rel)
        del self.records[rel]

    def _unlink(self, rel: str) -> None:
        record = self.records.get(rel)
        if record is None or record.meta is None:
            return
        meta = record.meta
        paths = self._claims.get(meta.id, [])
        was_winner = bool(paths) and paths[0] == rel
        if rel in paths:
            paths.remove(rel)
        if was_winner:
            self._unpublish(meta)
            if paths:
                heir = self.records[paths[0]].meta
                if heir is not None:
                    self._publish(heir)
        if not paths:
            self._claims.pop(meta.id, None)

    def _publish(self, meta: Meta) -> None:
        self._by_id[meta.id] = meta
        if meta.draft:
            return
        self._all.add(meta)
        for topic in meta.topics:
            self._topics.setdefault(topic.slug, NewestFirst()).add(meta)
            self._names.setdefault(topic.slug, {})[meta.path] = topic.name
            first = self._spelling.get(topic.slug)
            if first is None or meta.path <= first[0]:
                self._spelling[topic.slug] = (meta.path, topic.name)
        self._by_updated.add(meta)

    def _unpublish(self, meta: Meta) -> None:
        self._by_id.pop(meta.id, None)
        if meta.draft:
            return
        self._all.remove(meta)
        for topic in meta.topics:
            bucket = self._topics.get(topic.slug)
            if bucket is not None:
                bucket.remove(meta)
                if not bucket:
                    del self._topics[topic.slug]
            names = self._names.get(topic.slug, {})
            names.pop(meta.path, None)
            if not names:
                self._names.pop(topic.slug, None)
                self._spelling.pop(topic.slug, None)
            elif self._spelling.get(topic.slug, ("",))[0] == meta.path:
                path = min(names)  # only when the topic's first article (by path) leaves
                self._spelling[topic.slug] = (path, names[path])
        self._by_updated.remove(meta)

    # -- queries (call with ``lock`` held when consistency across calls matters) -------------

    def problems(self) -> list[Problem]:
        """Every file's problems, sorted; computed once per change (``/healthz`` asks often)."""
        with self.lock:
            if self._problems is not None and self._problems[0] == self._revision:
                return list(self._problems[1])
            found = [p for r in self.records.values() for p in r.problems]
            for article_id, paths in self._claims.items():
                for rel in paths[1:]:
                    found.append(
                        Problem(rel, None, f"id {article_id!r} is already used by {paths[0]}; left out")
                    )
            result = sorted(found, key=lambda p: (p.path, p.line or 0))
            self._problems = (self._revision, result)
        return list(result)

    def article(self, article_id: str, now: datetime) -> Meta | None:
        meta = self._by_id.get(article_id)
        return meta if meta is not None and meta.is_published(now) else None

    def articles(self) -> list[Meta]:
        """Every article that holds its id (drafts and embargoed ones included), by path."""
        with self.lock:
            return sorted(self._by_id.values(), key=lambda m: m.path)

    def published(self, now: datetime) -> Iterator[Meta]:
        return self._all.published(now)

    def count(self) -> int:
        return len(self._by_id)

    def topics(self, now: datetime) -> dict[str, str]:
        """Visible topics: slug -> the spelling of the first article (by path) that uses it."""
        return {
            slug: self._spelling[slug][1]
            for slug, bucket in sorted(self._topics.items())
            if bucket.has_published(now)
        }

    def topic_slugs(self) -> frozenset[str]:
        """Topics of every article that is or will be published (drafts aside)."""
        with self.lock:
            return frozenset(self._names)

    def select(self, spec: FeedSpec, now: datetime, limit: int | None = None) -> list[Meta]:
        """A feed's entries, newest first, at most ``limit`` (default the feed's own; 0: all).

        Walks only the topics the feed names.
        """
        wanted = spec.limit if limit is None else limit
        chosen: list[Meta] = []
        seen: set[str] = set()
        for meta in self._stream(spec, now):
            if meta.id in seen or not matches(spec, meta):
                continue
            seen.add(meta.id)
            chosen.append(meta)
            if len(chosen) == wanted:
                break
        return chosen

    def total(self, spec: FeedSpec, now: datetime) -> int:
        """How many entries the feed has in all (its archive's size), without a walk when it can."""
        if not (spec.exclude_topics or spec.tags or len(spec.topics) > 1):
            bucket = self._topics.get(spec.topics[0]) if spec.topics else self._all
            return 0 if bucket is None else len(bucket) - bucket.first_published(now)
        return len(self.select(spec, now, 0))

    def _stream(self, spec: FeedSpec, now: datetime) -> Iterable[Meta]:
        if not spec.topics:
            return self.published(now)
        buckets = [self._topics[t].published(now) for t in spec.topics if t in self._topics]
        if len(buckets) > 1:
            return heapq.merge(*buckets, key=_key)
        return buckets[0] if buckets else iter(())

    def newest(self, now: datetime) -> datetime | None:
        """The newest ``updated`` among visible articles (not only the newest published)."""
        return next((m.updated for m in self._by_updated.metas if m.published <= now), None)

    def next_release(self, now: datetime) -> datetime | None:
        future = [m.published for m in self._all.metas[: self._all.first_published(now)]]
        return min(future) if future else None
