"""The article index: feed queries over :mod:`feeds.indexdb`, and changes taken in file by file.

A document asks for the few entries it shows; each query walks an index of the database in
feed order and stops there, so its cost does not grow with the archive, and neither does the
worker's memory: no article's metadata stays in memory once its document is rendered. A change
to one file rewrites that file's row and settles the ids it touches, in one transaction.

The database may be shared with other workers, which take in the same file changes (each has
its own watcher): :meth:`Index.changed_elsewhere` tells a worker that another one wrote.
"""

from __future__ import annotations

import heapq
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import islice

from .articles import Meta
from .config import FeedSpec, SiteConfig
from .errors import Problem
from .indexdb import ALL, IDS, IndexDB, decode_problems, stamps_after
from .records import Record
from .selection import matches

log = logging.getLogger(__name__)
BATCH = 512  # rows fetched at a time when a walk may go on (filters, whole histories)
STAMPS_BATCH = 10_000  # rows per batch when every file is compared with its row
_F = (
    "f.path, f.size, f.mtime_ns, f.retry, f.problems, f.id, f.title, f.published, f.updated, f.url, "
    "f.permalink, f.topics, f.tags, f.authors, f.language, f.draft, f.image, f.image_type, "
    "f.image_length, f.image_alt, f.sources, f.summary, f.digest, f.body_start, f.dated_by"
)
After = tuple[int, str] | None  # where a walk in feed order stopped: (published, id)


def _key(meta: Meta) -> tuple[float, str]:
    return (-meta.published.timestamp(), meta.id)


