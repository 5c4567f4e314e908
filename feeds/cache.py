"""Rendered documents of one process, each rendered once per change of what it shows.

A request asks for a document; if nothing it depends on changed since it was rendered (the
view: the published snapshot and the time of the next embargo), the cached bytes come back at
the cost of a dict lookup. Otherwise its inputs are computed again (its entries selected) and,
only if they differ, it is rendered, with its ETag computed from the bytes and its Last-Modified
from the ledger. A document that had to leave out an entry whose file is being rewritten is
served once and never kept, so a 200 that caches keep is always complete.

Rendering holds no lock that other documents wait for: each document has a lock of its own (one
of ``STRIPES``), so the same document is rendered at most once at a time while others render
beside it. The ledger's cross-process write for a new version happens under that lock too.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from datetime import datetime

from .documents import Document
from .store import Ledger

PAGE_CACHE = 4096  # article and archive pages kept rendered (feeds and the index are always kept)
RECHECK_SECONDS = 1.0  # how often a cached document asks the ledger for its date
STRIPES = 64
Key = tuple[str, str]  # (kind, name): also the document's key in the ledger
Inputs = Callable[[], tuple[Hashable, Callable[[], Document]]]
RenderHook = Callable[[str, float], None]


@dataclass
class _Cached:
    view: object  # the view it was checked against (identity is what counts)
    inputs: Hashable
    doc: Document
    checked: float  # time.monotonic() of the last ledger look-up


class Documents:
    """The document cache of one process. Thread-safe."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime], lru: frozenset[str]) -> None:
        self._ledger = ledger
        self._clock = clock
        self._lru = lru  # kinds of which only the most recent PAGE_CACHE are kept
        self._docs: dict[Key, _Cached] = {}
        self._recent: OrderedDict[Key, None] = OrderedDict()
        self._recent_lock = threading.Lock()  # held for a dict operation only
        self._stripes = [threading.Lock() for _ in range(STRIPES)]
        self.hooks: list[RenderHook] = []  # called after each render (kind, seconds)

    def get(self, key: Key, view: object, inputs: Inputs, keep: bool = True) -> Document:
        """The document, rendered only if its inputs changed; ``keep=False`` for a caller that
        asks for each document once (a static export): dated, but not kept."""
        cached = self._docs.get(key)
        if cached is not None and cached.view is view:
            if time.monotonic() - cached.checked > RECHECK_SECONDS:
                self._recheck(key, cached)
            return cached.doc
        with self._stripes[hash(key) % STRIPES]:
            cached = self._docs.get(key)
            if cached is not None and cached.view is view:
                return cached.doc
            fingerprint, render = inputs()
            if cached is None or cached.inputs != fingerprint:
                started = time.perf_counter()
                doc = render()
                for hook in self.hooks:
                    hook(key[0], time.perf_counter() - started)
                if not doc.complete:  # an entry left out while its file settles: keep nothing
                    return doc
            else:
                doc = cached.doc
            # Unchanged bytes are still a new version if the document changed in between.
            if not keep:
                return self._dated(key, doc)
            fresh = _Cached(view, fingerprint, self._dated(key, doc), time.monotonic())
            self._docs[key] = fresh
        if key[0] in self._lru:
            self._remember(key)
        return fresh.doc

    def _remember(self, key: Key) -> None:
        with self._recent_lock:
            self._recent[key] = None
            self._recent.move_to_end(key)
            while len(self._recent) > PAGE_CACHE:
                self._docs.pop(self._recent.popitem(last=False)[0], None)

    def _dated(self, key: Key, doc: Document) -> Document:
        """``doc`` with the Last-Modified the ledger gives its ETag (never backwards)."""
        modified = self._ledger.stamp(":".join(key), doc.etag, doc.natural, self._clock())
        return doc if modified == doc.last_modified else replace(doc, last_modified=modified)

    def _recheck(self, key: Key, cached: _Cached) -> None:
        """Adopt a date another worker gave the same bytes (workers converge within a second)."""
        cached.checked = time.monotonic()
        modified = self._ledger.lookup(":".join(key), cached.doc.etag)
        if modified is not None and modified != cached.doc.last_modified:
            cached.doc = replace(cached.doc, last_modified=modified)
