"""Writing the index: a bulk load after a cold start, and changes one batch at a time.

A bulk load appends rows in any order and derives every table once at the end
(:func:`finish`), a sort per index instead of a million insertions. A change rewrites its files'
rows and settles the ids they held and hold (:func:`put`), so the derived tables are right after
every transaction; ``tests/test_store.py`` checks that both ways give the same answers.

Everything here runs on the connection of the one writer, inside a transaction it holds.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime

from ..articles import DateSource
from ..records import Record
from .rows import encode, pairs
from .schema import (
    ALL,
    APPLICATION_ID,
    COLUMN_LIST,
    IDS,
    INDEXES,
    JOURNAL_KEEP,
    JOURNAL_LIST,
    JOURNALED,
    NAMES,
    TABLE_NAMES,
    TABLES,
    TAG,
    TOPIC,
    layout,
)

_INSERT = f"INSERT OR REPLACE INTO files ({COLUMN_LIST}) VALUES ({', '.join('?' * len(NAMES))})"
_BULK = f"INSERT OR REPLACE INTO files ({COLUMN_LIST}, entry) VALUES ({', '.join('?' * (len(NAMES) + 1))})"
_ID, _DRAFT = NAMES.index("id"), NAMES.index("draft")
FirstSeen = Callable[[list[str]], dict[str, datetime]]


def reset(db: sqlite3.Connection, key: str, version: int) -> None:
    """Empty the index for a bulk load made under ``key`` (the caller checked it is ours)."""
    names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for name in names:
        if name in TABLE_NAMES:
            db.execute(f'DROP TABLE "{name}"')
    for statement in TABLES:
        db.execute(statement)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {version}")
    db.execute(
        "INSERT INTO info VALUES"
        " ('config', ?), ('complete', '0'), ('journal', ?), ('layout', ?), ('uses', '1')",
        (key, secrets.token_hex(16), layout()),
    )


def insert(db: sqlite3.Connection, rows: Iterable[tuple[str, Record]]) -> None:
    """Rows of files that nothing derived depends on yet (a bulk load), each marked as its id's
    entry when it can be one: :func:`finish` then unmarks the later files of ids held twice,
    instead of rewriting every row of the index to mark them (a fifth of deriving)."""
    db.executemany(_BULK, (_marked(encode(rel, record)) for rel, record in rows))


def _marked(row: tuple[object, ...]) -> tuple[object, ...]:
    return (*row, int(row[_ID] is not None and row[_DRAFT] == 0))


def finish(db: sqlite3.Connection, first_seen: FirstSeen) -> None:
    """After a bulk load: date articles without a date, derive the tables, mark it complete."""
    undated = [r[0] for r in db.execute("SELECT id FROM files WHERE dated_by = ?", (DateSource.SEEN.value,))]
    if undated:
        seen = first_seen(undated)
        db.executemany(
            "UPDATE files SET published = :seen, updated = max(updated, :seen) "
            "WHERE id = :id AND dated_by = 'seen'",
            [{"id": i, "seen": int(when.timestamp())} for i, when in seen.items()],
        )
    db.execute(INDEXES[0])
    db.execute(  # the entry of an id is its first file by path (if not a draft)
        "UPDATE files SET entry = 0 WHERE entry = 1 AND id IN "
        "(SELECT id FROM files WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1) AND EXISTS "
        "(SELECT 1 FROM files AS other WHERE other.id = files.id AND other.path < files.path)"
    )
    for statement in INDEXES[1:]:
        if "entry_topics" not in statement:
            db.execute(statement)
    # Entries share a few hundred lists of topics: each list is split once, and SQLite joins
    # the entries to the pieces (a third of the time of a row per entry made here).
    lists = db.execute("SELECT DISTINCT topics FROM files WHERE entry = 1 AND topics != ''")
    db.execute("CREATE TEMP TABLE topic_lists (raw TEXT NOT NULL, slug TEXT NOT NULL, name TEXT NOT NULL)")
    db.executemany(
        "INSERT INTO topic_lists VALUES (?, ?, ?)",
        ((raw, slug, name) for (raw,) in lists for slug, name in pairs(raw)),
    )
    db.execute("CREATE INDEX temp.topic_lists_raw ON topic_lists (raw)")
    db.execute(  # CROSS JOIN: the entries are read in order, each looks up its list's pieces
        "INSERT INTO entry_topics SELECT piece.slug, entry.id, entry.published, entry.path, piece.name "
        "FROM files AS entry CROSS JOIN topic_lists AS piece ON piece.raw = entry.topics "
        "WHERE entry.entry = 1 AND entry.topics != ''"
    )
    db.execute("DROP TABLE temp.topic_lists")
    for statement in INDEXES:
        if "entry_topics" in statement:
            db.execute(statement)
    db.execute("INSERT INTO counts SELECT slug, count(*) FROM entry_topics GROUP BY slug")
    spelled: Counter[tuple[str, str, str]] = Counter()
    for topics, tags, n in db.execute(
        "SELECT topics, tags, count(*) FROM files WHERE entry = 1 GROUP BY topics, tags"
    ):
        for spelling in _spellings(topics, tags):
            spelled[spelling] += n
    db.executemany("INSERT INTO spellings VALUES (?, ?, ?, ?)", ((*k, n) for k, n in spelled.items()))
    db.execute("INSERT INTO counts SELECT ?, count(*) FROM files WHERE entry = 1", (ALL,))
    db.execute("INSERT INTO counts SELECT ?, count(DISTINCT id) FROM files WHERE id IS NOT NULL", (IDS,))
    db.execute(
        "INSERT INTO duplicates SELECT id FROM files WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1"
    )
    db.execute("UPDATE info SET value = '1' WHERE key = 'complete'")


def stored(db: sqlite3.Connection, rel: str) -> tuple[object, ...] | None:
    """The row of ``rel`` exactly as stored (to tell whether a write would change anything)."""
    row = db.execute(f"SELECT {COLUMN_LIST} FROM files WHERE path = ?", (rel,)).fetchone()
    return tuple(row) if row is not None else None


def put(db: sqlite3.Connection, rel: str, record: Record | None) -> None:
    """Store (None: delete) one file's record and settle the ids it held and holds."""
    old = db.execute("SELECT id FROM files WHERE path = ?", (rel,)).fetchone()
    ids = {old[0]} if old and isinstance(old[0], str) else set()
    if record is not None and record.meta is not None:
        ids.add(record.meta.id)
    _journal(db, rel, ids)
    had = {i: _holds(db, i) for i in ids}
    for ident in ids:
        _unsettle(db, ident)
    db.execute("DELETE FROM files WHERE path = ?", (rel,))
    if record is not None:
        db.execute(_INSERT, encode(rel, record))
    for ident in sorted(ids):
        _settle(db, ident, had[ident])


