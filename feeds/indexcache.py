"""The index cache: each article file's record, kept in SQLite in the state folder.

It replaces a pickle, which would have run code planted by anyone able to write to the state
folder. Everything read back is data checked field by field: a row that does not decode into a
well-formed record is ignored (that file is parsed again), and a file that is not our database
(corrupt, foreign, another format version) is ignored with one log line and never overwritten.
Workers share the file; writes are small transactions made outside any lock requests wait on.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
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
FORMAT = 8  # PRAGMA user_version; another number is another layout
# One column per field: SQLite hands back str/int/None in C, and typeof() checks them there.
_COLUMNS = (
    ("path", "text"),
    ("size", "integer"),
    ("mtime_ns", "integer"),
    ("retry", "integer"),
    ("problems", "text?"),  # JSON, NULL when there are none
    ("id", "text?"),  # NULL: the file has no usable metadata; the rest of the row is then NULL
    ("title", "text"),
    ("published", "integer"),
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
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS files ({', '.join(name for name, _ in _COLUMNS)}, PRIMARY KEY (path))",
    "CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_FILE_COLUMNS = 5  # path .. problems: present for every file; the rest only with metadata
_YEARS = (-30_578_688_000, 253_370_764_800)  # 1001-01-01 .. 9999-01-01: RSS needs four digits


def _well_typed() -> str:
    """SQL keeping only rows whose every column has the type written (checked in C)."""

    def check(name: str, kind: str) -> str:
        if kind.endswith("?"):
            return f"typeof({name}) IN ('{kind[:-1]}', 'null')"
        return f"typeof({name}) = '{kind}'"

    file_part = " AND ".join(check(name, kind) for name, kind in _COLUMNS[:_FILE_COLUMNS])
    meta_part = " AND ".join(check(name, kind) for name, kind in _COLUMNS[_FILE_COLUMNS + 1 :])
    dates = " AND ".join(f"{name} BETWEEN {_YEARS[0]} AND {_YEARS[1]}" for name in ("published", "updated"))
    return f"{file_part} AND (id IS NULL OR (typeof(id) = 'text' AND {meta_part} AND {dates}))"


_SELECT = f"SELECT {', '.join(name for name, _ in _COLUMNS)} FROM files WHERE {_well_typed()}"
_US, _RS = "\x1f", "\x1e"
_META_FIELDS = tuple(f.name for f in fields(Meta))


class IndexCache:
    """One SQLite file of records; unusable files turn the cache off, never into errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._usable = True
        self._pending: dict[str, tuple[SiteConfig, dict[str, Record | None]]] = {}
        self._pending_lock = threading.Lock()
        self._writer: threading.Thread | None = None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold a lock beside the cache file (a no-op if it cannot be made)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path.with_name(self.path.name + ".lock"), "a+b")  # noqa: SIM115
        except OSError:
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self, config: SiteConfig) -> dict[str, Record]:
        if not self.path.exists():
            return {}
        records: dict[str, Record] = {}
        decode = _Decoder()
        try:
            with closing(self._connect()) as db:
                if not self._is_ours(db) or _info(db, "config") != config_key(config):
                    return {}
                total = db.execute("SELECT count(*) FROM files").fetchone()[0]
                for row in db.execute(_SELECT):  # streamed: a million rows never sit in one list
                    try:
                        records[row[0]] = decode.row(row)
                    except (TypeError, ValueError, KeyError, OverflowError, OSError):
                        continue
        except sqlite3.Error as exc:
            self._give_up(f"cannot read it ({exc})")
            return {}
        bad = total - len(records)
        if bad:
            log.warning(
                "index cache %s: ignored %d malformed rows (those files are read again)", self.path, bad
            )
        return records

    def write(self, config: SiteConfig, records: Mapping[str, Record]) -> None:
        """Replace every row (after a load that parsed files)."""
        self._transaction(config, records, replace_all=True)

    def update(self, config: SiteConfig, changed: Mapping[str, Record | None]) -> None:
        """Upsert changed files' rows (None deletes a row) on a thread of its own.

        A commit can wait for the disk; the watcher that calls this must be free for the next
        change at once. Updates queued meanwhile are written together; lost ones (the process
        ends first) only cost those files a parse at the next start.
        """
        with self._pending_lock:
            pending = self._pending.setdefault(config_key(config), (config, {}))[1]
            pending.update(changed)
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_pending, name="feeds-cache", daemon=True)
                self._writer.start()

    def flush(self) -> None:
        """Wait until queued updates are written (tests, tools)."""
        writer = self._writer
        if writer is not None:
            writer.join()

    def _write_pending(self) -> None:
        while True:
            with self._pending_lock:
                if not self._pending:
                    self._writer = None
                    return
                _, (config, rows) = self._pending.popitem()
            self._transaction(config, rows, replace_all=False)

    def _transaction(self, config: SiteConfig, rows: Mapping[str, Record | None], replace_all: bool) -> None:
        if not self._usable:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db:
                if db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
                    db.execute("PRAGMA journal_mode = WAL")  # only ever on our own file
                db.execute("BEGIN IMMEDIATE")
                if not self._claim(db):
                    db.execute("ROLLBACK")
                    return
                key = config_key(config)
                if replace_all or _info(db, "config") != key:
                    db.execute("DELETE FROM files")
                    db.execute("INSERT OR REPLACE INTO info VALUES ('config', ?)", (key,))
                gone = [(rel,) for rel, record in rows.items() if record is None]
                db.executemany("DELETE FROM files WHERE path = ?", gone)
                db.executemany(
                    f"INSERT OR REPLACE INTO files VALUES ({', '.join('?' * len(_COLUMNS))})",
                    [_encode_row(rel, record) for rel, record in rows.items() if record is not None],
                )
                db.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not write index cache %s: %s", self.path, exc)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
        # Views and triggers in a planted file must not call functions with side effects.
        db.execute("PRAGMA trusted_schema = OFF")
        # A cache: a commit need not wait for the disk (WAL keeps the file consistent anyway).
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _is_ours(self, db: sqlite3.Connection) -> bool:
        app = db.execute("PRAGMA application_id").fetchone()[0]
        fmt = db.execute("PRAGMA user_version").fetchone()[0]
        if app == APPLICATION_ID and fmt == FORMAT and _has_our_tables(db):
            return True
        if app == APPLICATION_ID:
            return False  # our own older format: rewritten by the next write
        self._give_up("it is not a feeds index cache")
        return False

    def _claim(self, db: sqlite3.Connection) -> bool:
        """Make the file ours if it is empty; True if it is ours (in the current format)."""
        app = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app not in (0, APPLICATION_ID) or (app == 0 and tables):
            self._give_up("it is not a feeds index cache")
            return False
        if app == APPLICATION_ID and db.execute("PRAGMA user_version").fetchone()[0] != FORMAT:
            db.execute("DROP TABLE IF EXISTS files")
            db.execute("DROP TABLE IF EXISTS info")
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {FORMAT}")
        return _has_our_tables(db)

    def _give_up(self, why: str) -> None:
        if self._usable:
            log.warning(
                "ignoring index cache %s: %s; starting without it (delete the file to let feeds rebuild it)",
                self.path,
                why,
            )
        self._usable = False


def _has_our_tables(db: sqlite3.Connection) -> bool:
    found = dict(
        db.execute("SELECT name, type FROM sqlite_master WHERE name IN ('files', 'info')").fetchall()
    )
    return found == {"files": "table", "info": "table"}


def _info(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def config_key(config: SiteConfig) -> str:
    """What article metadata depends on: a cache made under another config or code is stale."""
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
            found = self._authors[raw] = tuple(Author(n, e or None, u or None) for n, e, u in triples)
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
