"""Article files into index records: parsed in parallel at a cold start, cached for a warm one.

A record is one file as last read: its metadata if it parsed, and what was wrong with it. The
cache (:mod:`feeds.indexcache`) is reused for a file only while its size and mtime are unchanged,
and only by the same parsing code and config, so a stale cache costs a full read, never a wrong
answer. Nothing here holds a lock that requests wait on: parsing happens before the index is
touched.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from .articles import NO_STAMP, DateSource, Meta, Stamp, with_first_seen
from .config import SiteConfig
from .errors import Problem
from .parsing import parse_meta
from .sources import Refused, read_source, scan

if TYPE_CHECKING:
    from .indexcache import IndexCache

log = logging.getLogger(__name__)
PARALLEL_FROM = 5000  # a cold start with fewer files to parse stays in one process
CHUNK = 2000
PR_SET_PDEATHSIG = 1  # linux/prctl.h
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


def parse_file(config: SiteConfig, rel: str) -> tuple[Record | None, str]:
    """Read and parse one file: its record (None if it is gone) and its body text."""
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
        meta, body, problems = parse_meta(source, config)
        record = Record(meta, source.stamp, tuple(problems), retry=meta is None)
        for problem in problems:
            log.warning("article problem: %s", problem)
        return record, body
    for problem in record.problems:
        log.warning("article problem: %s", problem)
    return record, ""


def _die_with_parent() -> None:
    """A parser process must not outlive the worker that started it (killed mid cold start)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown has to do
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _parse_chunk(config: SiteConfig, rels: list[str]) -> list[tuple[str, Record | None]]:
    return [(rel, parse_file(config, rel)[0]) for rel in rels]


def parse_all(config: SiteConfig, rels: list[str]) -> Iterator[tuple[str, Record | None]]:
    """Parse many files, on every core when there are enough to pay for the processes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if len(rels) < PARALLEL_FROM or cores < 2:
        yield from _parse_chunk(config, rels)
        return
    chunks = [rels[i : i + CHUNK] for i in range(0, len(rels), CHUNK)]
    results: list[list[tuple[str, Record | None]]] = []
    try:
        # "spawn": the server may already run threads (granian's runtime), which fork would copy.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(cores, mp_context=context, initializer=_die_with_parent) as pool:
            results = list(pool.map(_parse_chunk, [config] * len(chunks), chunks))
    except (BrokenProcessPool, OSError, RuntimeError) as exc:  # e.g. a script without a main guard
        log.warning("parallel parsing unavailable (%s); parsing in this process", exc)
        results = [_parse_chunk(config, rels)]
    for done in results:
        yield from done


def load_records(config: SiteConfig, cache: IndexCache | None) -> dict[str, Record]:
    """Every candidate file's record, from the cache where the file is unchanged.

    Workers starting together take the cache's lock, so one parses and the others reuse.
    """
    with cache.exclusive() if cache is not None else nullcontext():
        cached = cache.read(config) if cache else {}
        root = config.articles_dir
        records: dict[str, Record] = {}
        misses: list[str] = []
        for listed in scan(root):
            if listed.refusal is not None:
                records[listed.rel] = refused(listed.rel, listed.refusal)
                continue
            hit = cached.get(listed.rel)
            if hit is not None and hit.stamp == _stamp(os.path.join(root, listed.rel)):
                records[listed.rel] = hit
            else:
                misses.append(listed.rel)
        for rel, record in parse_all(config, misses):
            if record is not None:
                records[rel] = record
        if cache is not None and (misses or len(cached) != len(records)):
            cache.write(config, records)
    for record in records.values():
        if record.meta is None and not record.retry:
            for problem in record.problems:
                log.warning("article problem: %s", problem)
    return records


def stale_paths(config: SiteConfig, records: Mapping[str, Record]) -> list[str]:
    """Paths whose file is not the version in ``records`` (changed, new, gone), by size and mtime."""
    root = config.articles_dir
    listed = {item.rel: item for item in scan(root)}
    stale = [rel for rel in records if rel not in listed]
    for rel, item in listed.items():
        record = records.get(rel)
        if record is None:
            stale.append(rel)
        elif item.refusal is not None:
            if record.meta is not None:  # was an article, now a pipe or a link out of the folder
                stale.append(rel)
        elif record.stamp != _stamp(os.path.join(root, rel)):
            stale.append(rel)
    return sorted(stale)


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Stamp(st.st_size, st.st_mtime_ns)


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
