"""Records into rows of ``files`` and back, by column name, checked on the way back.

Anyone able to write to the state folder can forge a row, so a row is data to be checked, never
trusted: every value read back passes the checks its field had when it was parsed from front
matter (types, dates a feed can carry, text XML allows, http(s) URLs, a path that names an
article file inside the folder). A row that fails is :class:`Malformed`; the reader leaves it
out with one log line and the writer reads its file again.
"""

from __future__ import annotations

import json
import operator
import re
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from ..articles import SUFFIXES, Author, DateSource, Meta, Stamp, Topic, topic
from ..errors import Problem, Severity
from ..markup import is_clean
from ..records import Record
from .schema import COLUMNS, FILE_COLUMNS, NAMES

US, RS = "\x1f", "\x1e"  # unit and record separators: clean text never holds them
YEARS = (-30_578_688_000, 253_370_764_800)  # 1001-01-01 .. 9999-01-01: RSS needs four digits
DECODED = 4096  # distinct topic and author lists kept decoded
PATH_MAX = 4096
_KINDS = {name: (str if kind.startswith("text") else int, kind.endswith("?")) for name, kind in COLUMNS}
_TEXTS = ("id", "title", "language", "image_type", "image_alt", "summary")
_URLS = ("url", "permalink")


class Malformed(ValueError):
    """A row that is not what this code writes."""


def encode(rel: str, record: Record) -> tuple[object, ...]:
    """The row of ``files`` for one file's record, in column order."""
    problems = [[p.path, p.line, p.message, p.severity.value] for p in record.problems]
    meta = record.meta
    values: dict[str, object] = _EMPTY if meta is None else _meta_values(meta)
    values = {
        **values,
        "path": rel,
        "size": record.stamp.size,
        "mtime_ns": record.stamp.mtime_ns,
        "retry": int(record.retry),
        "problems": json.dumps(problems, ensure_ascii=False) if problems else None,
    }
    return _IN_ORDER(values)  # type: ignore[no-any-return]


def _meta_values(meta: Meta) -> dict[str, object]:
    return {
        "id": meta.id,
        "title": meta.title,
        "published": int(meta.published.timestamp()),
        "updated": int(meta.updated.timestamp()),
        "url": meta.url,
        "permalink": meta.permalink,
        "topics": _listed(meta.topics),
        "tags": _listed(meta.tags),
        "authors": RS.join(f"{a.name}{US}{a.email or ''}{US}{a.uri or ''}" for a in meta.authors),
        "language": meta.language,
        "draft": int(meta.draft),
        "image": meta.image,
        "image_type": meta.image_type,
        "image_length": meta.image_length,
        "image_alt": meta.image_alt,
        "sources": RS.join(meta.sources),
        "summary": meta.given_summary,
        "digest": meta.digest,
        "body_digest": meta.body_digest,
        "teaser": meta.teaser,
        "body_start": meta.body_start,
        "dated_by": meta.dated_by.value,
    }


def _listed(topics: tuple[Topic, ...]) -> str:
    return RS.join(f"{t.slug}{US}{t.name}" for t in topics)


_EMPTY: dict[str, object] = dict.fromkeys(NAMES)
_IN_ORDER = operator.itemgetter(*NAMES)  # a KeyError, never a shifted column, if a name is missing


def is_article_path(rel: object) -> bool:
    """A path as :func:`~feeds.sources.scan` lists them: relative, inside, an article's suffix."""
    if not isinstance(rel, str) or not rel or len(rel) > PATH_MAX or not is_clean(rel):
        return False
    parts = rel.split("/")
    if any(not part or part in (".", "..") or part.startswith((".", "_")) for part in parts):
        return False
    return PurePosixPath(rel).suffix.lower() in SUFFIXES and "\\" not in rel and "\0" not in rel