def _journal(db: sqlite3.Connection, rel: str, ids: set[str]) -> None:
    """Keep the rows this change may alter as they are: the file's own, and those of every file
    holding one of its ids (which of them is the entry may change). A file new to the index
    is journaled by path alone."""
    placeholders = ", ".join("?" * len(ids))
    where = f"path = ? OR id IN ({placeholders})" if ids else "path = ?"
    rows = db.execute(f"SELECT {JOURNAL_LIST} FROM files WHERE {where}", (rel, *sorted(ids))).fetchall()
    if not any(row[0] == rel for row in rows):
        rows.append((rel, *([None] * (len(JOURNALED) - 2)), 0))
    db.executemany(f"INSERT INTO journal ({JOURNAL_LIST}) VALUES ({', '.join('?' * len(JOURNALED))})", rows)


def prune_journal(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM journal WHERE seq <= (SELECT max(seq) FROM journal) - ?", (JOURNAL_KEEP,))


def _holds(db: sqlite3.Connection, ident: str) -> bool:
    return db.execute("SELECT 1 FROM files WHERE id = ? LIMIT 1", (ident,)).fetchone() is not None


def _unsettle(db: sqlite3.Connection, ident: str) -> None:
    """Take one id's derived rows out, before its files change."""
    for (slug,) in db.execute("SELECT slug FROM entry_topics WHERE id = ?", (ident,)).fetchall():
        _count(db, slug, -1)
    db.execute("DELETE FROM entry_topics WHERE id = ?", (ident,))
    for topics, tags in db.execute(
        "SELECT topics, tags FROM files WHERE id = ? AND entry = 1", (ident,)
    ).fetchall():
        _spell(db, _spellings(topics, tags), -1)
    before = db.execute("UPDATE files SET entry = 0 WHERE id = ? AND entry = 1", (ident,)).rowcount
    _count(db, ALL, -before)


def _settle(db: sqlite3.Connection, ident: str, had: bool) -> None:
    """Derived rows of one id after its files changed (``had``: some file held it before)."""
    paths = [r[0] for r in db.execute("SELECT path FROM files WHERE id = ? ORDER BY path", (ident,))]
    _count(db, IDS, int(bool(paths)) - int(had))
    db.execute("DELETE FROM duplicates WHERE id = ?", (ident,))
    if len(paths) > 1:
        db.execute("INSERT INTO duplicates VALUES (?)", (ident,))
    if not paths:
        return
    winner = db.execute(
        "SELECT path, published, topics, tags FROM files WHERE path = ? AND draft = 0", (paths[0],)
    ).fetchone()
    if winner is None:
        return
    path, published, raw, tags = winner
    db.execute("UPDATE files SET entry = 1 WHERE path = ?", (path,))
    _count(db, ALL, 1)
    _spell(db, _spellings(raw, tags), 1)
    for slug, name in pairs(raw):
        db.execute(
            "INSERT OR REPLACE INTO entry_topics VALUES (?, ?, ?, ?, ?)", (slug, ident, published, path, name)
        )
        _count(db, slug, 1)


def _count(db: sqlite3.Connection, slug: str, delta: int) -> None:
    if delta:
        db.execute(
            "INSERT INTO counts VALUES (?, ?) ON CONFLICT (slug) DO UPDATE SET n = n + excluded.n",
            (slug, delta),
        )


def _spell(db: sqlite3.Connection, spelled: Iterable[tuple[str, str, str]], delta: int) -> None:
    for kind, slug, name in spelled:
        db.execute(
            "INSERT INTO spellings VALUES (?, ?, ?, ?) ON CONFLICT (kind, slug, name) DO UPDATE "
            "SET n = n + excluded.n",
            (kind, slug, name, delta),
        )
        db.execute(
            "DELETE FROM spellings WHERE kind = ? AND slug = ? AND name = ? AND n <= 0", (kind, slug, name)
        )


def _spellings(topics: object, tags: object) -> list[tuple[str, str, str]]:
    """(kind, slug, name) of one entry: each slug once, as the entry first writes it."""
    found: list[tuple[str, str, str]] = []
    for kind, raw in ((TOPIC, topics), (TAG, tags)):
        named: dict[str, str] = {}
        for slug, name in pairs(raw):
            named.setdefault(slug, name)
        found += [(kind, slug, name) for slug, name in named.items()]
    return found
