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
from .records import Record

log = logging.getLogger(__name__)
APPLICATION_ID = 0x46454544  # "FEED": marks the file as ours (PRAGMA application_id)
FORMAT = 5  # PRAGMA user_version; another number is another layout
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
    "mtime_ns INTEGER NOT NULL, meta TEXT, problems TEXT NOT NULL, retry INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_META_FIELDS = tuple(f.name for f in fields(Meta))


class IndexCache:
    """One SQLite file of records; unusable files turn the cache off, never into errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._usable = True

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
        try:
            with closing(self._connect()) as db:
                if not self._is_ours(db) or _info(db, "config") != config_key(config):
                    return {}
                rows = db.execute("SELECT path, size, mtime_ns, meta, problems, retry FROM files").fetchall()
        except sqlite3.Error as exc:
            self._give_up(f"cannot read it ({exc})")
            return {}
        records: dict[str, Record] = {}
        bad = 0
        for row in rows:
            try:
                rel, record = _decode_row(row)
            except (TypeError, ValueError, KeyError, OverflowError):
                bad += 1
                continue
            records[rel] = record
        if bad:
            log.warning(
                "index cache %s: ignored %d malformed rows (those files are read again)", self.path, bad
            )
        return records

    def write(self, config: SiteConfig, records: Mapping[str, Record]) -> None:
        """Replace every row (after a load that parsed files)."""
        self._transaction(config, records, replace_all=True)

    def update(self, config: SiteConfig, changed: Mapping[str, Record | None]) -> None:
        """Upsert changed files' rows; None deletes a file's row."""
        self._transaction(config, changed, replace_all=False)

    def _transaction(self, config: SiteConfig, rows: Mapping[str, Record | None], replace_all: bool) -> None:
        if not self._usable:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db:
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
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                    [_encode_row(rel, record) for rel, record in rows.items() if record is not None],
                )
                db.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not write index cache %s: %s", self.path, exc)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
        # Views and triggers in a planted file must not call functions with side effects.
        db.execute("PRAGMA trusted_schema = OFF")
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


# -- rows: plain JSON, checked on the way back --------------------------------------------------


def _encode_row(rel: str, record: Record) -> tuple[str, int, int, str | None, str, int]:
    meta = None if record.meta is None else json.dumps(_encode_meta(record.meta), ensure_ascii=False)
    problems = [[p.path, p.line, p.message, p.severity.value] for p in record.problems]
    return (
        rel,
        record.stamp.size,
        record.stamp.mtime_ns,
        meta,
        json.dumps(problems, ensure_ascii=False),
        int(record.retry),
    )


def _encode_meta(meta: Meta) -> list[Any]:
    return [
        meta.id,
        meta.path,
        meta.title,
        int(meta.published.timestamp()),
        int(meta.updated.timestamp()),
        meta.url,
        meta.permalink,
        [[t.slug, t.name] for t in meta.topics],
        [[t.slug, t.name] for t in meta.tags],
        [[a.name, a.email, a.uri] for a in meta.authors],
        meta.language,
        meta.draft,
        meta.image,
        meta.image_type,
        meta.image_length,
        list(meta.sources),
        meta.given_summary,
        [meta.version.size, meta.version.mtime_ns],
        meta.body_start,
        meta.dated_by.value,
    ]


def _decode_row(row: tuple[Any, ...]) -> tuple[str, Record]:
    rel, size, mtime_ns, meta, problems, retry = row
    decoded = None if meta is None else _decode_meta(json.loads(_text(meta)))
    found = tuple(_problem(p) for p in _list(json.loads(_text(problems))))
    return _text(rel), Record(decoded, Stamp(_int(size), _int(mtime_ns)), found, bool(_int(retry)))


def _decode_meta(value: Any) -> Meta:
    (ident, path, title, published, updated, url, permalink, topics, tags, authors, language, draft,
     image, image_type, image_length, sources, summary, version_, body_start, dated_by) = _list(value, 20)  # fmt: skip  # noqa: E501
    return Meta(
        id=_text(ident),
        path=_text(path),
        title=_text(title),
        published=_time(published),
        updated=_time(updated),
        url=_text(url),
        permalink=_text(permalink),
        topics=_topics(topics),
        tags=_topics(tags),
        authors=tuple(_author(a) for a in _list(authors)),
        language=_optional_text(language),
        draft=_bool(draft),
        image=_optional_text(image),
        image_type=_optional_text(image_type),
        image_length=_int(image_length),
        sources=tuple(_text(s) for s in _list(sources)),
        given_summary=_optional_text(summary),
        version=Stamp(*(_int(v) for v in _list(version_, 2))),
        body_start=_int(body_start),
        dated_by=DateSource(_text(dated_by)),
    )


def _problem(value: Any) -> Problem:
    path, line, message, severity = _list(value, 4)
    return Problem(
        _text(path), None if line is None else _int(line), _text(message), Severity(_text(severity))
    )


def _topics(value: Any) -> tuple[Topic, ...]:
    return tuple(topic(_text(slug), _text(name)) for slug, name in (_list(t, 2) for t in _list(value)))


def _author(value: Any) -> Author:
    name, email, uri = _list(value, 3)
    return Author(_text(name), _optional_text(email), _optional_text(uri))


def _list(value: Any, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise ValueError("malformed row")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected a whole number")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _time(value: Any) -> datetime:
    return datetime.fromtimestamp(_int(value), UTC)
