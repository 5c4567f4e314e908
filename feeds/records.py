"""Article files into records: one file as last read, ready for the index.

A record is one file as last read: its metadata if it parsed, and what was wrong with it.
Parsing happens here, before the index is touched, so nothing that requests wait for is held
while a file is read. Reading many files (a cold start, the check after a restart) is
:mod:`feeds.indexing`'s job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from .articles import NO_STAMP, DateSource, Meta, Stamp, with_first_seen
from .config import SiteConfig
from .errors import Problem
from .parsing import parse_meta
from .sources import Refused, read_source

log = logging.getLogger(__name__)
FirstSeen = Callable[[list[str]], dict[str, datetime]]


@dataclass(frozen=True, slots=True)
class Record:
    """One file as last read.

    ``retry``: the file has no usable metadata for a reason that may pass (half-written,
    unreadable for a moment), so the index keeps serving its last good version meanwhile.
    """

    meta: Meta | None
    stamp: Stamp
    problems: tuple[Problem, ...] = ()
    retry: bool = False


def refused(rel: str, reason: str) -> Record:
    """A path that is never read (a pipe, a symlink out of the folder, a file too large)."""
    problem = Problem(rel, None, f"{reason}; left out" if "left out" not in reason else reason)
    return Record(None, NO_STAMP, (problem,))


def parse_file(config: SiteConfig, rel: str, teaser: bool = True) -> tuple[Record | None, str]:
    """Read and parse one file: its record (None if it is gone) and its body text (``teaser``:
    see :func:`~feeds.parsing.parse_meta`)."""
    try:
        source = read_source(config.articles_dir, rel, config.max_article_bytes)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None, ""
    except Refused as exc:
        record = refused(rel, exc.strerror or str(exc))
    except OSError as exc:
        problem = Problem(rel, None, f"cannot read file: {exc.strerror or exc}")
        record = Record(None, NO_STAMP, (problem,), retry=True)
    else:
        meta, body, problems = parse_meta(source, config, teaser)
        record = Record(meta, source.stamp, tuple(problems), retry=meta is None)
        for problem in problems:
            log.warning("article problem: %s", problem)
        return record, body
    for problem in record.problems:
        log.warning("article problem: %s", problem)
    return record, ""


def dated(records: dict[str, Record], first_seen: FirstSeen) -> dict[str, Record]:
    """Records whose articles carry no date, given the date each was first seen.

    Records keep the parsed (undated) form for the cache; the index gets these.
    """
    undated = [
        r.meta.id for r in records.values() if r.meta is not None and r.meta.dated_by is DateSource.SEEN
    ]
    if not undated:
        return records
    seen = first_seen(undated)
    result = dict(records)
    for rel, record in records.items():
        meta = record.meta
        if meta is not None and meta.dated_by is DateSource.SEEN and meta.id in seen:
            result[rel] = replace(record, meta=with_first_seen(meta, seen[meta.id]))
    return result
