"""Article files into index records: parsed in parallel at a cold start, cached for a warm one.

A record is one file as last read. The cache (a pickle in the state folder) maps each path to
its record with the size and mtime it was read at; it is only reused by the same parsing code
and config, so a stale cache costs a full read, never a wrong answer.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import multiprocessing
import os
import pickle
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .articles import Meta, parse_meta
from .config import SiteConfig
from .errors import Problem
from .sources import read_source

log = logging.getLogger(__name__)
_CACHE_FORMAT = 4
PARALLEL_FROM = 5000  # a cold start with fewer files to parse stays in one process
CHUNK = 2000


@dataclass(slots=True)
class Record:
    """One file as last read: its good metadata (if any) and what was wrong with it."""

    meta: Meta | None
    stamp: tuple[int, int]  # size, mtime_ns of the bytes ``meta`` came from
    problems: tuple[Problem, ...] = ()

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # Slotted dataclasses unpickle through a generic, slow __setstate__; the cache holds
        # one Record per article.
        return Record, (self.meta, self.stamp, self.problems)



@contextmanager
def exclusive(cache: Path | None) -> Iterator[None]:
    """Hold a lock beside the cache file (no-op without one, or if it cannot be made)."""
    if cache is None:
        yield
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        handle = open(cache.with_name(cache.name + ".lock"), "a+b")  # noqa: SIM115
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def parse_file(config: SiteConfig, rel: str) -> Record | None:
    """Read and parse one file; None if it is gone. Unreadable: a record without meta."""
    try:
        source = read_source(config.articles_dir, rel)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        problem = Problem(rel, None, f"cannot read file: {exc.strerror or exc}")
        log.warning("article problem: %s", problem)
        return Record(None, (0, 0), (problem,))
    meta, _, problems = parse_meta(source, config)
    for problem in problems:
        log.warning("article problem: %s", problem)
    return Record(meta, (len(source.data), source.mtime_ns), tuple(problems))


def _parse_chunk(config: SiteConfig, rels: list[str]) -> list[tuple[str, Record | None]]:
    return [(rel, parse_file(config, rel)) for rel in rels]


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
        with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_parse_chunk, [config] * len(chunks), chunks))
    except (BrokenProcessPool, OSError, RuntimeError) as exc:  # e.g. a script without a main guard
        log.warning("parallel parsing unavailable (%s); parsing in this process", exc)
        results = [_parse_chunk(config, rels)]
    for done in results:
        yield from done


def _config_key(config: SiteConfig) -> str:
    """What article metadata depends on: a cache made under another config is not reused."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("feeds")
    except PackageNotFoundError:  # pragma: no cover
        package = "0"
    layout = tuple(f.name for f in fields(Meta))  # a cache of another Meta shape is useless
    # Metadata is whatever this code makes of a file: a cache made by other code is stale.
    here = Path(__file__).parent
    code = hashlib.sha256(
        b"".join(
            (here / name).read_bytes() for name in ("articles.py", "markup.py", "slugs.py", "yamlfile.py")
        )
    )
    text = repr(
        (
            package,
            layout,
            code.hexdigest(),
            config.url,
            config.timezone,
            config.author,
            str(config.articles_dir),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def read_cache(cache: Path, config: SiteConfig) -> dict[str, Record]:
    try:
        with open(cache, "rb") as fh:
            payload = pickle.load(fh)  # noqa: S301 - our own file in our state folder
    except FileNotFoundError:
        return {}
    except Exception as exc:  # a corrupt or foreign cache only costs a full read
        log.warning("ignoring unreadable index cache %s: %s", cache, exc)
        return {}
    if (
        not isinstance(payload, dict)
        or payload.get("format") != _CACHE_FORMAT
        or payload.get("config") != _config_key(config)
    ):
        return {}
    records = payload.get("records")
    return records if isinstance(records, dict) else {}


def write_cache(cache: Path, config: SiteConfig, records: dict[str, Record]) -> None:
    """Write the records for a fast restart; atomic, and harmless if it fails."""
    payload = {"format": _CACHE_FORMAT, "config": _config_key(config), "records": records}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache)
    except OSError as exc:
        log.warning("could not write index cache %s: %s", cache, exc)
