"""A build's documents rendered on more than one core.

A first build renders every document: at a million articles, a million article pages and
180,000 archive documents, about two hours of pure Python on one core. ``feeds build --jobs N``
hands them in batches to N processes and takes the results back in the order it asked for them.
Each process holds a site of its own over the build's config (not the file, which an operator
may edit during the build), its index (only read: never checked, never written) and its ledger,
so the bytes and dates are those the build's process would make. Writing stays in the build's
process, which plans the next documents meanwhile, so the export and its manifest are those of a
build on one core.

The processes start only once a build has rendered :data:`ALONE` documents itself: a build
over an earlier export renders a handful, which would never pay for starting them (about
130 MB a process). A process that cannot open the site (the index no longer one of the build's
config) or dies leaves its documents to the build's process, with a warning: the build goes
on, on one core.

The one piece of module state, :data:`_opened`, is set once in each rendering process by its
initializer and never in the process that builds.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import chain, islice
from pathlib import Path
from typing import TypeVar

from . import catalogue, spawning
from .catalogue import Kind
from .config import SiteConfig
from .documents import Document
from .errors import NotFound, Unsettled
from .site import Site
from .store import IndexStore, Ledger, config_key

log = logging.getLogger(__name__)
ALONE = 500  # documents a build renders itself before it starts processes
BATCH = 16  # documents a process is handed at once
AHEAD = 4  # batches per process handed out before the first one is back (bounds memory)

_KINDS = {kind.place.kind: kind for kind in catalogue.KINDS}
_opened: list[Site] = []  # in a rendering process: the site it opened


class Outcome(enum.Enum):
    """A document that was not rendered, and why."""

    GONE = "gone"  # not found: gone since the listing, or changed into something refused
    UNSETTLED = "unsettled"  # an article it shows is being written: try again later


Rendered = Document | Outcome
J = TypeVar("J")
Asked = tuple[str, dict[str, str]]  # a kind's name and the document's parameters


def render(site: Site, kind: Kind, params: dict[str, str]) -> Rendered:
    """One document of a build (not kept in the site's cache: a build asks once)."""
    try:
        doc = site.document(kind, params, keep=False)
    except NotFound:
        return Outcome.GONE
    except Unsettled:
        return Outcome.UNSETTLED
    return doc if doc.complete else Outcome.UNSETTLED


def render_all(
    site: Site, jobs: Iterable[J], ask: Callable[[J], tuple[Kind, dict[str, str]]], workers: int = 1
) -> Generator[tuple[J, Rendered], None, None]:
    """Each job with its document, in the order given; on ``workers`` processes once more
    than :data:`ALONE` were rendered here. Processes need the index and the ledger in files
    (the ledger dates documents alike in every process); without, everything is rendered here.
    They read the clock themselves."""
    jobs = iter(jobs)
    ledger = site.ledger.shared
    if workers < 2 or ledger is None or site.view().store.path is None:
        for job in jobs:
            yield job, render(site, *ask(job))
        return
    for job in islice(jobs, ALONE):
        yield job, render(site, *ask(job))
    first = next(jobs, None)  # None: every job was rendered above (jobs are never None)
    if first is None:
        return
    log.info("rendering the export on %d processes", workers)
    with _Pool(site, workers, ledger) as pool:
        yield from pool.render(chain([first], jobs), ask)


class _Pool:
    """The rendering processes of one build, and the batches handed to them."""

    def __init__(self, site: Site, count: int, ledger: Path) -> None:
        self._site = site
        self._count = count
        store = site.view().store
        args = (site.config, str(store.file), str(ledger), site.sitemap_urls)
        self._pool: ProcessPoolExecutor | None = spawning.pool(count, _open, args)

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def render(
        self, jobs: Iterator[J], ask: Callable[[J], tuple[Kind, dict[str, str]]]
    ) -> Iterator[tuple[J, Rendered]]:
        pending: deque[tuple[list[J], Future[list[Rendered]] | None]] = deque()
        while True:
            batch = list(islice(jobs, BATCH))
            if batch:
                pending.append((batch, self._hand(batch, ask)))
            while pending and (not batch or len(pending) >= AHEAD * self._count):
                done, future = pending.popleft()
                yield from zip(done, self._results(done, future, ask), strict=True)
            if not batch:
                return

    def _hand(
        self, batch: list[J], ask: Callable[[J], tuple[Kind, dict[str, str]]]
    ) -> Future[list[Rendered]] | None:
        if self._pool is None:
            return None
        asked: list[Asked] = [(kind.place.kind, params) for kind, params in map(ask, batch)]
        try:
            return self._pool.submit(_render_batch, asked)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._broken(exc)
            return None

    def _results(
        self,
        batch: list[J],
        future: Future[list[Rendered]] | None,
        ask: Callable[[J], tuple[Kind, dict[str, str]]],
    ) -> list[Rendered]:
        if future is not None:
            try:
                return future.result()
            except (BrokenProcessPool, CancelledError, OSError) as exc:  # a process died (OOM)
                self._broken(exc)
        return [render(self._site, *ask(job)) for job in batch]

    def _broken(self, exc: BaseException) -> None:
        if self._pool is not None:
            log.warning(
                "the rendering processes stopped (%s); rendering the rest of the export in this one", exc
            )
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _open(config: SiteConfig, index: str, ledger: str, sitemap_urls: int) -> None:
    """In a rendering process, first: the site of the build's process, from its config (not
    the file, which may have changed since), its index and its ledger. The index is only read:
    the build's process compared the files with it, and a build never takes in changes."""
    spawning.die_with_parent()
    spawning.refuse_in_bootstrap()
    store = IndexStore(Path(index))
    if not store.ready(config_key(config)):
        store.close()
        raise RuntimeError(f"{index} is no longer an index of this config")
    _opened.append(Site(config, store, ledger=Ledger(Path(ledger)), sitemap_urls=sitemap_urls))


def _render_batch(asked: list[Asked]) -> list[Rendered]:
    """In a rendering process: the documents, their gzip twins made here too."""
    site = _opened[0]
    rendered = [render(site, _KINDS[name], params) for name, params in asked]
    for doc in rendered:
        if isinstance(doc, Document):
            doc.gzipped  # noqa: B018 (made on first use: here, on this core, and sent along)
    return rendered
