"""The live site of one process: documents rendered once per change of their inputs.

A request asks for a document; if nothing it depends on changed since it was rendered (the
index generation, the config, the time of the next embargo), the cached bytes come back at the
cost of a dict lookup. Otherwise its entries are selected again and, only if they differ, it is
re-rendered, with its ETag computed from the bytes and its Last-Modified from the ledger.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from . import pages
from .articles import Article, Meta, complete, parse_meta, read_body
from .config import FeedSpec, SiteConfig, load_config
from .errors import ConfigError, NotFound, Problem
from .index import Index
from .ledger import Ledger
from .render import EPOCH, MEDIA_TYPES, RENDERERS, Format, last_modified
from .selection import specs_for_topics
from .sources import read_source

Clock = Callable[[], datetime]
HTML = "text/html; charset=utf-8"
FORMATS = tuple(Format)
SETTLE_SECONDS = 2.0  # a file changed this recently may still be being written
SETTLE_WATCHED = 60.0  # with a watcher, the close event brings the new version; wait for it
RECHECK_SECONDS = 1.0  # how often a cached document asks the ledger for its date
log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Document:
    """Bytes ready to send, in both encodings, with their validators.

    ``etag`` is the unquoted strong tag of the identity bytes; the gzip bytes are served as
    ``<etag>-gzip`` so the two representations never share a strong tag (RFC 9110 8.8.3).
    """

    body: bytes
    gzipped: bytes
    etag: str
    last_modified: datetime
    mimetype: str
    max_age: int
    natural: datetime  # the newest entry's date, before the ledger kept it from going back


def make_document(body: bytes, mimetype: str, modified: datetime, max_age: int) -> Document:
    return Document(
        body=body,
        # mtime=0 keeps the gzip header free of the clock: same bytes on every machine.
        gzipped=gzip.compress(body, compresslevel=6, mtime=0),
        etag=hashlib.sha256(body).hexdigest()[:32],
        last_modified=modified.replace(microsecond=0),
        mimetype=mimetype,
        max_age=max_age,
        natural=modified.replace(microsecond=0),
    )


@dataclass(frozen=True)
class View:
    """What every document depends on besides its own entries; replaced on any change."""

    generation: int
    valid_until: datetime | None  # the next embargo: selections change then
    specs: dict[str, FeedSpec]
    newest: datetime


@dataclass
class _Cached:
    view: View
    inputs: Hashable
    doc: Document
    checked: float  # time.monotonic() of the last ledger look-up


class Site:
    """Config, article index and document cache of one process. Thread-safe."""

    def __init__(
        self,
        config_path: str | os.PathLike[str],
        clock: Clock = utc_now,
        state_dir: Path | None = None,
        page_cache: int = 4096,
    ) -> None:
        self.config_path = Path(config_path)
        self.clock = clock
        self.config: SiteConfig = load_config(self.config_path)  # a broken start fails here
        self.config_error: ConfigError | None = None
        self.state_dir = state_dir
        self._index = Index(self.config)
        self._index.load(self._cache_file())
        self.ledger = Ledger(state_dir / "validators.sqlite" if state_dir else None)
        self.renders = 0
        self.render_seconds = 0.0
        # Observers (metrics, tests): called after each render (kind, seconds) and each
        # reload (True: applied, False: a broken config refused).
        self.render_hooks: list[Callable[[str, float], None]] = []
        self.reload_hooks: list[Callable[[bool], None]] = []
        self._config_generation = 0
        self._view: View | None = None
        self._docs: dict[tuple[str, str], _Cached] = {}
        self._pages: OrderedDict[tuple[str, str], None] = OrderedDict()  # LRU of page keys
        self._page_cache = page_cache
        self._articles: OrderedDict[tuple[str, tuple[int, float]], Article] = OrderedDict()
        self._lock = threading.RLock()
        self._degraded = False  # set while rendering when an entry's body is not settled
        self.watching = False  # a Watcher re-reads files when their writers close them

    # -- what readers can see now -------------------------------------------------------------

    def view(self) -> View:
        view, now = self._view, self.clock()
        generation = self._index.generation + self._config_generation
        if (
            view is None
            or view.generation != generation
            or (view.valid_until is not None and now >= view.valid_until)
        ):
            with self._lock, self._index.lock:
                topics = self._index.topics(now) if self.config.topic_feeds else {}
                specs = specs_for_topics(self.config, topics)
                view = self._view = View(
                    generation=generation,
                    valid_until=self._index.next_release(now),
                    specs={s.name: s for s in specs},
                    newest=self._index.newest(now) or EPOCH,
                )
        return view

    @property
    def specs(self) -> dict[str, FeedSpec]:
        return self.view().specs

    @property
    def next_release(self) -> datetime | None:
        return self.view().valid_until

    def published(self) -> list[Meta]:
        """Articles visible now, newest first."""
        with self._index.lock:
            return list(self._index.published(self.clock()))

    def all_articles(self) -> list[Meta]:
        """Every indexed article, drafts and embargoed ones included, by path."""
        return self._index.articles()

    def article_count(self) -> int:
        return self._index.count()

    def topics(self) -> dict[str, str]:
        """Topics with a visible article: slug -> display spelling."""
        with self._index.lock:
            return self._index.topics(self.clock())

    def problems(self) -> list[Problem]:
        found = self._index.problems()
        if self.config_error is not None:
            found = list(self.config_error.problems) + found
        return found

    def known_paths(self, rel_dir: str) -> list[str]:
        """Article paths known under a folder (for a folder that was moved or deleted)."""
        return self._index.forget_tree(rel_dir)

    @property
    def generation(self) -> int:
        """Changes whenever anything a document depends on changes (articles, config)."""
        return self._index.generation + self._config_generation

    def set_watched(self, watched: bool) -> None:
        """Whether a watcher re-reads files as their writers close them."""
        self.watching = watched

    def feed_entries(self, spec: FeedSpec) -> list[Meta]:
        with self._index.lock:
            return self._index.select(spec, self.clock())

    # -- documents ----------------------------------------------------------------------------

    def feed(self, name: str, fmt: str) -> Document:
        view = self.view()
        spec = view.specs.get(name)
        if spec is None or fmt not in FORMATS:
            raise NotFound(f"no feed {name}.{fmt}")

        def inputs() -> tuple[Hashable, Callable[[], Document]]:
            entries = self.feed_entries(spec)
            natural = last_modified(entries, view.newest)
            key = (self.config, spec, fmt, natural, tuple((m.id, m.path, m.version) for m in entries))
            return key, lambda: self._render_feed(spec, fmt, entries, natural)

        return self._document(("feed", f"{name}.{fmt}"), view, inputs)

    def page(self, article_id: str) -> Document:
        view = self.view()
        with self._index.lock:
            meta = self._index.article(article_id, self.clock())
        if meta is None:
            raise NotFound(f"no article {article_id}")
        feeds = [s for s in view.specs.values() if s.is_topic_feed and s.topics[0] in meta.topic_slugs]

        def inputs() -> tuple[Hashable, Callable[[], Document]]:
            key = (self.config, meta.id, meta.path, meta.version, tuple(s.name for s in feeds))
            return key, lambda: make_document(
                pages.render_article(self.config, self._article(meta), feeds),
                HTML,
                meta.updated,
                self.config.max_age,
            )

        return self._document(("page", article_id), view, inputs)

    def index_page(self) -> Document:
        view = self.view()

        def inputs() -> tuple[Hashable, Callable[[], Document]]:
            with self._index.lock:
                shown = []
                for meta in self._index.published(self.clock()):
                    if len(shown) >= self.config.limit:
                        break
                    shown.append(meta)
            key = (
                self.config,
                tuple(view.specs.values()),
                view.newest,
                tuple((m.id, m.path, m.version) for m in shown),
            )
            return key, lambda: make_document(
                pages.render_index(self.config, list(view.specs.values()), shown),
                HTML,
                view.newest,
                self.config.max_age,
            )

        return self._document(("index", ""), view, inputs)

    def _document(
        self, key: tuple[str, str], view: View, inputs: Callable[[], tuple[Hashable, Callable[[], Document]]]
    ) -> Document:
        cached = self._docs.get(key)
        if cached is not None and cached.view is view:
            if time.monotonic() - cached.checked > RECHECK_SECONDS:
                self._recheck(key, cached)
            return cached.doc
        with self._lock:
            cached = self._docs.get(key)
            if cached is not None and cached.view is view:
                return cached.doc
            fingerprint, render = inputs()
            if cached is None or cached.inputs != fingerprint:
                self._degraded = False
                started = time.perf_counter()
                doc = render()
                elapsed = time.perf_counter() - started
                self.renders += 1
                self.render_seconds += elapsed
                for hook in self.render_hooks:
                    hook(key[0], elapsed)
                if self._degraded:  # an entry without its body: serve once, keep nothing
                    return doc
            else:
                doc = cached.doc
            # Unchanged bytes are still a new version if the document changed in between.
            cached = _Cached(view, fingerprint, self._dated(key, doc), time.monotonic())
            self._docs[key] = cached
            if key[0] == "page":
                self._pages[key] = None
                self._pages.move_to_end(key)
                if len(self._pages) > self._page_cache:
                    self._docs.pop(self._pages.popitem(last=False)[0], None)
            return cached.doc

    def _dated(self, key: tuple[str, str], doc: Document) -> Document:
        """``doc`` with the Last-Modified the ledger gives its ETag (never backwards)."""
        modified = self.ledger.stamp(":".join(key), doc.etag, doc.natural, self.clock())
        return doc if modified == doc.last_modified else replace(doc, last_modified=modified)

    def _recheck(self, key: tuple[str, str], cached: _Cached) -> None:
        """Adopt a date another worker gave the same bytes (workers converge within a second)."""
        cached.checked = time.monotonic()
        modified = self.ledger.lookup(":".join(key), cached.doc.etag)
        if modified is not None and modified != cached.doc.last_modified:
            cached.doc = replace(cached.doc, last_modified=modified)

    def _render_feed(self, spec: FeedSpec, fmt: str, entries: list[Meta], natural: datetime) -> Document:
        articles = [self._article(m) for m in entries]
        body = RENDERERS[fmt](spec, self.config, articles, natural)
        return make_document(body, MEDIA_TYPES[fmt], natural, spec.max_age)

    def _article(self, meta: Meta) -> Article:
        """The full article for ``meta``; bodies are read and rendered only when shown."""
        key = (meta.path, meta.version)
        article = self._articles.get(key)
        if article is not None:
            self._articles.move_to_end(key)
            return article
        body, settled = "", True
        try:
            source = read_source(self.config.articles_dir, meta.path)
            known = read_body(source, meta)
            if known is not None:
                body = known
            elif time.time() - source.mtime < (SETTLE_WATCHED if self.watching else SETTLE_SECONDS):
                self._degraded = True
                # Being rewritten right now: its writer has not closed it, so the index still
                # holds the old version. Half a new body would be a truncated entry; show the
                # old metadata without a body until the watcher reads the finished file (or,
                # unwatched or if an event was lost, until the file has been quiet a while).
                settled = False
            else:
                fresh, fresh_body, _ = parse_meta(source, self.config)
                body = fresh_body if fresh is not None and fresh.id == meta.id else ""
        except OSError as exc:
            log.warning("article body unavailable: %s: %s", meta.path, exc)
        article = complete(meta, body, self.config)
        if not settled:
            return article
        self._articles[key] = article
        if len(self._articles) > 2048:
            self._articles.popitem(last=False)
        return article

    # -- change -------------------------------------------------------------------------------

    def apply(self, paths: Iterable[str] = (), config_changed: bool = False) -> bool:
        """Take in changed article paths (relative) and/or a changed config; True if reloaded."""
        changed = False
        if config_changed:
            changed = self.reload_config()
        paths = list(paths)
        if paths:
            started = time.perf_counter()
            if self._index.refresh(paths):
                changed = True
                log.info(
                    "reloaded %d article file(s) in %.1f ms",
                    len(paths),
                    (time.perf_counter() - started) * 1000,
                )
        if changed:
            for hook in self.reload_hooks:
                hook(True)
        return changed

    def reload_config(self) -> bool:
        """Use a changed config if it is valid; otherwise keep the last good one and say why."""
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.config_error = exc
            for problem in exc.problems:
                log.error("config error, still serving the last good config: %s", problem)
            for hook in self.reload_hooks:
                hook(False)
            return False
        self.config_error = None
        if config == self.config:
            return False
        reindex = (config.articles_dir, config.url, config.timezone, config.author) != (
            self.config.articles_dir,
            self.config.url,
            self.config.timezone,
            self.config.author,
        )
        if reindex:
            index = Index(config)
            index.load(self._cache_file(config))
            self._index = index
        else:
            self._index.config = config
        with self._lock:
            self.config = config
            self._config_generation += 1
        log.info("config reloaded from %s%s", self.config_path, " (articles re-read)" if reindex else "")
        return True

    def health(self) -> dict[str, object]:
        status: dict[str, object] = {"status": "ok"}
        if self.config_error is not None:
            status = {
                "status": "degraded",
                "reason": "config.yaml is broken; serving the last good config",
                "errors": [str(p) for p in self.config_error.problems],
            }
        view = self.view()
        status.update(articles=self.article_count(), feeds=len(view.specs), problems=len(self.problems()))
        return status

    def save_cache(self) -> None:
        cache = self._cache_file()
        if cache is not None:
            self._index.save(cache)

    def _cache_file(self, config: SiteConfig | None = None) -> Path | None:
        if self.state_dir is None:
            return None
        config = config or self.config
        digest = hashlib.sha256(str(config.articles_dir).encode()).hexdigest()[:12]
        return self.state_dir / f"index-{digest}.pickle"


def open_site(
    config_path: str | os.PathLike[str], clock: Clock = utc_now, state_dir: Path | None = None
) -> Site:
    """Read config and articles; raises ConfigError when the config is unusable."""
    return Site(config_path, clock, state_dir)