class Decoder:
    """Rows back into records; the many repeated topic and author lists are decoded once.

    Shared by the threads of a process: its caches only ever map a text to the same value.
    """

    def __init__(self) -> None:
        self._topics: dict[str, tuple[Topic, ...]] = {"": ()}
        self._authors: dict[str, tuple[Author, ...]] = {"": ()}

    def record(self, row: sqlite3.Row | Mapping[str, Any]) -> Record:
        """The record of a ``files`` row; :class:`Malformed` if it is not what we write."""
        try:
            return self._record(row)
        except Malformed:
            raise
        except (TypeError, ValueError, KeyError, OverflowError, IndexError) as exc:
            raise Malformed(str(exc) or type(exc).__name__) from None

    def _record(self, row: sqlite3.Row | Mapping[str, Any]) -> Record:
        has_meta = row["id"] is not None
        for i, name in enumerate(NAMES):
            _check_type(name, row[name], required=i < FILE_COLUMNS or has_meta)
        rel = row["path"]
        if not is_article_path(rel):
            raise Malformed("not the path of an article file")
        if row["size"] < 0:
            raise Malformed("a negative size")
        stamp = Stamp(row["size"], row["mtime_ns"])
        found = decode_problems(row["problems"], strict=True)
        if not has_meta:
            return Record(None, stamp, found, bool(row["retry"]))
        return Record(self._meta(row, rel, stamp), stamp, found, bool(row["retry"]))

    def _meta(self, row: sqlite3.Row | Mapping[str, Any], rel: str, stamp: Stamp) -> Meta:
        published, updated = row["published"], row["updated"]
        if not (YEARS[0] <= published <= YEARS[1] and YEARS[0] <= updated <= YEARS[1]):
            raise Malformed("no date a feed can carry")
        texts = [row[name] for name in _TEXTS if row[name] is not None]
        if not is_clean("".join(texts) + row["sources"].replace(RS, "")):
            raise Malformed("characters XML forbids")
        if not row["id"] or not row["title"]:
            raise Malformed("an empty id or title")
        for name in _URLS:
            _check_url(name, row[name])
        if row["image"] is not None:
            _check_url("image", row["image"])
        if row["image_length"] < 0 or row["body_start"] < 0:
            raise Malformed("a negative length")
        return Meta(
            id=row["id"],
            path=rel,
            title=row["title"],
            published=datetime.fromtimestamp(published, UTC),
            updated=datetime.fromtimestamp(updated, UTC),
            url=row["url"],
            permalink=row["permalink"],
            topics=self.topics(row["topics"]),
            tags=self.topics(row["tags"]),
            authors=self.authors(row["authors"]),
            language=row["language"],
            draft=bool(row["draft"]),
            image=row["image"],
            image_type=row["image_type"],
            image_length=row["image_length"],
            image_alt=row["image_alt"],
            sources=tuple(row["sources"].split(RS)) if row["sources"] else (),
            given_summary=row["summary"],
            version=stamp,
            digest=row["digest"],
            body_digest=row["body_digest"],
            teaser=row["teaser"],
            body_start=row["body_start"],
            dated_by=DateSource(row["dated_by"]),
        )

    def topics(self, raw: str) -> tuple[Topic, ...]:
        found = self._topics.get(raw)
        if found is None:
            pairs = [item.split(US) for item in raw.split(RS)]
            if any(len(pair) != 2 or not all(pair) for pair in pairs) or not is_clean(_plain(raw)):
                raise Malformed("malformed topics")
            if len(self._topics) > DECODED:
                self._topics.clear()
            found = self._topics[raw] = tuple(topic(slug, name) for slug, name in pairs)
        return found

    def authors(self, raw: str) -> tuple[Author, ...]:
        found = self._authors.get(raw)
        if found is None:
            triples = [item.split(US) for item in raw.split(RS)]
            if any(len(triple) != 3 or not triple[0] for triple in triples) or not is_clean(_plain(raw)):
                raise Malformed("malformed authors")
            for _, _, uri in triples:
                if uri:
                    _check_url("author uri", uri)
            if len(self._authors) > DECODED:
                self._authors.clear()
            found = self._authors[raw] = tuple(Author(n, e or None, u or None) for n, e, u in triples)
        return found


def _plain(raw: str) -> str:
    return raw.replace(US, "").replace(RS, "")


def _check_type(name: str, value: object, required: bool) -> None:
    kind, optional = _KINDS[name]
    if value is None and (optional or not required):
        return
    if type(value) is not kind:
        raise Malformed(f"column {name}: expected {kind.__name__}")


# What fields.http_url() gives back, and so all a stored URL may be: http(s), a host, then only
# printable ASCII that is safe in any attribute or header (no quotes, brackets of HTML, spaces),
# with '%' only as an escape. A regular expression: rows are decoded by the hundred per document.
_STORED_URL = re.compile(
    r"https?://[!$&()*+,\-.0-9:;=@A-Z\[\]_a-z~%]+(?:[/?#][!#$%&()*+,\-./0-9:;=?@A-Z\[\]_a-z~]*)?"
)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _check_url(name: str, value: str) -> None:
    """A URL as front matter's check leaves it: anything else (``javascript:``) was not ours."""
    if _STORED_URL.fullmatch(value) is None or _BAD_PERCENT.search(value):
        raise Malformed(f"{name}: not an absolute http(s) URL")


def decode_problems(raw: object, strict: bool = False) -> tuple[Problem, ...]:
    """A row's problems column; () (or Malformed when ``strict``) if it is not what we write."""
    if raw is None:
        return ()
    try:
        if not isinstance(raw, str):
            raise TypeError("problems: expected text")
        items = json.loads(raw)
        if not isinstance(items, list):
            raise TypeError("problems: expected a list")
        return tuple(_problem(item) for item in items)
    except (TypeError, ValueError, KeyError, RecursionError) as exc:
        if strict:
            raise Malformed(str(exc)) from None
        return ()


def _problem(value: Any) -> Problem:
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError("malformed problem")
    path, line, message, severity = value
    if not isinstance(path, str) or not isinstance(message, str) or not isinstance(severity, str):
        raise TypeError("malformed problem")
    if line is not None and (not isinstance(line, int) or isinstance(line, bool) or line < 0):
        raise TypeError("malformed problem line")
    if not is_clean(path + message):
        raise ValueError("characters XML forbids")
    return Problem(path, line, message, Severity(severity))


def pairs(raw: object) -> list[tuple[str, str]]:
    """(slug, name) of a stored topic list; malformed items are skipped."""
    if not isinstance(raw, str) or not raw:
        return []
    found = [item.split(US) for item in raw.split(RS)]
    return [(p[0], p[1]) for p in found if len(p) == 2]