class Index:
    """Use under ``lock`` when several reads must agree; changes only through :meth:`apply`."""

    def __init__(self, config: SiteConfig, db: IndexDB, given: Mapping[str, Meta] | None = None) -> None:
        self.config = config
        self.db = db
        self.lock = threading.RLock()
        self._given = dict(given or {})  # metas built in memory (tests, tools), returned as given
        self._revision = 0  # moves with every record taken in here
        self._problems: tuple[tuple[int, int], list[Problem]] | None = None
        self._data_version = self._version()
        self._skipped: set[str] = set()

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def of(cls, config: SiteConfig, metas: Iterable[Meta]) -> Index:
        """An index of articles already in memory (tests, tools); no files are read."""
        given = {m.path: m for m in metas}
        return cls.build(config, {m.path: Record(m, m.version) for m in given.values()}, given)

    @classmethod
    def build(
        cls, config: SiteConfig, records: Mapping[str, Record], given: Mapping[str, Meta] | None = None
    ) -> Index:
        """An index in memory of records already read (and dated)."""
        db = IndexDB(None)
        db.reset(config)
        db.insert(records.items())
        db.finish(lambda ids: {})
        return cls(config, db, given)

    def apply(self, rel: str, record: Record | None) -> bool:
        """Take in one file as just read (None: it is gone); True if anything visible changed.

        A file that stops parsing or cannot be read for a moment keeps its last good version
        until a complete one is read, so readers never see a truncated or missing entry.
        """
        with self.lock:
            self._revision += 1
            self._given.pop(rel, None)
            self._skipped.discard(rel)
            old = self.db.row(rel)
            if record is None:
                if old is None and not self._exists(rel):
                    return False
                self.db.put(rel, None)
                return True
            if record.meta is None and record.retry and old is not None and old.meta is not None:
                note = Problem(rel, None, "keeping the last good version until the file reads again")
                self.db.put(rel, Record(old.meta, old.stamp, (*record.problems, note)))
                return False
            self.db.put(rel, record)
            return old is None or old.meta != _as_stored(self.db, rel, record)

    def changed_elsewhere(self) -> bool:
        """True once after another process (a worker sharing the file) wrote to the index."""
        with self.lock:
            current = self._version()
            if current == self._data_version:
                return False
            self._data_version = current
            return True

    def _version(self) -> int:
        try:
            return int(self.db.db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return 0

    def _exists(self, rel: str) -> bool:
        return self.db.db.execute("SELECT 1 FROM files WHERE path = ?", (rel,)).fetchone() is not None

    def paths_under(self, rel_dir: str) -> list[str]:
        """Paths known under a folder (for a folder that was moved or deleted)."""
        with self.lock:
            if not rel_dir.strip("/"):
                return [r[0] for r in self.db.db.execute("SELECT path FROM files ORDER BY path")]
            prefix = rel_dir.rstrip("/") + "/"
            end = prefix[:-1] + chr(ord("/") + 1)
            rows = self.db.db.execute(
                "SELECT path FROM files WHERE path >= ? AND path < ? ORDER BY path", (prefix, end)
            )
            return [r[0] for r in rows]

    def unreadable(self) -> set[str]:
        """Paths whose row this process could not decode (to be read again)."""
        with self.lock:
            return set(self._skipped)

    def stamps(self) -> Iterator[tuple[str, int, int, bool]]:
        """Every file's (path, size, mtime_ns, has metadata) by path; size -1 asks for a read.

        Read in batches, so a million rows neither sit in memory at once nor hold the lock
        that renders wait for.
        """
        after = ""
        while True:
            with self.lock:
                rows = stamps_after(self.db.db, after, STAMPS_BATCH)
                skipped = set(self._skipped)
            for path, size, mtime_ns, has_meta in rows:
                yield (path, -1 if path in skipped else size, mtime_ns, has_meta)
            if len(rows) < STAMPS_BATCH:
                return
            after = rows[-1][0]

    # -- reading rows -------------------------------------------------------------------------

    def _metas(self, sql: str, params: Iterable[object] = ()) -> list[Meta]:
        """Rows (the ``files`` columns, in order) as metas; a malformed row is left out."""
        return self._metas_of(self.db.db.execute(sql, tuple(params)).fetchall())

    def _walk(self, slug: str | None, now: datetime, first: int, skip: int = 0) -> Iterator[Meta]:
        """Entries in feed order (newest first, ties by id), visible at ``now``, in batches.

        ``skip`` entries are passed over in the index itself, without reading their rows.
        """
        at = now.timestamp()
        after: After = None
        size = max(first, 1)
        if skip > 0:  # where the walk starts: read from the index alone (no rows)
            if slug is None:
                sql = "SELECT published, id FROM files WHERE entry = 1 AND published <= ?"
                params_: tuple[object, ...] = (at,)
            else:
                sql = "SELECT published, id FROM entry_topics WHERE slug = ? AND published <= ?"
                params_ = (slug, at)
            with self.lock:
                found = self.db.db.execute(
                    f"{sql} ORDER BY published DESC, id LIMIT 1 OFFSET ?", (*params_, skip - 1)
                ).fetchone()
            if found is None:
                return
            after = (found[0], found[1])
        while True:
            with self.lock:
                params: list[object] = []
                if slug is None:
                    base = "FROM files AS f WHERE f.entry = 1"
                else:
                    base = "FROM entry_topics AS t JOIN files AS f ON f.path = t.path WHERE t.slug = ?"
                    params.append(slug)
                col = "f" if slug is None else "t"
                base += f" AND {col}.published <= ?"
                params.append(at)
                if after is not None:
                    base += (
                        f" AND {col}.published <= ? AND ({col}.published < ? OR "
                        f"({col}.published = ? AND {col}.id > ?))"
                    )
                    params += [after[0], after[0], after[0], after[1]]
                sql = f"SELECT {_F} {base} ORDER BY {col}.published DESC, {col}.id LIMIT ?"
                rows = self.db.db.execute(sql, (*params, size)).fetchall()
                metas = self._metas_of(rows)
            yield from metas
            if len(rows) < size:
                return
            last = rows[-1]
            after = (last[7], last[5])
            size = BATCH

    def _metas_of(self, rows: list[tuple[object, ...]]) -> list[Meta]:
        found: list[Meta] = []
        for row in rows:
            path = row[0]
            assert isinstance(path, str)
            given = self._given.get(path)
            if given is not None:
                found.append(given)
                continue
            try:
                meta = self.db.decoder.row(row).meta
            except (TypeError, ValueError, KeyError, OverflowError):
                meta = None
            if meta is None:
                if path not in self._skipped:
                    log.warning("index: malformed row for %s left out; the file will be read again", path)
                    self._skipped.add(path)
                continue
            found.append(meta)
        return found

    # -- queries ------------------------------------------------------------------------------

    def problems(self) -> list[Problem]:
        """Every file's problems, sorted; computed once per change (``/healthz`` asks often)."""
        with self.lock:
            stamp = (self._revision, self._data_version)
            if self._problems is not None and self._problems[0] == stamp:
                return list(self._problems[1])
            db = self.db.db
            found: list[Problem] = []
            for _, raw in db.execute("SELECT path, problems FROM files WHERE problems IS NOT NULL"):
                found += decode_problems(raw)
            for (ident,) in db.execute("SELECT id FROM duplicates").fetchall():
                paths = [
                    r[0] for r in db.execute("SELECT path FROM files WHERE id = ? ORDER BY path", (ident,))
                ]
                found += [
                    Problem(rel, None, f"id {ident!r} is already used by {paths[0]}; left out")
                    for rel in paths[1:]
                ]
            result = sorted(found, key=lambda p: (p.path, p.line or 0))
            self._problems = (stamp, result)
        return list(result)

    def article(self, article_id: str, now: datetime) -> Meta | None:
        with self.lock:
            found = self._metas(
                f"SELECT {_F} FROM files AS f WHERE f.id = ? ORDER BY f.path LIMIT 1", (article_id,)
            )
        meta = found[0] if found else None
        return meta if meta is not None and meta.is_published(now) else None

    def articles(self) -> list[Meta]:
        """Every article that holds its id (drafts and embargoed ones included), by path."""
        with self.lock:
            return self._metas(
                f"SELECT {_F} FROM files AS f WHERE f.id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                "files AS o WHERE o.id = f.id AND o.path < f.path) ORDER BY f.path"
            )

    def published(self, now: datetime, limit: int | None = None) -> Iterator[Meta]:
        """Visible articles, newest first, read in batches (the lock is not held between them)."""
        walk = self._walk(None, now, limit or BATCH)
        return walk if limit is None else islice(walk, limit)

    def page_keys(self, now: datetime) -> Iterator[tuple[str, str, int, int, int]]:
        """(permalink, path, digest, published, updated) of every visible article, newest first.

        What an article page's bytes depend on (with the config), read in batches without
        decoding rows into metadata: a purge compares a million of them after each change.
        """
        after: After = None
        while True:
            sql = (
                "SELECT permalink, path, digest, published, updated, id FROM files "
                "WHERE entry = 1 AND published <= ?"
            )
            params: list[object] = [now.timestamp()]
            if after is not None:
                sql += " AND published <= ? AND (published < ? OR (published = ? AND id > ?))"
                params += [after[0], after[0], after[0], after[1]]
            with self.lock:
                rows = self.db.db.execute(
                    f"{sql} ORDER BY published DESC, id LIMIT {STAMPS_BATCH}", params
                ).fetchall()
            for permalink, path, digest, published, updated, _ in rows:
                yield (permalink, path, digest, published, updated)
            if len(rows) < STAMPS_BATCH:
                return
            after = (rows[-1][3], rows[-1][5])

    def count(self) -> int:
        """Articles that hold an id (drafts and embargoed ones included)."""
        return self._counts().get(IDS, 0)

    def _counts(self) -> dict[str, int]:
        with self.lock:
            return {s: n for s, n in self.db.db.execute("SELECT slug, n FROM counts") if n > 0}

    def topics(self, now: datetime) -> dict[str, str]:
        """Visible topics: slug -> the spelling of the first article (by path) that uses it."""
        at = now.timestamp()
        found: dict[str, str] = {}
        with self.lock:
            db = self.db.db
            for slug in sorted(self.topic_slugs()):
                if db.execute(
                    "SELECT 1 FROM entry_topics WHERE slug = ? AND published <= ? LIMIT 1", (slug, at)
                ).fetchone():
                    row = db.execute(
                        "SELECT name FROM entry_topics WHERE slug = ? ORDER BY path LIMIT 1", (slug,)
                    ).fetchone()
                    found[slug] = row[0]
        return found

    def topic_slugs(self) -> frozenset[str]:
        """Topics of every article that is or will be published (drafts aside)."""
        return frozenset(s for s in self._counts() if s not in (ALL, IDS))

    def select(self, spec: FeedSpec, now: datetime, limit: int | None = None) -> list[Meta]:
        """A feed's entries, newest first, at most ``limit`` (default the feed's own; 0: all).

        Walks only the topics the feed names, and stops at ``limit``.
        """
        wanted = spec.limit if limit is None else limit
        first = wanted if _simple(spec) and wanted else BATCH
        chosen: list[Meta] = []
        seen: set[str] = set()
        for meta in self._stream(spec, now, first):
            if meta.id in seen or not matches(spec, meta):
                continue
            seen.add(meta.id)
            chosen.append(meta)
            if len(chosen) == wanted:
                break
        return chosen

    def window(self, spec: FeedSpec, now: datetime, start: int, stop: int) -> list[Meta]:
        """Entries ``start`` to ``stop`` of the feed's newest-first list (an archive page).

        A feed of one topic (or all) skips to ``start`` in the database's index; others are
        walked from the newest entry.
        """
        if _simple(spec):
            slug = spec.topics[0] if spec.topics else None
            return list(islice(self._walk(slug, now, stop - start, skip=start), stop - start))
        return self.select(spec, now, stop)[start:stop]

    def versions(self, spec: FeedSpec, now: datetime) -> list[tuple[str, int, int, int]]:
        """(id, digest, published, updated) of every entry of the feed, newest first.

        What an archive page's bytes depend on, for a purge to tell which pages changed without
        rendering them (or decoding a million rows into metadata).
        """
        if not _simple(spec):
            return [
                (m.id, m.digest, int(m.published.timestamp()), int(m.updated.timestamp()))
                for m in self.select(spec, now, 0)
            ]
        with self.lock:
            if spec.topics:
                sql = (
                    "SELECT f.id, f.digest, f.published, f.updated FROM entry_topics AS t JOIN files AS f "
                    "ON f.path = t.path WHERE t.slug = ? AND t.published <= ? ORDER BY t.published DESC, t.id"
                )
                params: tuple[object, ...] = (spec.topics[0], now.timestamp())
            else:
                sql = (
                    "SELECT id, digest, published, updated FROM files WHERE entry = 1 AND published <= ? "
                    "ORDER BY published DESC, id"
                )
                params = (now.timestamp(),)
            return [tuple(row) for row in self.db.db.execute(sql, params)]

    def total(self, spec: FeedSpec, now: datetime) -> int:
        """How many entries the feed has in all (its archive's size), by counting when it can."""
        if _simple(spec):
            slug = spec.topics[0] if spec.topics else ALL
            with self.lock:
                total = self._counts().get(slug, 0)
                if slug == ALL:
                    sql, params = "SELECT count(*) FROM files WHERE entry = 1 AND published > ?", []
                else:
                    sql = "SELECT count(*) FROM entry_topics WHERE slug = ? AND published > ?"
                    params = [slug]
                waiting = self.db.db.execute(sql, (*params, now.timestamp())).fetchone()[0]
            return max(total - int(waiting), 0)
        return len(self.select(spec, now, 0))

    def _stream(self, spec: FeedSpec, now: datetime, first: int) -> Iterable[Meta]:
        if not spec.topics:
            return self._walk(None, now, first)
        walks = [self._walk(t, now, first) for t in spec.topics]
        return heapq.merge(*walks, key=_key) if len(walks) > 1 else walks[0]

    def newest(self, now: datetime) -> datetime | None:
        """The newest ``updated`` among visible articles (not only the newest published)."""
        with self.lock:
            row = self.db.db.execute(
                "SELECT updated FROM files INDEXED BY files_updated WHERE entry = 1 AND published <= ? "
                "ORDER BY updated DESC LIMIT 1",  # the planner would sort by date a million rows
                (now.timestamp(),),
            ).fetchone()
        return _when(row[0]) if row and isinstance(row[0], int) else None

    def next_release(self, now: datetime) -> datetime | None:
        with self.lock:
            row = self.db.db.execute(
                "SELECT min(published) FROM files WHERE entry = 1 AND published > ?", (now.timestamp(),)
            ).fetchone()
        return _when(row[0]) if row and isinstance(row[0], int) else None


def _simple(spec: FeedSpec) -> bool:
    """A feed of every entry or of one topic: its entries are an index range of the database."""
    return not (spec.exclude_topics or spec.tags or len(spec.topics) > 1)


def _when(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def _as_stored(db: IndexDB, rel: str, record: Record) -> Meta | None:
    """``record``'s meta as a read of the row gives it back (dates to the second)."""
    stored = db.row(rel)
    return stored.meta if stored is not None else record.meta
