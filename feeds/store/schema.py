"""The index's tables, and the format version that says which code made a file.

``files`` holds one row per article file, one column per field, so SQLite hands back plain
``str``/``int``/``None`` and ``typeof()`` can check them in C. The derived tables answer the
feed queries: ``entry`` marks the row that holds an id and is not a draft (what feeds show),
``entry_topics`` lists those entries per topic in feed order, ``counts`` how many each topic
has, ``spellings`` how many entries write a topic or tag each way (the most common is its
display name), ``duplicates`` the ids claimed by more than one file. ``journal`` keeps, for each change, the
rows it replaced, so that what a change touched can be found without a walk of the archive.

An index is only trusted when :func:`format_version` matches: it is derived from everything a
row's meaning depends on (these tables, the fields of :class:`~feeds.articles.Meta` and
:class:`~feeds.records.Record`, and the code that parses articles, encodes rows and derives the
tables), so no change to what rows hold can be missed by forgetting to bump a number.

:func:`layout` is the part of it that says whether this code can read and write a file at all
(the tables, the fields, the row and derivation code): an upgrade that keeps it can serve the
previous version's rows while its own index is built (see ``docs/operations.md``, "Upgrades").
"""

from __future__ import annotations

import hashlib
from dataclasses import fields
from functools import cache
from pathlib import Path

from ..articles import Meta
from ..records import Record

APPLICATION_ID = 0x46454544  # "FEED": marks the file as ours (PRAGMA application_id)
ALL = ""  # the key of ``counts`` for every entry (slugs are never empty)
IDS = "*"  # the key of ``counts`` for every id held by a file (drafts too)
TOPIC, TAG = "topic", "tag"  # the kinds of ``spellings``

# (name, SQLite type); "?" allows NULL. Columns up to ``problems`` exist for every file; the
# rest are NULL when the file has no usable metadata (``id`` IS NULL).
COLUMNS = (
    ("path", "text"),
    ("size", "integer"),
    ("mtime_ns", "integer"),
    ("retry", "integer"),
    ("problems", "text?"),  # JSON, NULL when there are none
    ("id", "text?"),
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
    ("body_digest", "integer"),  # of the body's text (documents showing its HTML change with it)
    ("teaser", "integer"),  # of the summary (documents showing only that change with it)
    ("body_start", "integer"),
    ("dated_by", "text"),
)
NAMES = tuple(name for name, _ in COLUMNS)
# Of a file's row, what tells which documents showed it: its page, the feeds it was in, where.
JOURNALED = ("path", "id", "permalink", "url", "published", "updated", "topics", "tags", "image", "entry")
JOURNAL_LIST = ", ".join(JOURNALED)
JOURNAL_KEEP = 100_000  # changes kept: a notifier further behind looks at every document
FILE_COLUMNS = NAMES.index("id")  # path .. problems: present for every file
COLUMN_LIST = ", ".join(NAMES)
TABLES = (
    f"CREATE TABLE files ({COLUMN_LIST}, entry INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (path))",
    # Keyed by a unique index made after a bulk load: rows appended in any order, then one sort.
    "CREATE TABLE entry_topics (slug TEXT NOT NULL, id TEXT NOT NULL, published INTEGER NOT NULL, "
    "path TEXT NOT NULL, name TEXT NOT NULL)",
    "CREATE TABLE counts (slug TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE spellings (kind TEXT NOT NULL, slug TEXT NOT NULL, name TEXT NOT NULL, "
    "n INTEGER NOT NULL, PRIMARY KEY (kind, slug, name)) WITHOUT ROWID",
    "CREATE TABLE duplicates (id TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # What each change replaced: the rows of the files it rewrote, as they were (see writes.put).
    f"CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, {JOURNAL_LIST})",
)
# Made after a bulk load (one sort each instead of a million insertions).
INDEXES = (
    "CREATE INDEX files_id ON files (id, path) WHERE id IS NOT NULL",
    "CREATE INDEX files_problems ON files (path) WHERE problems IS NOT NULL",
    "CREATE INDEX files_order ON files (published DESC, id) WHERE entry = 1",
    "CREATE INDEX files_updated ON files (updated DESC) WHERE entry = 1",
    "CREATE UNIQUE INDEX entry_topics_key ON entry_topics (slug, id)",
    "CREATE INDEX entry_topics_order ON entry_topics (slug, published DESC, id)",
    "CREATE INDEX entry_topics_path ON entry_topics (slug, path)",
    "CREATE INDEX entry_topics_id ON entry_topics (id)",
)
TABLE_NAMES = frozenset(statement.split()[2] for statement in TABLES)
INDEX_NAMES = frozenset(statement.split(" ON ")[0].split()[-1] for statement in INDEXES)
# The code whose output rows hold: parsing (what a file means) and encoding (how it is stored).
_PACKAGE = Path(__file__).resolve().parent.parent
CODE = (
    "articles.py",
    "parsing.py",
    "markup.py",
    "slugs.py",
    "yamlfile.py",
    "fields.py",
    "sources.py",
    "records.py",
)
LAYOUT_CODE = ("store/schema.py", "store/rows.py", "store/writes.py")


def _hashed(described: object, code: tuple[str, ...]) -> str:
    digest = hashlib.sha256(repr(described).encode())
    for name in code:
        digest.update(name.encode() + b"\0" + (_PACKAGE / name).read_bytes())
    return digest.hexdigest()


@cache
def layout() -> str:
    """What reading and writing rows depends on: a file of another layout is never opened."""
    described = (
        COLUMNS,
        TABLES,
        INDEXES,
        [(f.name, str(f.type)) for f in fields(Meta)],
        [(f.name, str(f.type)) for f in fields(Record)],
    )
    return _hashed(described, LAYOUT_CODE)[:16]


@cache
def fingerprint() -> str:
    """Everything the meaning of a stored row depends on, hashed: the layout and the parsing."""
    return _hashed(layout(), CODE)


def format_version() -> int:
    """``PRAGMA user_version`` of an index this code made (a positive 31-bit number)."""
    return int(fingerprint()[:7], 16) or 1
