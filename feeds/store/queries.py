"""Reading the index: feed-order walks with LIMIT, counts, and what the checks need.

A document asks for the few entries it shows; each query walks an index of the database in
feed order and stops there, so its cost does not grow with the archive, and no article's
metadata stays in memory once its document is rendered. A :class:`Reader` is one read
transaction: everything asked of it comes from one snapshot of the file, however the writer
moves on meanwhile.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import NamedTuple

from ..articles import Meta
from ..config import FeedSpec
from ..errors import Problem
from ..markup import is_clean
from ..selection import matches
from .positions import Positions
from .rows import RS, US, Decoder, Malformed, decode_problems, pairs
from .schema import ALL, COLUMN_LIST, COLUMNS, FILE_COLUMNS, IDS, JOURNAL_LIST, TOPIC

log = logging.getLogger(__name__)
BATCH = 512  # rows fetched at a time when a walk may go on (filters, whole histories)
_F = ", ".join(f"f.{name}" for name, _ in COLUMNS)
# The display spelling of a topic or tag: the one most entries write, but the slug itself (a
# folder's name, a lowercase tag) only when nobody writes another; ties: code point order.
_ORDER = "s.name = s.slug, s.n DESC, s.name"
_SPELLED = (
    f"SELECT s.name FROM spellings AS s WHERE s.kind = ? AND s.slug = {{slug}} ORDER BY {_ORDER} LIMIT 1"
)
After = tuple[int, str] | None  # where a walk in feed order stopped: (published, id)


@dataclass(frozen=True)
class Trace:
    """What a file's row says about the documents that show it (see ``schema.JOURNALED``):
    as it is, or as a change found it. ``entry`` False: no document shows it."""

    path: str
    id: str | None
    permalink: str | None
    url: str | None
    published: int | None
    updated: int | None
    slugs: Slugs
    image: str | None
    entry: bool

    @classmethod
    def of(cls, row: Iterable[object]) -> Trace | None:
        """A trace from a row (None: a damaged one, whose documents nobody can tell)."""
        path, ident, permalink, url, published, updated, topics, tags, image, entry = row
        if not isinstance(path, str):
            return None
        on = entry == 1 and isinstance(ident, str) and type(published) is int
        if on and not (isinstance(permalink, str) and isinstance(url, str)):
            return None
        return cls(
            path,
            ident if isinstance(ident, str) else None,
            permalink if isinstance(permalink, str) else None,
            url if isinstance(url, str) else None,
            published if type(published) is int else None,
            updated if type(updated) is int else None,
            _slugs(topics or "", tags or "") if on else ((), ()),
            image if isinstance(image, str) else None,
            on,
        )


Suspect = Callable[[str], None]
Slugs = tuple[tuple[str, ...], tuple[str, ...]]  # an entry's topic slugs and tag slugs
# What an article page shows of its article besides its dates and topics: title, language, link,
# authors (as stored), picture and its description, sources, the summary given in front matter
# and the digest of its body (which, with the path and that summary, makes the page's summary).
Shows = tuple[str, str | None, str, str, str | None, str | None, str, str | None, int]
PageKey = tuple[str, str, Shows, int, int, Slugs]  # permalink, path, shows, published, updated, slugs
PageRow = tuple[str, str, int, int, str]  # id, permalink, digest, updated, what the page shows of it
_PAGE_KEY = (
    "f.permalink, f.path, f.title, f.language, f.url, f.authors, f.image, f.image_alt, f.sources, "
    "f.summary, f.body_digest, f.published, f.updated, f.id, f.topics, f.tags"
)


class Version(NamedTuple):
    """What a feed's documents can show of an entry, as stored (without the display names of
    its topics and tags, which come from the spellings): each kind of document keys itself
    with the fields it shows (see :mod:`feeds.inventory`), so that its key moves exactly when
    its bytes do. ``body`` and ``teaser`` are the digests of the body's text and of the summary
    (0: not worked out, after a cold start); ``summary`` is the one given in front matter."""

    id: str
    published: int
    updated: int
    slugs: Slugs
    title: str
    url: str
    authors: str  # name US email US uri RS ...
    language: str | None
    image: str | None
    image_type: str | None
    image_length: int
    image_alt: str | None
    dated_by: str
    path: str
    body: int
    teaser: int
    summary: str | None


_VERSION = (
    "{f}id, {f}published, {f}updated, {f}topics, {f}tags, {f}title, {f}url, {f}authors, {f}language, "
    "{f}image, {f}image_type, {f}image_length, {f}image_alt, {f}dated_by, {f}path, {f}body_digest, "
    "{f}teaser, {f}summary"
)
# One text of what a page shows of an entry, joined by SQLite: a static export keys a million
# of them without decoding a row (the picture's type and length come from its file, not the article's).
_SHOWN = " || char(31) || ".join(
    f"coalesce(f.{c}, '')"
    for c in (
        "path",
        "id",
        "digest",
        "published",
        "updated",
        "topics",
        "tags",
        "image",
        "image_type",
        "image_length",
    )
)
_RECENT = "f.entry = 1 AND f.published <= ? AND f.published > ? AND f.url = f.permalink"


def _visible(col: str, at: float, after: After) -> tuple[str, list[object]]:
    """`` AND`` terms of a walk in feed order of what is visible at ``at``, resumed after
    ``after`` (keyset pagination), and their parameters; ``col`` names the table ("f.", "").

    One upper bound on the date, the lower of the two: given both, SQLite starts the index range
    at the first (the newest entry), and a walk resumed a million entries down steps through all
    of them again, every batch.
    """
    if after is None:
        return f" AND {col}published <= ?", [at]
    published, ident = after
    terms = f" AND {col}published <= ? AND ({col}published < ? OR ({col}published = ? AND {col}id > ?))"
    return terms, [min(at, published), published, published, ident]


def _newest_first(now: datetime, after: After) -> tuple[str, list[object]]:
    """``FROM`` to ``LIMIT ?`` of a walk of the visible articles in feed order, resumed after
    ``after`` (keyset pagination), and its parameters but the limit."""
    terms, params = _visible("f.", now.timestamp(), after)
    return f" FROM files AS f WHERE f.entry = 1{terms} ORDER BY f.published DESC, f.id LIMIT ?", params


def _key(meta: Meta) -> tuple[float, str]:
    return (-meta.published.timestamp(), meta.id)


def _slugs(topics: object, tags: object) -> Slugs:
    return tuple(s for s, _ in pairs(topics)), tuple(s for s, _ in pairs(tags))


def _version(m: Meta) -> Version:
    slugs = (tuple(t.slug for t in m.topics), tuple(t.slug for t in m.tags))
    authors = RS.join(f"{a.name}{US}{a.email or ''}{US}{a.uri or ''}" for a in m.authors)
    return Version(
        m.id,
        int(m.published.timestamp()),
        int(m.updated.timestamp()),
        slugs,
        m.title,
        m.url,
        authors,
        m.language,
        m.image,
        m.image_type,
        m.image_length,
        m.image_alt,
        m.dated_by.value,
        m.path,
        m.body_digest,
        m.teaser,
        m.given_summary,
    )


def _version_of(r: sqlite3.Row) -> Version:
    return Version(r[0], r[1], r[2], _slugs(r[3], r[4]), *r[5:])


def _page_key(r: sqlite3.Row) -> PageKey:
    shows = (r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10])
    return (r[0], r[1], shows, r[11], r[12], _slugs(r[14], r[15]))


def simple(spec: FeedSpec) -> bool:
    """A feed of every entry or of one topic: its entries are an index range of the database."""
    return not (spec.exclude_topics or spec.tags or len(spec.topics) > 1)


class Reader:
    """Queries over one read transaction of the index. Used by one thread, for one task."""

    def __init__(
        self,
        db: sqlite3.Connection,
        decoder: Decoder,
        given: Mapping[str, Meta],
        suspect: Suspect,
        positions: Positions,
    ) -> None:
        self._db = db
        self._decoder = decoder
        self._positions = positions  # where archive pages begin, shared by the store's readers
        self._given = given  # metas built in memory (tests, tools), returned as given
        self._suspect = suspect  # told of a row that does not decode: its file is read again

    # -- rows ---------------------------------------------------------------------------------

    def _metas(self, rows: Iterable[sqlite3.Row]) -> list[Meta]:
        found: list[Meta] = []
        for row in rows:
            path = row["path"]
            given = self._given.get(path) if isinstance(path, str) else None
            if given is not None:
                found.append(given)
                continue
            try:
                meta = self._decoder.record(row).meta
            except Malformed as exc:
                self._suspect(str(path))
                log.warning(
                    "index: malformed row for %r left out (%s); the file will be read again", path, exc
                )
                continue
            if meta is not None:
                found.append(meta)
        return found

    def row(self, rel: str) -> sqlite3.Row | None:
        found: sqlite3.Row | None = self._db.execute(
            f"SELECT {COLUMN_LIST} FROM files WHERE path = ?", (rel,)
        ).fetchone()
        return found

    def paths_under(self, rel_dir: str) -> list[str]:
        """Paths known under a folder (for a folder that was moved or deleted); '' is all."""
        if not rel_dir.strip("/"):
            return [r[0] for r in self._db.execute("SELECT path FROM files ORDER BY path")]
        prefix = rel_dir.rstrip("/") + "/"
        end = prefix[:-1] + chr(ord("/") + 1)
        rows = self._db.execute(
            "SELECT path FROM files WHERE path >= ? AND path < ? ORDER BY path", (prefix, end)
        )
        return [r[0] for r in rows]

    def pictured(self, prefix: str) -> list[tuple[str, str, int, str | None]]:
        """(path, image, image_length, image_type) of every file whose image URL starts with
        ``prefix`` (the site's pictures: ``…/media/``): whose entries a changed picture changes."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self._db.execute(
            "SELECT path, image, image_length, image_type FROM files WHERE image >= ? AND image < ?",
            (prefix, end),
        )
        return [
            (path, image, length, kind)
            for path, image, length, kind in rows
            if isinstance(path, str) and isinstance(image, str) and type(length) is int
        ]

    def problems_of(self) -> Iterator[tuple[str, tuple[Problem, ...]]]:
        """(path, problems) of every file that has some (few: the rows are indexed)."""
        for path, raw in self._db.execute("SELECT path, problems FROM files WHERE problems IS NOT NULL"):
            if isinstance(path, str):
                yield path, decode_problems(raw)

    # -- feed order ---------------------------------------------------------------------------

    def _walk(self, slug: str | None, now: datetime, first: int, skip: int = 0) -> Iterator[Meta]:
        """Entries in feed order (newest first, ties by id), visible at ``now``, in batches.

        ``skip`` entries are passed over in the index itself, without reading their rows.
        """
        at = now.timestamp()
        after: After = None
        size = max(first, 1)
        if skip > 0:
            after = self._key_at(slug, at, skip - 1)
            if after is None:
                return
        while True:
            params: list[object] = []
            if slug is None:
                base = "FROM files AS f WHERE f.entry = 1"
            else:
                base = "FROM entry_topics AS t JOIN files AS f ON f.path = t.path WHERE t.slug = ?"
                params.append(slug)
            col = "f" if slug is None else "t"
            terms, more = _visible(f"{col}.", at, after)
            base += terms
            params += more
            sql = f"SELECT {_F} {base} ORDER BY {col}.published DESC, {col}.id LIMIT ?"
            rows = self._db.execute(sql, (*params, size)).fetchall()
            yield from self._metas(rows)
            if len(rows) < size:
                return
            last = rows[-1]
            after = (last["published"], last["id"])
            size = BATCH

    def _key_at(self, slug: str | None, at: float, position: int) -> After:
        """The key of the entry at ``position`` (0: the newest) in feed order at ``at``; None past
        the end. Stepped to from the nearest position found before in the same state of the index
        (:mod:`~feeds.store.positions`), else from the newest entry."""
        within: tuple[object, ...]
        if slug is None:
            source, where, within = "files", "entry = 1", ()
        else:
            source, where, within = "entry_topics", "slug = ?", (slug,)
        waiting = f"SELECT count(*) FROM {source} WHERE {where} AND published > ?"
        unseen = int(self._db.execute(waiting, (*within, at)).fetchone()[0])
        state = (self.journal_id(), self.journal_last(), slug, unseen)
        near = self._positions.nearest(state, position)
        select = f"SELECT published, id FROM {source} WHERE {where}"
        newest_first = "ORDER BY published DESC, id LIMIT 1 OFFSET ?"
        if near is None or position <= abs(near[0] - position):
            terms, params = _visible("", at, None)
            sql, args = f"{select}{terms} {newest_first}", (*within, *params, position)
        elif near[0] == position:
            return near[1]
        elif near[0] < position:  # older: on down the feed from the known entry
            terms, params = _visible("", at, near[1])
            sql, args = f"{select}{terms} {newest_first}", (*within, *params, position - near[0] - 1)
        else:  # newer: back up the feed from the known entry
            published, ident = near[1]
            sql = (
                f"{select} AND published <= ? AND published >= ? AND (published > ? OR "
                "(published = ? AND id < ?)) ORDER BY published, id DESC LIMIT 1 OFFSET ?"
            )
            args = (*within, at, published, published, published, ident, near[0] - position - 1)
        found = self._db.execute(sql, args).fetchone()
        if found is None:
            return None
        key = (found[0], found[1])
        self._positions.note(state, position, key)
        return key

    def _stream(self, spec: FeedSpec, now: datetime, first: int) -> Iterable[Meta]:
        if not spec.topics:
            return self._walk(None, now, first)
        walks = [self._walk(t, now, first) for t in spec.topics]
        return heapq.merge(*walks, key=_key) if len(walks) > 1 else walks[0]

    def select(self, spec: FeedSpec, now: datetime, limit: int | None = None) -> list[Meta]:
        """A feed's entries, newest first, at most ``limit`` (default the feed's own; 0: all).

        A feed with ``delay`` sees the archive as it was that long ago; one with ``window``
        only the entries published within it."""
        wanted = spec.limit if limit is None else limit
        first = wanted if simple(spec) and wanted else BATCH
        since = now - spec.span if spec.span else None
        chosen: list[Meta] = []
        seen: set[str] = set()
        for meta in self._stream(spec, now - spec.behind, first):
            if since is not None and meta.published <= since:
                break  # newest first: every later one is older still
            if meta.id in seen or not matches(spec, meta):
                continue
            seen.add(meta.id)
            chosen.append(meta)
            if len(chosen) == wanted:
                break
        return chosen

    def window(self, spec: FeedSpec, now: datetime, start: int, stop: int) -> list[Meta]:
        """Entries ``start`` to ``stop`` of the feed's newest-first list (an archive page)."""
        if simple(spec) and not spec.span:
            slug = spec.topics[0] if spec.topics else None
            return list(islice(self._walk(slug, now - spec.behind, stop - start, skip=start), stop - start))
        return self.select(spec, now, stop)[start:stop]

    def published(self, now: datetime, after: After, size: int) -> tuple[list[Meta], After]:
        """Up to ``size`` visible articles after ``after`` in feed order, and where they end."""
        tail, params = _newest_first(now, after)
        rows = self._db.execute(f"SELECT {_F}{tail}", (*params, size)).fetchall()
        end = (rows[-1]["published"], rows[-1]["id"]) if len(rows) == size else None
        return self._metas(rows), end

    def page_keys(self, now: datetime, after: After, size: int) -> tuple[list[PageKey], After]:
        """(permalink, path, what the page shows, published, updated, topic and tag slugs) of
        visible articles, without decoding."""
        tail, params = _newest_first(now, after)
        rows = self._db.execute(f"SELECT {_PAGE_KEY}{tail}", (*params, size)).fetchall()
        end = (rows[-1][11], rows[-1][13]) if len(rows) == size else None
        return [_page_key(r) for r in rows], end

    def page_rows(self, now: datetime, after: After, size: int) -> tuple[list[PageRow], After]:
        """(id, permalink, digest, updated, what the page shows of it) of visible articles in
        feed order: what a static export names its pages by and keys them with."""
        tail, params = _newest_first(now, after)
        sql = f"SELECT f.id, f.permalink, f.digest, f.updated, {_SHOWN}, f.published{tail}"
        rows = self._db.execute(sql, (*params, size)).fetchall()
        end = (rows[-1][5], rows[-1][0]) if len(rows) == size else None
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows], end

    def history(self, spec: FeedSpec, now: datetime) -> Iterator[str]:
        """What a feed's documents show of each of its entries (as in :meth:`page_rows`), newest
        first, one row at a time where the feed is an index range (an archive of a million
        entries is keyed without holding it); other feeds are selected whole."""
        if spec.span:
            return  # a feed with a window has no archive
        if not simple(spec):
            yield from (repr(v) for v in self.versions(spec, now))
            return
        now -= spec.behind
        if spec.topics:
            sql = (
                f"SELECT {_SHOWN} FROM entry_topics AS t JOIN files AS f ON f.path = t.path "
                "WHERE t.slug = ? AND t.published <= ? ORDER BY t.published DESC, t.id"
            )
            params: tuple[object, ...] = (spec.topics[0], now.timestamp())
        else:
            sql = (
                f"SELECT {_SHOWN} FROM files AS f WHERE f.entry = 1 AND f.published <= ? "
                "ORDER BY f.published DESC, f.id"
            )
            params = (now.timestamp(),)
        for (row,) in self._db.execute(sql, params):
            yield row

    def versions(self, spec: FeedSpec, now: datetime) -> list[Version]:
        """:class:`Version` of every entry of the feed, newest first.

        What an archive page's bytes depend on (with the display names of those slugs), for a
        purge to tell which pages changed without rendering them (or decoding a million rows
        into metadata).
        """
        if spec.span:
            return []  # a feed with a window has no archive
        if not simple(spec):
            return [_version(m) for m in self.select(spec, now, 0)]
        base, params, newest, _ = self._versions_sql(spec, now)
        return [_version_of(r) for r in self._db.execute(base + newest, params)]

    def latest(self, spec: FeedSpec, now: datetime) -> list[Version]:
        """:meth:`versions` of what the feed's subscription document shows."""
        if spec.span or not simple(spec):
            return [_version(m) for m in self.select(spec, now)]
        base, params, newest, _ = self._versions_sql(spec, now)
        return [_version_of(r) for r in self._db.execute(f"{base}{newest} LIMIT ?", (*params, spec.limit))]

    def versions_window(
        self, spec: FeedSpec, now: datetime, start: int, stop: int, total: int
    ) -> list[Version]:
        """Entries ``start`` to ``stop`` of :meth:`versions` (an archive page), read from the end
        of the feed nearer to them; ``total``: how many it has."""
        if spec.span:
            return []
        if not simple(spec):
            return self.versions(spec, now)[start:stop]
        base, params, newest, oldest = self._versions_sql(spec, now)
        count = max(stop - start, 0)
        if start <= total - stop:
            rows = list(self._db.execute(f"{base}{newest} LIMIT ? OFFSET ?", (*params, count, start)))
        else:
            skip = max(total - stop, 0)
            rows = list(self._db.execute(f"{base}{oldest} LIMIT ? OFFSET ?", (*params, count, skip)))[::-1]
        return [_version_of(r) for r in rows]

    def newest_versions(self, now: datetime, limit: int) -> list[Version]:
        """:meth:`versions` of the newest ``limit`` entries of all (what the index page shows)."""
        base, params, newest, _ = self._versions_sql(None, now)
        return [_version_of(r) for r in self._db.execute(f"{base}{newest} LIMIT ?", (*params, limit))]

    def _versions_sql(self, spec: FeedSpec | None, now: datetime) -> tuple[str, tuple[object, ...], str, str]:
        at = (now - spec.behind).timestamp() if spec is not None else now.timestamp()
        if spec is not None and spec.topics:
            base = (
                f"SELECT {_VERSION.format(f='f.')} FROM entry_topics AS t "
                "JOIN files AS f ON f.path = t.path WHERE t.slug = ? AND t.published <= ? "
            )
            return (
                base,
                (spec.topics[0], at),
                "ORDER BY t.published DESC, t.id",
                "ORDER BY t.published, t.id DESC",
            )
        base = f"SELECT {_VERSION.format(f='')} FROM files WHERE entry = 1 AND published <= ? "
        return base, (at,), "ORDER BY published DESC, id", "ORDER BY published, id DESC"

    def page_keys_of(self, ids: Iterable[str], now: datetime) -> list[tuple[str, PageKey]]:
        """(id, :meth:`page_keys`) of the visible entries holding ``ids``."""
        found: list[tuple[str, PageKey]] = []
        todo = sorted(set(ids))
        for start in range(0, len(todo), BATCH):
            part = todo[start : start + BATCH]
            rows = self._db.execute(
                f"SELECT {_PAGE_KEY} FROM files AS f "
                f"WHERE f.entry = 1 AND f.published <= ? AND f.id IN ({', '.join('?' * len(part))})",
                (now.timestamp(), *part),
            )
            found += [(r[13], _page_key(r)) for r in rows]
        return found

    def page_digest(self, now: datetime, start: int, count: int, total: int) -> str:
        """What ``count`` visible articles from position ``start`` of the oldest-first order
        (of ``total``) show on a sitemap page (URL and ``lastmod`` of those that live here), hashed:
        joined by SQLite from the end nearer to them, never held as rows."""
        if start <= total - start - count:
            order, skip = "published, id DESC", start
        else:
            order, skip = "published DESC, id", max(total - start - count, 0)
        row = self._db.execute(
            "SELECT group_concat(line, char(30)) FROM (SELECT line FROM (SELECT CASE WHEN url = permalink "
            "THEN permalink || char(31) || updated ELSE '' END AS line, published, id FROM files "
            f"WHERE entry = 1 AND published <= ? ORDER BY {order} LIMIT ? OFFSET ?) "
            "ORDER BY published, id DESC)",
            (now.timestamp(), count, skip),
        ).fetchone()
        text = row[0] if row is not None and isinstance(row[0], str) else ""
        return hashlib.sha256(text.encode()).hexdigest()

    def recent_digest(self, now: datetime, since: datetime, limit: int) -> str:
        """What the news sitemap shows of :meth:`recent` (URL, date, language and title), hashed,
        without decoding a row."""
        row = self._db.execute(
            "SELECT group_concat(line, char(30)) FROM (SELECT f.permalink || char(31) || f.published || "
            "char(31) || coalesce(f.language, '') || char(31) || f.title AS line "
            f"FROM files AS f WHERE {_RECENT} "
            "ORDER BY f.published DESC, f.id LIMIT ?)",
            (now.timestamp(), since.timestamp(), limit),
        ).fetchone()
        text = row[0] if row is not None and isinstance(row[0], str) else ""
        return hashlib.sha256(text.encode()).hexdigest()

    def total(self, spec: FeedSpec, now: datetime) -> int:
        """How many entries the feed has in all (its archive's size), by counting when it can.

        A feed with a window has no archive: its total is what its subscription document shows.
        """
        if spec.span:
            return len(self.select(spec, now))
        if not simple(spec):
            return len(self.select(spec, now, 0))
        now -= spec.behind
        slug = spec.topics[0] if spec.topics else ALL
        total = self.counts().get(slug, 0)
        if slug == ALL:
            sql, params = "SELECT count(*) FROM files WHERE entry = 1 AND published > ?", []
        else:
            sql = "SELECT count(*) FROM entry_topics WHERE slug = ? AND published > ?"
            params = [slug]
        waiting = self._db.execute(sql, (*params, now.timestamp())).fetchone()[0]
        return max(total - int(waiting), 0)

    # -- sitemaps -----------------------------------------------------------------------------

    def published_count(self, now: datetime) -> int:
        """How many articles are visible at ``now`` (counted, not walked)."""
        waiting = self._db.execute(
            "SELECT count(*) FROM files WHERE entry = 1 AND published > ?", (now.timestamp(),)
        ).fetchone()[0]
        return max(self.counts().get(ALL, 0) - int(waiting), 0)

    def oldest_first(self, now: datetime, start: int, count: int) -> Iterator[tuple[str, int, bool]]:
        """(permalink, updated, whether the article lives here) of ``count`` visible articles
        from position ``start`` of the oldest-first order (the exact reverse of feed order).

        Where to begin is found in the index itself (``files_order``, no row read); from there
        rows come in keyset batches, so a page of 50,000 never sits in memory as rows.
        """
        at = now.timestamp()
        after: After = None
        if start > 0:
            found = self._db.execute(
                "SELECT published, id FROM files WHERE entry = 1 AND published <= ? "
                "ORDER BY published, id DESC LIMIT 1 OFFSET ?",
                (at, start - 1),
            ).fetchone()
            if found is None:
                return
            after = (found[0], found[1])
        left = count
        while left > 0:
            sql = (
                "SELECT permalink, updated, url = permalink, published, id FROM files "
                "WHERE entry = 1 AND published <= ?"
            )
            params: list[object] = [at]
            if after is not None:
                sql += " AND published >= ? AND (published > ? OR (published = ? AND id < ?))"
                params += [after[0], after[0], after[0], after[1]]
            size = min(left, BATCH * 8)
            rows = self._db.execute(f"{sql} ORDER BY published, id DESC LIMIT ?", (*params, size)).fetchall()
            for row in rows:
                yield row[0], row[1], bool(row[2])
            if len(rows) < size:
                return
            left -= size
            after = (rows[-1][3], rows[-1][4])

    def recent(self, now: datetime, since: datetime, limit: int) -> list[Meta]:
        """Visible articles that live here (no ``link`` elsewhere), published after ``since``,
        newest first, at most ``limit``."""
        rows = self._db.execute(
            f"SELECT {_F} FROM files AS f WHERE {_RECENT} ORDER BY f.published DESC, f.id LIMIT ?",
            (now.timestamp(), since.timestamp(), limit),
        )
        return self._metas(rows)

    def oldest_recent(self, now: datetime, since: datetime, limit: int) -> datetime | None:
        """When the oldest of :meth:`recent` was published (without decoding its rows)."""
        row = self._db.execute(
            f"SELECT min(published) FROM (SELECT f.published FROM files AS f WHERE {_RECENT} "
            "ORDER BY f.published DESC, f.id LIMIT ?)",
            (now.timestamp(), since.timestamp(), limit),
        ).fetchone()
        return _when(row[0])

    # -- what changed -------------------------------------------------------------------------

    def journal_id(self) -> str | None:
        """Names this index's journal: a rebuilt index starts another one."""
        row = self._db.execute("SELECT value FROM info WHERE key = 'journal'").fetchone()
        return row[0] if row is not None and isinstance(row[0], str) else None

    def journal_last(self) -> int:
        """The number of the last change journaled (0: none)."""
        last = self._db.execute("SELECT max(seq) FROM journal").fetchone()[0]
        return int(last) if type(last) is int else 0

    def journal(self, after: int, limit: int) -> tuple[list[Trace], int, bool]:
        """The rows changes after ``after`` replaced (at most ``limit`` changes' worth), the
        last change's number, and whether that is all of them (False: some were pruned, or more
        than ``limit`` came, and only a look at every document tells what changed)."""
        first, last = self._db.execute("SELECT min(seq), max(seq) FROM journal").fetchone()
        if last is None or last <= after:
            return [], after, True
        if first > after + 1 or last - after > limit:
            return [], int(last), False
        rows = self._db.execute(f"SELECT {JOURNAL_LIST} FROM journal WHERE seq > ?", (after,))
        traces = [Trace.of(row) for row in rows]
        found = [t for t in traces if t is not None]
        return found, int(last), len(found) == len(traces)

    def traces(self, paths: Iterable[str]) -> list[Trace]:
        """The rows of ``paths`` as they are now (a path with none is left out)."""
        found: list[Trace] = []
        todo = sorted(set(paths))
        for start in range(0, len(todo), BATCH):
            part = todo[start : start + BATCH]
            rows = self._db.execute(
                f"SELECT {JOURNAL_LIST} FROM files WHERE path IN ({', '.join('?' * len(part))})", part
            )
            found += [t for t in map(Trace.of, rows) if t is not None]
        return found

    def released(self, after: datetime, until: datetime, limit: int) -> list[Trace] | None:
        """Entries published in (``after``, ``until``]: they came out (or went) with no file
        changing. None if more than ``limit``."""
        rows = self._db.execute(
            f"SELECT {JOURNAL_LIST} FROM files WHERE entry = 1 AND published > ? AND published <= ? LIMIT ?",
            (after.timestamp(), until.timestamp(), limit + 1),
        ).fetchall()
        if len(rows) > limit:
            return None
        return [t for t in map(Trace.of, rows) if t is not None]

    def older(self, slug: str | None, published: int, ident: str, now: datetime, total: int) -> int:
        """How many entries of the feed of every entry (``slug`` None) or of one topic, visible
        at ``now``, come before (published, id) from the oldest: its place on the archive pages.

        Counted in the index from the end its date says is nearer (up to half the feed, then
        from the other), each side as two ranges of the feed-order index (an OR would make
        SQLite walk it whole): a change to a recent or an old article costs a few steps whatever
        the archive's size, one in the middle of a million about half of it.
        """
        if slug is None:
            table, params_ = "files WHERE entry = 1 AND", []
        else:
            table, params_ = "entry_topics WHERE slug = ? AND", [slug]
        at = now.timestamp()

        def count(where: str, *params: object, cap: int | None = None) -> int:
            sql = f"SELECT count(*) FROM {table} {where}"
            if cap is not None:  # stop counting there
                sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} {where} LIMIT {int(cap)})"
            return int(self._db.execute(sql, (*params_, *params)).fetchone()[0])

        cap = max(total // 2, 1)
        ends = [  # each one step of the index (min and max in one query would scan it)
            self._db.execute(
                f"SELECT published FROM {table} published <= ? ORDER BY published {way} LIMIT 1",
                (*params_, at),
            ).fetchone()
            for way in ("", "DESC")
        ]
        first, last = (end[0] if end is not None else None for end in ends)
        if type(first) is int and type(last) is int and published - first < last - published:
            older = count("published < ? AND published <= ?", published, at, cap=cap)
            if older < cap:  # nearer the oldest end, as its date said
                return older + count("published = ? AND id > ? AND published <= ?", published, ident, at)
        newer = count("published > ? AND published <= ?", published, at, cap=cap)
        if newer < cap:
            newer += count("published = ? AND id < ? AND published <= ?", published, ident, at)
            here = count("published = ? AND id = ? AND published <= ?", published, ident, at)
            return max(total - newer - here, 0)
        return count("published < ? AND published <= ?", published, at) + count(
            "published = ? AND id > ? AND published <= ?", published, ident, at
        )

    # -- the site as a whole ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {s: n for s, n in self._db.execute("SELECT slug, n FROM counts") if n > 0}

    def count(self) -> int:
        """Articles that hold an id (drafts and embargoed ones included)."""
        return self.counts().get(IDS, 0)

    def topic_slugs(self) -> frozenset[str]:
        """Topics of every article that is or will be published (drafts aside)."""
        return frozenset(s for s in self.counts() if s not in (ALL, IDS))

    def topics(self, now: datetime) -> dict[str, str]:
        """Visible topics: slug -> display spelling (see :meth:`spellings`).

        One statement (an index seek per topic inside SQLite): after every change the view asks,
        and a statement per topic would give up the interpreter lock hundreds of times.
        """
        rows = self._db.execute(
            f"SELECT c.slug, ({_SPELLED.format(slug='c.slug')}) FROM counts AS c WHERE c.n > 0 "
            "AND c.slug NOT IN (?, ?) AND EXISTS (SELECT 1 FROM entry_topics AS e WHERE e.slug = c.slug "
            "AND e.published <= ?) ORDER BY c.slug",
            (TOPIC, ALL, IDS, now.timestamp()),
        )
        return {slug: name for slug, name in rows if isinstance(name, str)}

    def spellings(self, kind: str, slugs: Iterable[str]) -> dict[str, str]:
        """slug -> the display spelling of each topic or tag (``kind``): the one most entries
        write, the slug itself only when nobody writes another, ties to the first in code point
        order (capitals first), so every worker and machine makes the same choice."""
        wanted = sorted(set(slugs))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):  # SQLite allows 999 parameters per statement
            part = wanted[start : start + 500]
            rows = self._db.execute(
                f"SELECT v.value, ({_SPELLED.format(slug='v.value')}) FROM json_each(?) AS v",
                (kind, json.dumps(part)),
            )
            found.update(
                (slug, name) for slug, name in rows if isinstance(slug, str) and isinstance(name, str)
            )
        return found

    def all_spellings(self, kind: str) -> dict[str, str]:
        """slug -> display spelling of every topic or tag (``kind``) an entry carries."""
        rows = self._db.execute(
            "SELECT slug, name FROM (SELECT s.slug, s.name, row_number() OVER (PARTITION BY s.slug "
            f"ORDER BY {_ORDER}) AS r FROM spellings AS s WHERE s.kind = ?) WHERE r = 1",
            (kind,),
        )
        return {slug: name for slug, name in rows if isinstance(slug, str) and isinstance(name, str)}

    def variants(self, kind: str) -> dict[str, list[tuple[str, int]]]:
        """Slugs entries write more than one way besides the slug itself (a folder's name is no
        choice of spelling): slug -> [(spelling, entries)], the display one first."""
        rows = self._db.execute(
            "SELECT s.slug, s.name, s.n FROM spellings AS s WHERE s.kind = ? AND s.slug IN (SELECT slug "
            "FROM spellings WHERE kind = ? AND name != slug GROUP BY slug HAVING count(*) > 1) "
            f"ORDER BY s.slug, {_ORDER}",
            (kind, kind),
        )
        found: dict[str, list[tuple[str, int]]] = {}
        for slug, name, n in rows:
            found.setdefault(slug, []).append((name, n))
        return found

    def spelled_in(self, kind: str, slug: str, name: str) -> str | None:
        """The first file (by path) of an entry that writes the topic or tag this way."""
        column = "topics" if kind == TOPIC else "tags"
        for path, raw in self._db.execute(
            f"SELECT path, {column} FROM files WHERE entry = 1 AND instr({column}, ?) > 0 ORDER BY path",
            (f"{slug}{US}{name}",),
        ):
            if (slug, name) in pairs(raw):
                return str(path)
        return None

    def newest(self, now: datetime) -> datetime | None:
        """The newest ``updated`` among visible articles (not only the newest published)."""
        row = self._db.execute(
            "SELECT updated FROM files INDEXED BY files_updated WHERE entry = 1 AND published <= ? "
            "ORDER BY updated DESC LIMIT 1",  # the planner would sort by date a million rows
            (now.timestamp(),),
        ).fetchone()
        return _when(row[0]) if row else None

    def next_release(self, now: datetime) -> datetime | None:
        row = self._db.execute(
            "SELECT min(published) FROM files WHERE entry = 1 AND published > ?", (now.timestamp(),)
        ).fetchone()
        return _when(row[0])

    def article(self, article_id: str, now: datetime) -> Meta | None:
        found = self._metas(
            self._db.execute(
                f"SELECT {_F} FROM files AS f WHERE f.id = ? ORDER BY f.path LIMIT 1", (article_id,)
            )
        )
        meta = found[0] if found else None
        return meta if meta is not None and meta.is_published(now) else None

    def articles(self) -> list[Meta]:
        """Every article that holds its id (drafts and embargoed ones included), by path."""
        return self._metas(
            self._db.execute(
                f"SELECT {_F} FROM files AS f WHERE f.id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                "files AS o WHERE o.id = f.id AND o.path < f.path) ORDER BY f.path"
            )
        )

    def problems(self) -> list[Problem]:
        """Every file's problems, and every id claimed twice, sorted by file."""
        found: list[Problem] = []
        for (raw,) in self._db.execute("SELECT problems FROM files WHERE problems IS NOT NULL"):
            found += decode_problems(raw)
        for (ident,) in self._db.execute("SELECT id FROM duplicates").fetchall():
            paths = [
                r[0] for r in self._db.execute("SELECT path FROM files WHERE id = ? ORDER BY path", (ident,))
            ]
            found += [
                Problem(rel, None, f"id {ident!r} is already used by {paths[0]}; left out")
                for rel in paths[1:]
            ]
        return sorted(found, key=lambda p: (p.path, p.line or 0))

    def stamps(self, after: str, limit: int, validate: bool = True) -> list[tuple[str, int, int, bool]]:
        """Up to ``limit`` files after ``after`` by path: (path, size, mtime_ns, has metadata).

        With ``validate``, a row that would not decode (wrong types, dates no feed can carry,
        illegal text, lists of the wrong shape, URLs that are not http(s), problems that are not
        ours) comes with size -1, so its file is read again. Checked in SQL: a million rows are
        never decoded for this, but the whole rows are read (10 times the time of the stamps).
        """
        if not validate:
            sql = (
                "SELECT path, size, mtime_ns, id IS NOT NULL FROM files WHERE path > ? ORDER BY path LIMIT ?"
            )
            return [(p, z, m, bool(h)) for p, z, m, h in self._db.execute(sql, (after, limit))]
        sql = (
            f"SELECT path, size, mtime_ns, id IS NOT NULL, {WELL_FORMED}, {_TEXTS}, problems "
            "FROM files WHERE path > ? ORDER BY path LIMIT ?"
        )
        found = []
        for path, size, mtime_ns, has_meta, ok, text, problems in self._db.execute(sql, (after, limit)):
            if ok and not is_clean(text.replace(US, "").replace(RS, "")):
                ok = False
            if ok and problems is not None and not decode_problems(problems):
                ok = problems == "[]"
            found.append((path, size if ok else -1, mtime_ns if ok else 0, bool(has_meta)))
        return found


