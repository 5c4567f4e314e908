"""The article index on disk: each file's record in one SQLite file of the state folder.

The index lives here rather than in memory, so a worker's memory and its start-up do not grow
with the archive: a warm start opens the file and trusts it (the watcher then checks every
file's size and mtime in the background), and documents ask for the few rows they show with
indexed ``ORDER BY ... LIMIT`` queries. All workers of a state folder share the file.

It replaces a pickle, which would have run code planted by anyone able to write to the state
folder. Everything read back is data checked field by field: a row that does not decode into a
well-formed record is left out (and its file read again by the next check), and a file that is
not our database (corrupt, foreign) is ignored with one log line and never overwritten; the
index then lives in memory.

Besides one row per file (``files``), derived tables answer the queries: ``entry`` marks the
row that holds an id and is not a draft (what feeds show), ``entry_topics`` lists those entries
per topic in feed order, ``counts`` how many each topic has, ``duplicates`` the ids claimed by
more than one file. :meth:`IndexDB.put` keeps them right one id at a time; :meth:`IndexDB.finish`
builds them at once after a cold start.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .articles import Author, DateSource, Meta, Stamp, Topic, topic
from .config import SiteConfig
from .errors import Problem, Severity
from .markup import is_clean
from .records import Record

log = logging.getLogger(__name__)
APPLICATION_ID = 0x46454544  # "FEED": marks the file as ours (PRAGMA application_id)
FORMAT = 10  # PRAGMA user_version; another number is another layout
DECODED = 4096  # distinct topic and author lists kept decoded
CACHE_KIB = 16 * 1024  # SQLite's page cache per connection: the OS keeps the rest
ALL = ""  # the key of ``counts`` for every entry (slugs are never empty)
IDS = "*"  # the key of ``counts`` for every id held by a file (drafts too)
# One column per field: SQLite hands back str/int/None in C, and typeof() checks them there.
_COLUMNS = (
    ("path", "text"),
    ("size", "integer"),
    ("mtime_ns", "integer"),
    ("retry", "integer"),
    ("problems", "text?"),  # JSON, NULL when there are none
    ("id", "text?"),  # NULL: the file has no usable metadata; the rest of the row is then NULL
    ("title", "text"),
    ("published", "integer"),  # as dated for the index (first seen, for articles without a date)
    ("updated", "integer"),
    ("url", "text"),
    ("permalink", "text"),
    ("topics", "text"),  # slug US name RS slug US name ... (clean text never holds US or RS)
    ("tags", "text"),
    ("authors", "text"),  # name US email US uri RS ...
    ("language", "text?"),
    ("draft", "integer"),
    ("image", "text?"),
    ("image_type", "text?"),
    ("image_length", "integer"),
    ("image_alt", "text?"),
    ("sources", "text"),  # source RS source ...
    ("summary", "text?"),
    ("digest", "integer"),
    ("body_start", "integer"),
    ("dated_by", "text"),
)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
_TABLES = (
    f"CREATE TABLE files ({_NAMES}, entry INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (path))",
    # Keyed by a unique index made after a bulk load: rows appended in any order, then one sort.
    "CREATE TABLE entry_topics (slug TEXT NOT NULL, id TEXT NOT NULL, published INTEGER NOT NULL, "
    "path TEXT NOT NULL, name TEXT NOT NULL)",
    "CREATE TABLE counts (slug TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE duplicates (id TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
# Made after a bulk load (one sort each instead of a million insertions).
_INDEXES = (
    "CREATE INDEX files_id ON files (id, path) WHERE id IS NOT NULL",
    "CREATE INDEX files_problems ON files (path) WHERE problems IS NOT NULL",
    "CREATE INDEX files_order ON files (published DESC, id) WHERE entry = 1",
    "CREATE INDEX files_updated ON files (updated DESC) WHERE entry = 1",
    "CREATE UNIQUE INDEX entry_topics_key ON entry_topics (slug, id)",
    "CREATE INDEX entry_topics_order ON entry_topics (slug, published DESC, id)",
    "CREATE INDEX entry_topics_path ON entry_topics (slug, path)",
    "CREATE INDEX entry_topics_id ON entry_topics (id)",
)
_OURS = {"files", "entry_topics", "counts", "duplicates", "info"}
_INDEX_NAMES = {statement.split(" ON ")[0].split()[-1] for statement in _INDEXES}
_FILE_COLUMNS = 5  # path .. problems: present for every file; the rest only with metadata
_YEARS = (-30_578_688_000, 253_370_764_800)  # 1001-01-01 .. 9999-01-01: RSS needs four digits
_US, _RS = "\x1f", "\x1e"
_META_FIELDS = tuple(f.name for f in fields(Meta))
_TEXTS = ("id", "path", "title", "url", "permalink", "topics", "tags", "authors", "language",
          "image", "image_type", "image_alt", "summary", "sources")  # fmt: skip


def _well_typed() -> str:
    """SQL true for rows whose every column has the type written (checked in C)."""

    def check(name: str, kind: str) -> str:
        if kind.endswith("?"):
            return f"typeof({name}) IN ('{kind[:-1]}', 'null')"
        return f"typeof({name}) = '{kind}'"

    file_part = " AND ".join(check(name, kind) for name, kind in _COLUMNS[:_FILE_COLUMNS])
    meta_part = " AND ".join(check(name, kind) for name, kind in _COLUMNS[_FILE_COLUMNS + 1 :])
    dates = " AND ".join(f"{name} BETWEEN {_YEARS[0]} AND {_YEARS[1]}" for name in ("published", "updated"))
    return f"{file_part} AND (id IS NULL OR (typeof(id) = 'text' AND {meta_part} AND {dates}))"


def _texts() -> str:
    """SQL joining a row's text columns, for :func:`is_clean` (SQLite's GLOB is far slower)."""
    return " || ".join(f"coalesce({name}, '')" for name in _TEXTS)


WELL_FORMED = f"({_well_typed()})"
_SELECT = f"SELECT {_NAMES} FROM files"


class Unusable(Exception):
    """The file is not a feeds index (corrupt, foreign): left alone, the index goes to memory."""


class IndexDB:
    """One connection to the index, file or memory. Callers serialise use (``Index.lock``)."""

    def __init__(self, path: Path | None) -> None:
        """Open ``path`` (None: memory); :class:`Unusable` if it holds something else."""
        self.path = path
        self._db = connect(path)
        self._pid = os.getpid()
        try:
            self._check_ours()
        except (sqlite3.Error, Unusable):
            self._db.close()
            raise
        self.decoder = _Decoder()

    @property
    def db(self) -> sqlite3.Connection:
        """This process's connection: a worker forked from a preloaded app opens its own."""
        if self._pid != os.getpid() and self.path is not None:
            self._db, self._pid = connect(self.path), os.getpid()  # the parent's stays the parent's
        return self._db

    @classmethod
    def open(cls, path: Path | None) -> IndexDB:
        """The index at ``path``, or one in memory if that file cannot be used (logged)."""
        if path is None:
            return cls(None)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return cls(path)
        except (OSError, sqlite3.Error, Unusable) as exc:
            log.warning(
                "ignoring index %s: %s; keeping the index in memory (delete the file to let "
                "feeds rebuild it)",
                path,
                exc,
            )
            return cls(None)

    def _check_ours(self) -> None:
        db = self.db
        app = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app not in (0, APPLICATION_ID) or (app == 0 and tables):
            raise Unusable("it is not a feeds index")
        if self.path is not None:
            db.execute("PRAGMA journal_mode = WAL")  # only ever on our own (or an empty) file

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold a lock beside the file, so of workers starting together one builds the index."""
        with self._beside("lock", wait=True):
            yield

    @contextmanager
    def first_to(self, task: str) -> Iterator[bool]:
        """True for one process at a time sharing the file (and always for an index in memory)."""
        with self._beside(task, wait=False) as mine:
            yield mine

    @contextmanager
    def _beside(self, suffix: str, wait: bool) -> Iterator[bool]:
        """An flock on a file beside the index: taken (True), or busy and not waited for (False).

        An index in memory, or a folder where no lock file can be made, has no one to share with.
        """
        if self.path is None:
            yield True
            return
        try:
            handle = open(self.path.with_name(f"{self.path.name}.{suffix}"), "a+b")  # noqa: SIM115
        except OSError:
            yield True
            return
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ready(self, config: SiteConfig) -> bool:
        """True if the file holds a complete index made for this config and code."""
        db = self.db
        app = db.execute("PRAGMA application_id").fetchone()[0]
        fmt = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        if app != APPLICATION_ID or fmt != FORMAT or not _OURS <= tables or not _INDEX_NAMES <= indexes:
            return False
        return self.info("config") == config_key(config) and self.info("complete") == "1"

    def reset(self, config: SiteConfig) -> None:
        """Empty the index for a bulk load under ``config`` (our own file only)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._check_ours()
            names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for name in names:
                if name in _OURS:
                    db.execute(f'DROP TABLE "{name}"')
            for statement in _TABLES:
                db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {FORMAT}")
            db.execute("INSERT INTO info VALUES ('config', ?), ('complete', '0')", (config_key(config),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def info(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row and isinstance(row[0], str) else None

    def insert(self, rows: Iterable[tuple[str, Record]]) -> None:
        """Bulk load: rows of files nothing derived yet depends on (see :meth:`finish`)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")  # one commit for all, not one per row
        try:
            insert_rows(db, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def finish(self, first_seen: Callable[[list[str]], dict[str, datetime]]) -> None:
        """After a bulk load: date articles without a date, derive the tables, mark it complete."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            undated = [
                r[0] for r in db.execute("SELECT id FROM files WHERE dated_by = ?", (DateSource.SEEN.value,))
            ]
            if undated:
                seen = first_seen(undated)
                db.executemany(
                    "UPDATE files SET published = :seen, updated = max(updated, :seen) "
                    "WHERE id = :id AND dated_by = 'seen'",
                    [{"id": i, "seen": int(when.timestamp())} for i, when in seen.items()],
                )
            db.execute(_INDEXES[0])
            db.execute(
                "UPDATE files SET entry = 1 WHERE id IS NOT NULL AND draft = 0 AND NOT EXISTS "
                "(SELECT 1 FROM files AS other WHERE other.id = files.id AND other.path < files.path)"
            )
            for statement in _INDEXES[1:]:
                if "entry_topics" not in statement:
                    db.execute(statement)
            entries = db.execute(
                "SELECT id, path, published, topics FROM files WHERE entry = 1 AND topics != ''"
            )
            db.executemany(  # streamed from the cursor: a million rows never sit in one list
                "INSERT INTO entry_topics VALUES (?, ?, ?, ?, ?)",
                (
                    (slug, ident, published, path, name)
                    for ident, path, published, raw in entries
                    for slug, name in _pairs(raw)
                ),
            )
            for statement in _INDEXES:
                if "entry_topics" in statement:
                    db.execute(statement)
            db.execute("INSERT INTO counts SELECT slug, count(*) FROM entry_topics GROUP BY slug")
            db.execute("INSERT INTO counts SELECT ?, count(*) FROM files WHERE entry = 1", (ALL,))
            db.execute(
                "INSERT INTO counts SELECT ?, count(DISTINCT id) FROM files WHERE id IS NOT NULL", (IDS,)
            )
            db.execute(
                "INSERT INTO duplicates SELECT id FROM files WHERE id IS NOT NULL "
                "GROUP BY id HAVING count(*) > 1"
            )
            db.execute("UPDATE info SET value = '1' WHERE key = 'complete'")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("ANALYZE")
        if self.path is not None:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the log of a bulk load is as large as the index

    # -- one file at a time -------------------------------------------------------------------

    def row(self, rel: str) -> Record | None:
        """The record of ``rel`` as stored; None if there is none or it is malformed."""
        found = self.db.execute(f"{_SELECT} WHERE path = ? AND {WELL_FORMED}", (rel,)).fetchone()
        if found is None:
            return None
        try:
            return self.decoder.row(found)
        except (TypeError, ValueError, KeyError, OverflowError):
            return None

    def put(self, rel: str, record: Record | None) -> None:
        """Store (None: delete) one file's record and settle the ids it held and holds.

        Every worker takes in the same change: the first writes it, and the others find the
        row already as they would write it and leave the database alone.
        """
        with self._writing():
            if record is not None and _encode_row(rel, record) == self._stored(rel):
                return
            self._put(rel, record)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Writers of the shared file queue on a lock of ours, woken the moment it is free.

        SQLite's own busy handler sleeps in steps of up to 100 ms, which a change that two
        workers write at the same moment would add to its way to readers.
        """
        with self._beside("write", wait=True):
            yield

    def _stored(self, rel: str) -> tuple[object, ...] | None:
        row = self.db.execute(f"{_SELECT} WHERE path = ?", (rel,)).fetchone()
        return tuple(row) if row is not None else None

    def _put(self, rel: str, record: Record | None) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            old = db.execute("SELECT id FROM files WHERE path = ?", (rel,)).fetchone()
            ids = {old[0]} if old and isinstance(old[0], str) else set()
            if record is not None and record.meta is not None:
                ids.add(record.meta.id)
            had = {i: self._holds(i) for i in ids}
            for ident in ids:
                self._unsettle(ident)
            db.execute("DELETE FROM files WHERE path = ?", (rel,))
            if record is not None:
                insert_rows(db, [(rel, record)])
            for ident in sorted(ids):
                self._settle(ident, had[ident])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _holds(self, ident: str) -> bool:
        return self.db.execute("SELECT 1 FROM files WHERE id = ? LIMIT 1", (ident,)).fetchone() is not None

    def _unsettle(self, ident: str) -> None:
        """Take one id's derived rows out, before its files change."""
        db = self.db
        for (slug,) in db.execute("SELECT slug FROM entry_topics WHERE id = ?", (ident,)).fetchall():
            _count(db, slug, -1)
        db.execute("DELETE FROM entry_topics WHERE id = ?", (ident,))
        before = db.execute("UPDATE files SET entry = 0 WHERE id = ? AND entry = 1", (ident,)).rowcount
        _count(db, ALL, -before)

    def _settle(self, ident: str, had: bool) -> None:
        """Derived rows of one id after its files changed (``had``: some file held it before)."""
        db = self.db
        paths = [r[0] for r in db.execute("SELECT path FROM files WHERE id = ? ORDER BY path", (ident,))]
        _count(db, IDS, int(bool(paths)) - int(had))
        db.execute("DELETE FROM duplicates WHERE id = ?", (ident,))
        if len(paths) > 1:
            db.execute("INSERT INTO duplicates VALUES (?)", (ident,))
        if not paths:
            return
        winner = db.execute(
            "SELECT path, published, topics FROM files WHERE path = ? AND draft = 0", (paths[0],)
        ).fetchone()
        if winner is None:
            return
        path, published, raw = winner
        db.execute("UPDATE files SET entry = 1 WHERE path = ?", (path,))
        _count(db, ALL, 1)
        for slug, name in _pairs(raw):
            db.execute(
                "INSERT OR REPLACE INTO entry_topics VALUES (?, ?, ?, ?, ?)",
                (slug, ident, published, path, name),
            )
            _count(db, slug, 1)


def _count(db: sqlite3.Connection, slug: str, delta: int) -> None:
    if delta:
        db.execute(
            "INSERT INTO counts VALUES (?, ?) ON CONFLICT (slug) DO UPDATE SET n = n + excluded.n",
            (slug, delta),
        )


def _pairs(raw: str) -> list[tuple[str, str]]:
    if not raw:
        return []
    pairs = [item.split(_US) for item in raw.split(_RS)]
    return [(p[0], p[1]) for p in pairs if len(p) == 2]


def insert_rows(db: sqlite3.Connection, rows: Iterable[tuple[str, Record]]) -> None:
    db.executemany(
        f"INSERT OR REPLACE INTO files ({_NAMES}) VALUES ({', '.join('?' * len(_COLUMNS))})",
        (_encode_row(rel, record) for rel, record in rows),
    )


def connect(path: Path | None) -> sqlite3.Connection:
    """A connection as every user of the index makes it (a worker, a parser process)."""
    db = sqlite3.connect(
        str(path) if path else ":memory:", timeout=60, isolation_level=None, check_same_thread=False
    )
    # Views and triggers in a planted file must not call functions with side effects.
    db.execute("PRAGMA trusted_schema = OFF")
    # An index: a commit need not wait for the disk (WAL keeps the file consistent anyway).
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    return db


def config_key(config: SiteConfig) -> str:
    """What article metadata depends on: an index made under another config or code is stale."""
    try:
        package = version("feeds")
    except PackageNotFoundError:  # pragma: no cover
        package = "0"
    here = Path(__file__).parent
    code = hashlib.sha256(
        b"".join(
            (here / name).read_bytes()
            for name in (
                "articles.py",
                "parsing.py",
                "markup.py",
                "slugs.py",
                "yamlfile.py",
                "fields.py",
                "sources.py",
            )
        )
    )
    text = repr(
        (
            package,
            FORMAT,
            _META_FIELDS,
            code.hexdigest(),
            config.url,
            config.timezone,
            config.author,
            config.max_article_bytes,
            str(config.articles_dir),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


# -- rows: plain data, checked on the way back ---------------------------------------------------


def _encode_row(rel: str, record: Record) -> tuple[object, ...]:
    problems = [[p.path, p.line, p.message, p.severity.value] for p in record.problems]
    head = (
        rel,
        record.stamp.size,
        record.stamp.mtime_ns,
        int(record.retry),
        json.dumps(problems, ensure_ascii=False) if problems else None,
    )
    meta = record.meta
    if meta is None:
        return head + (None,) * (len(_COLUMNS) - _FILE_COLUMNS)
    return head + (
        meta.id,
        meta.title,
        int(meta.published.timestamp()),
        int(meta.updated.timestamp()),
        meta.url,
        meta.permalink,
        _RS.join(f"{t.slug}{_US}{t.name}" for t in meta.topics),
        _RS.join(f"{t.slug}{_US}{t.name}" for t in meta.tags),
        _RS.join(f"{a.name}{_US}{a.email or ''}{_US}{a.uri or ''}" for a in meta.authors),
        meta.language,
        int(meta.draft),
        meta.image,
        meta.image_type,
        meta.image_length,
        meta.image_alt,
        _RS.join(meta.sources),
        meta.given_summary,
        meta.digest,
        meta.body_start,
        meta.dated_by.value,
    )


class _Decoder:
    """Rows back into records; the many repeated topic and author lists are decoded once."""

    def __init__(self) -> None:
        self._topics: dict[str, tuple[Topic, ...]] = {"": ()}
        self._authors: dict[str, tuple[Author, ...]] = {"": ()}

    def row(self, row: tuple[Any, ...]) -> Record:
        """A record from a row of ``files``; TypeError or ValueError if it is not what we write."""
        _check_types(row)
        (rel, size, mtime_ns, retry, problems, ident, title, published, updated, url, permalink, topics,
         tags, authors, language, draft, image, image_type, image_length, image_alt, sources, summary,
         digest, body_start, dated_by) = row  # fmt: skip
        stamp = Stamp(size, mtime_ns)
        found = () if problems is None else tuple(_problem(p) for p in _list(json.loads(problems)))
        if ident is None:
            return Record(None, stamp, found, bool(retry))
        texts = (
            ident,
            rel,
            title,
            url,
            permalink,
            language,
            image,
            image_type,
            image_alt,
            summary,
            sources.replace(_RS, ""),
        )
        if not is_clean("".join(t for t in texts if t)):  # it would make a feed fail to render
            raise ValueError("characters XML forbids")
        meta = Meta(
            id=ident,
            path=rel,
            title=title,
            published=datetime.fromtimestamp(published, UTC),
            updated=datetime.fromtimestamp(updated, UTC),
            url=url,
            permalink=permalink,
            topics=self.topics(topics),
            tags=self.topics(tags),
            authors=self.authors(authors),
            language=language,
            draft=bool(draft),
            image=image,
            image_type=image_type,
            image_length=image_length,
            image_alt=image_alt,
            sources=tuple(sources.split(_RS)) if sources else (),
            given_summary=summary,
            version=stamp,
            digest=digest,
            body_start=body_start,
            dated_by=DateSource(dated_by),
        )
        return Record(meta, stamp, found, bool(retry))

    def topics(self, raw: str) -> tuple[Topic, ...]:
        found = self._topics.get(raw)
        if found is None:
            pairs = [item.split(_US) for item in raw.split(_RS)]
            if any(len(pair) != 2 for pair in pairs) or not is_clean(raw.replace(_US, "").replace(_RS, "")):
                raise ValueError("malformed topics")
            if len(self._topics) > DECODED:
                self._topics.clear()
            found = self._topics[raw] = tuple(topic(slug, name) for slug, name in pairs)
        return found

    def authors(self, raw: str) -> tuple[Author, ...]:
        found = self._authors.get(raw)
        if found is None:
            triples = [item.split(_US) for item in raw.split(_RS)]
            if any(len(triple) != 3 for triple in triples) or not is_clean(
                raw.replace(_US, "").replace(_RS, "")
            ):
                raise ValueError("malformed authors")
            if len(self._authors) > DECODED:
                self._authors.clear()
            found = self._authors[raw] = tuple(Author(n, e or None, u or None) for n, e, u in triples)
        return found


_KINDS = tuple((str if kind.startswith("text") else int, kind.endswith("?")) for _, kind in _COLUMNS)


def _check_types(row: tuple[Any, ...]) -> None:
    """What ``WELL_FORMED`` checks in SQL, for a row already fetched."""
    if len(row) != len(_COLUMNS):
        raise ValueError("malformed row")
    meta = row[_FILE_COLUMNS] is not None
    for i, (value, (kind, optional)) in enumerate(zip(row, _KINDS, strict=True)):
        if i > _FILE_COLUMNS and not meta:
            continue
        if value is None and (optional or (i > _FILE_COLUMNS and not meta)):
            continue
        if type(value) is not kind:
            raise TypeError(f"column {_COLUMNS[i][0]}: expected {kind.__name__}")
    if meta and not all(_YEARS[0] <= row[i] <= _YEARS[1] for i in (7, 8)):
        raise ValueError("no date a feed can carry")


def decode_problems(raw: object) -> list[Problem]:
    """A row's problems column back into problems; [] if it is not what we write."""
    if not isinstance(raw, str):
        return []
    try:
        return [_problem(p) for p in _list(json.loads(raw))]
    except (TypeError, ValueError, KeyError):
        return []


def _shaped_lists() -> str:
    """SQL true for rows whose lists have as many fields per item as they should."""

    def count(name: str, sep: int) -> str:
        return f"(length({name}) - length(replace({name}, char({sep}), '')))"

    def shaped(name: str, fields: int) -> str:
        return f"({name} = '' OR {count(name, 31)} = {fields - 1} * ({count(name, 30)} + 1))"

    return f"(id IS NULL OR ({shaped('topics', 2)} AND {shaped('tags', 2)} AND {shaped('authors', 3)}))"


def stamps_after(db: sqlite3.Connection, after: str, limit: int) -> list[tuple[str, int, int, bool]]:
    """Up to ``limit`` files after ``after`` by path: (path, size, mtime_ns, has metadata).

    A row that would not decode (wrong types, dates no feed can carry, illegal text, lists of
    the wrong shape, problems that are not ours) comes with size -1, so its file is read again.
    """
    sql = (
        f"SELECT path, size, mtime_ns, id IS NOT NULL, {_well_typed()} AND {_shaped_lists()}, "
        f"{_texts()}, problems FROM files WHERE path > ? ORDER BY path LIMIT ?"
    )
    found = []
    for path, size, mtime_ns, has_meta, ok, text, problems in db.execute(sql, (after, limit)):
        if ok and not is_clean(text.replace(_US, "").replace(_RS, "")):
            ok = False
        if ok and problems is not None and not decode_problems(problems):
            ok = problems == "[]"
        found.append((path, size if ok else -1, mtime_ns if ok else 0, bool(has_meta)))
    return found


def _problem(value: Any) -> Problem:
    path, line, message, severity = _list(value, 4)
    return Problem(
        _text(path), None if line is None else _int(line), _text(message), Severity(_text(severity))
    )


def _list(value: Any, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise ValueError("malformed row")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected a whole number")
    return value