def _when(stamp: object) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int) else None


def _well_typed() -> str:
    """SQL true for rows whose every column has the type written (checked in C)."""

    def check(name: str, kind: str) -> str:
        if kind.endswith("?"):
            return f"typeof({name}) IN ('{kind[:-1]}', 'null')"
        return f"typeof({name}) = '{kind}'"

    file_part = " AND ".join(check(name, kind) for name, kind in COLUMNS[:FILE_COLUMNS])
    meta_part = " AND ".join(check(name, kind) for name, kind in COLUMNS[FILE_COLUMNS + 1 :])
    dates = " AND ".join(f"{name} BETWEEN -30578688000 AND 253370764800" for name in ("published", "updated"))
    urls = " AND ".join(
        f"(substr({name}, 1, 7) = 'http://' OR substr({name}, 1, 8) = 'https://')"
        for name in ("url", "permalink")
    )
    return f"{file_part} AND (id IS NULL OR (typeof(id) = 'text' AND {meta_part} AND {dates} AND {urls}))"


def _shaped_lists() -> str:
    """SQL true for rows whose lists have as many fields per item as they should."""

    def count(name: str, sep: int) -> str:
        return f"(length({name}) - length(replace({name}, char({sep}), '')))"

    def shaped(name: str, fields: int) -> str:
        return f"({name} = '' OR {count(name, 31)} = {fields - 1} * ({count(name, 30)} + 1))"

    return f"(id IS NULL OR ({shaped('topics', 2)} AND {shaped('tags', 2)} AND {shaped('authors', 3)}))"


WELL_FORMED = f"({_well_typed()} AND {_shaped_lists()})"
_TEXTS = " || ".join(
    f"coalesce({name}, '')"
    for name in (
        "id",
        "path",
        "title",
        "url",
        "permalink",
        "topics",
        "tags",
        "authors",
        "language",
        "image",
        "image_type",
        "image_alt",
        "summary",
        "sources",
    )
)
