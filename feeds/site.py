"""The live site of one process: documents rendered once per change of their inputs.

A request asks for a document; if nothing it depends on changed since it was rendered (the
site's generation, which moves with every article or config change, and the time of the next
embargo), the cached bytes come back at the cost of a dict lookup. Otherwise its entries are
selected again and, only if they differ, it is re-rendered, with its ETag computed from the bytes
and its Last-Modified from the ledger. A document that had to leave out an entry whose file is
being rewritten is served once and never cached, so a 200 that caches keep is always complete.

:func:`open_site` does the I/O (config, article files, state folder); :class:`Site` takes its
parts, so tests can build one from an in-memory index.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from . import assets, fields, opml, pages
from .archives import ARCHIVE_MAX_AGE, archive_pages, archive_slice
from .articles import Meta
from .bodies import Bodies
from .config import FeedSpec, SiteConfig, load_config
from .documents import HTML, Document, make_document
from .errors import ConfigError, NotFound, Problem, Severity, Unsettled
from .index import Index
from .indexdb import IndexDB
from .ledger import Ledger
from .links import DocLinks, archive_links, subscription_links
from .records import PARALLEL_FROM, dated, load, parse_file, stale_paths, stale_paths_aside
from .render import EPOCH, MEDIA_TYPES, Format, last_modified, render_feed, warm_up
from .selection import specs_for_topics

Clock = Callable[[], datetime]
FORMATS = tuple(Format)
PAGE_CACHE = 4096  # article and archive pages kept rendered (feeds and the index are always kept)
RECHECK_SECONDS = 1.0  # how often a cached document asks the ledger for its date
ELSEWHERE_SECONDS = 0.5  # how often a request asks whether another worker changed the index
log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class View:
    """What every document depends on besides its own entries; replaced on any change."""

    generation: int
    valid_until: datetime | None  # the next embargo: selections change then
    specs: dict[str, FeedSpec]
    newest: datetime


def _stale(source: FeedSpec | SiteConfig) -> tuple[int, int]:
    return source.stale_while_revalidate, source.stale_if_error


@dataclass
class _Cached:
    view: View
    inputs: Hashable
    doc: Document
    checked: float  # time.monotonic() of the last ledger look-up


def open_site(
    config_path: str | os.PathLike[str],
    clock: Clock = utc_now,
    state_dir: Path | None = None,
    *,
    verify: bool = True,
) -> Site:
    """Read the config, open the index and the state folder; ConfigError if unusable.

    An index left by an earlier run is trusted at first; ``verify`` compares every file with
    it before returning. Without it (a server whose watcher does that in the background, so a
    million articles start in seconds) ``Site.trusted`` says it is still to be done.
    """
    path = Path(config_path)
    config = load_config(path)
    ledger = Ledger(state_dir / "validators.sqlite" if state_dir else None)
    index, trusted = open_index(config, state_dir, ledger, clock)
    site = Site(config, index, ledger=ledger, clock=clock, config_path=path, state_dir=state_dir)
    site.trusted = trusted
    if verify and trusted:
        site.catch_up()
    # One-time costs of a process's first render and view, before it says it is ready.
    warm_up(config)
    site.view()
    return site


def open_index(
    config: SiteConfig, state_dir: Path | None, ledger: Ledger, clock: Clock
) -> tuple[Index, bool]:
    """The index of ``config``'s articles, and whether it was trusted rather than built now.

    Of workers starting together, one builds the index while the others wait for it.
    """
    db = IndexDB.open(_index_path(config, state_dir))
    with db.exclusive():
        trusted = db.ready(config)
        if not trusted:
            load(config, db, lambda ids: ledger.first_seen(ids, clock()))
    return Index(config, db), trusted


def _index_path(config: SiteConfig, state_dir: Path | None) -> Path | None:
    """One index per articles folder and what its metadata depends on (URL, zone, author)."""
    if state_dir is None:
        return None
    what = repr(
        (str(config.articles_dir), config.url, config.timezone, config.author, config.max_article_bytes)
    )
    return state_dir / f"index-{hashlib.sha256(what.encode()).hexdigest()[:12]}.sqlite"


class Site:
    """Config, article index and document cache of one process. Thread-safe."""

    def __init__(
        self,
        config: SiteConfig,
        index: Index,
        *,
        ledger: Ledger | None = None,
        clock: Clock = utc_now,
        config_path: Path | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self._config = config
        self._index = index
        self._ledger = ledger or Ledger(None)
        self._clock = clock
        self._config_path = config_path or config.path
        self._state_dir = state_dir
        self.trusted = False  # the index came from an earlier run and is not yet checked
        self._elsewhere_checked = 0.0
        self._bodies = Bodies(config)
        self._assets = assets.Assets()
        self._config_error: ConfigError | None = None
        self._generation = 1
        self._view: View | None = None
        self._docs: dict[tuple[str, str], _Cached] = {}
        self._pages: OrderedDict[tuple[str, str], None] = OrderedDict()  # LRU of page keys
        self._lock = threading.RLock()
        # Observers (metrics, tests): called after each render (kind, seconds) and each
        # reload (True: applied, False: a broken config refused).
        self.render_hooks: list[Callable[[str, float], None]] = []
        self.reload_hooks: list[Callable[[bool], None]] = []

    # -- what the site is -----------------------------------------------------------------------

    @property
    def config(self) -> SiteConfig:
        return self._config

    @property
    def config_path(self) -> Path:
        return self._config_path

    @property
    def state_dir(self) -> Path | None:
        return self._state_dir

    @property
    def ledger(self) -> Ledger:
        """What every worker process has promised (dates, announcements); shared by them all."""
        return self._ledger

    @property
    def config_error(self) -> ConfigError | None:
        """Why the config file on disk is not the one being served, if it is not."""
        return self._config_error

    @property
    def generation(self) -> int:
        """Moves whenever anything a document depends on changes (articles, config)."""
        return self._generation

    def now(self) -> datetime:
        return self._clock()

    def set_watched(self, watched: bool) -> None:
        """Whether a watcher re-reads files as their writers close them (bodies wait for it)."""
        self._bodies.watched = watched

    # -- what readers can see now -------------------------------------------------------------

    def view(self) -> View:
        if time.monotonic() - self._elsewhere_checked > ELSEWHERE_SECONDS:
            self._elsewhere_checked = time.monotonic()
            if self._index.changed_elsewhere():  # another worker sharing the index took a change in
                with self._lock:
                    self._generation += 1
        view, now = self._view, self._clock()
        if (
            view is None
            or view.generation != self._generation
            or (view.valid_until is not None and now >= view.valid_until)
        ):
            with self._lock, self._index.lock:
                topics = self._index.topics(now) if self._config.topic_feeds else {}
                view = self._view = View(
                    generation=self._generation,
                    valid_until=self._index.next_release(now),
                    specs={s.name: s for s in specs_for_topics(self._config, topics)},
                    newest=self._index.newest(now) or EPOCH,
                )
        return view

    @property
    def specs(self) -> dict[str, FeedSpec]:
        return self.view().specs

    def published(self) -> Iterator[Meta]:
        """Articles visible now, newest first (read in batches: there may be a million)."""
        return self._index.published(self._clock())

    def page_keys(self) -> Iterator[tuple[str, str, int, int, int]]:
        """(permalink, path, digest, published, updated) of every article page, without decoding."""
        return self._index.page_keys(self._clock())

    def all_articles(self) -> list[Meta]:
        """Every indexed article, drafts and embargoed ones included, by path."""
        return self._index.articles()

    def article_count(self) -> int:
        return self._index.count()

    def topics(self) -> dict[str, str]:
        """Topics with a visible article: slug -> display spelling."""
        with self._index.lock:
            return self._index.topics(self._clock())

    def problems(self) -> list[Problem]:
        found = self._unused_topic_names() + self._index.problems()
        if self._config_error is not None:
            found = list(self._config_error.problems) + found
        return found

    def _unused_topic_names(self) -> list[Problem]:
        """A ``topics:`` entry no article uses is most likely a misspelt slug."""
        config = self._config
        if not config.topic_names:
            return []
        used = self._index.topic_slugs()
        return [
            Problem(
                str(config.path),
                named.line or None,
                f"topics.{named.slug}: no article has this topic; its title is unused"
                + fields.did_you_mean(named.slug, used),
                Severity.WARNING,
            )
            for named in config.topic_names
            if named.slug not in used
        ]

    def known_paths(self, rel_dir: str) -> list[str]:
        """Article paths known under a folder (for a folder that was moved or deleted)."""
        return self._index.paths_under(rel_dir)

    def feed_entries(self, spec: FeedSpec) -> list[Meta]:
        with self._index.lock:
            return self._index.select(spec, self._clock())

    # -- documents ----------------------------------------------------------------------------

    def _spec(self, view: View, name: str, fmt: str | None = None) -> FeedSpec:
        spec = view.specs.get(name)
        if spec is None or (fmt is not None and fmt not in FORMATS):
            raise NotFound(f"no feed {name}" + (f".{fmt}" if fmt else ""))
        return spec

    def archived(self, spec: FeedSpec) -> int:
        """How many archive pages the feed has now."""
        with self._index.lock:
            return archive_pages(self._index.total(spec, self._clock()), spec.limit)

    def feed(self, name: str, fmt: str) -> Document:
        """The subscription document ``/feeds/<name>.<fmt>``."""
        view = self.view()
        spec = self._spec(view, name, fmt)
        form = Format(fmt)

        def inputs() -> tuple[Hashable, Callable[[], Document]]:
            with self._index.lock:
                entries = self.feed_entries(spec)
                links = subscription_links(self._config, name, form, self.archived(spec))
            natural = last_modified(entries, view.newest)
            key = (
                self._config,
                spec,
                form,
                natural,
                links,
                tuple((m.id, m.path, m.version) for m in entries),
            )
            return key, lambda: self._render_feed(spec, form, entries, natural, links, spec.max_age)

        return self._document(("feed", f"{name}.{fmt}"), view, inputs)

    def archive(self, name: str, page: int, fmt: str) -> Document:
        """Archive page ``page`` of a feed (1: the oldest); NotFound past the newest."""
        view = self.view()
        spec = self._spec(view, name, fmt)
        form = Format(fmt)

        def inputs() -> tuple[Hashable, Callable[[], Document]]:
            with self._index.lock:
                total = self._index.total(spec, self._clock())
                pages = archive_pages(total, spec.limit)
                if not 1 <= page <= pages:
                    raise NotFound(f"no archive page {page} of feed {name}")
                part = archive_slice(total, spec.limit, page)
                entries = self._index.window(spec, self._clock(), part.start, part.stop)
            links = archive_links(self._config, name, form, page, pages)
            natural = last_modified(entries)
            max_age = ARCHIVE_MAX_AGE if page < pages else spec.max_age
            key = (self._config, spec, form, links, tuple((m.id, m.path, m.version) for m in entries))
            return key, lambda: self._render_feed(spec, form, entries, natural, links, max_age)

        return self._document(("archive", f"{name}/{page}.{fmt}"), view, inputs)

    def archive_versions(self, name: str) -> list[tuple[Hashable, ...]]:
        """For each archive page of the feed (1 first), what its bytes depend on, without rendering.

        Equal tuples mean equal documents; a purge needs to know which of thousands of pages
        changed, and rendering them all to find out would cost more than the purge.
        """
        view = self.view()
        spec = self._spec(view, name)
        with self._index.lock:
            history = self._index.versions(spec, self._clock())
        pages = archive_pages(len(history), spec.limit)
        return [
            (page < pages, tuple(history[archive_slice(len(history), spec.limit, page)]))
            for page in range(1, pages + 1)
        ]

    def feed_page(self, name: str) -> Document:
        """The feed's page for people, ``/feeds/<name>``: its newest entries and how to subscribe."""
        view = self.view()
        spec = self._spec(view, name)

        def inputs() -> tuple[Hashable, Callable[[], Document]]:
            with self._index.lock:
                entries = self.feed_entries(spec)
                archived = self.archived(spec)
            natural = last_modified(entries, view.newest)
            key = (self._config, spec, archived, tuple((m.id, m.path, m.version) for m in entries))
            return key, lambda: make_document(
                pages.render_feed_page(self._config, spec, entries, archived),
                HTML,
                natural,
                spec.max_age,
                stale=_stale(spec),
            )

        return self._document(("feedpage", name), view, inputs)

    def opml(self) -> Document:
        """``/feeds.opml``: every feed, for a reader to import at once."""
        view = self.view()

        def inputs() -> tuple[Hashable, Callable[[], Document]]:
            specs = tuple(view.specs.values())
            return (self._config, specs, view.newest), lambda: make_document(
                opml.render_opml(self._config, specs, view.newest),
                opml.OPML_MEDIA_TYPE,
                view.newest,
                self._config.max_age,
                stale=_stale(self._config),
            )

        return self._document(("opml", ""), view, inputs)

    def page(self, article_id: str) -> Document:
        """An article's page; :class:`Unsettled` while its file is being rewritten."""
        view = self.view()
        with self._index.lock:
            meta = self._index.article(article_id, self._clock())
        if meta is None:
            raise NotFound(f"no article {article_id}")
        feeds = [s for s in view.specs.values() if s.is_topic_feed and s.topics[0] in meta.topic_slugs]

        def inputs() -> tuple[Hashable, Callable[[], Document]]:
            key = (self._config, meta.id, meta.path, meta.version, tuple(s.name for s in feeds))
            return key, lambda: self._render_page(meta, feeds)

        return self._document(("page", article_id), view, inputs)

    def index_page(self) -> Document:
        view = self.view()

        def inputs() -> tuple[Hashable, Callable[[], Document]]:
            with self._index.lock:
                shown: list[Meta] = []
                for meta in self._index.published(self._clock()):
                    if len(shown) >= self._config.limit:
                        break
                    shown.append(meta)
            key = (
                self._config,
                tuple(view.specs.values()),
                view.newest,
                tuple((m.id, m.path, m.version) for m in shown),
            )
            return key, lambda: make_document(
                pages.render_index(self._config, list(view.specs.values()), shown),
                HTML,
                view.newest,
                self._config.max_age,
                stale=_stale(self._config),
            )

        return self._document(("index", ""), view, inputs)

    def asset(self, rel: str) -> Document:
        """A file of ``static/`` beside the config (the site's icon, logo, styles)."""
        return self._assets.get(self._config, rel)

    def asset_paths(self) -> list[str]:
        return list(assets.listed(self._config))

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
                started = time.perf_counter()
                doc = render()
                for hook in self.render_hooks:
                    hook(key[0], time.perf_counter() - started)
                if not doc.complete:  # an entry left out while its file settles: keep nothing
                    return doc
            else:
                doc = cached.doc
            # Unchanged bytes are still a new version if the document changed in between.
            cached = _Cached(view, fingerprint, self._dated(key, doc), time.monotonic())
            self._docs[key] = cached
            if key[0] in ("page", "archive"):
                self._pages[key] = None
                self._pages.move_to_end(key)
                if len(self._pages) > PAGE_CACHE:
                    self._docs.pop(self._pages.popitem(last=False)[0], None)
            return cached.doc

    def _dated(self, key: tuple[str, str], doc: Document) -> Document:
        """``doc`` with the Last-Modified the ledger gives its ETag (never backwards)."""
        modified = self._ledger.stamp(":".join(key), doc.etag, doc.natural, self._clock())
        return doc if modified == doc.last_modified else replace(doc, last_modified=modified)

    def _recheck(self, key: tuple[str, str], cached: _Cached) -> None:
        """Adopt a date another worker gave the same bytes (workers converge within a second)."""
        cached.checked = time.monotonic()
        modified = self._ledger.lookup(":".join(key), cached.doc.etag)
        if modified is not None and modified != cached.doc.last_modified:
            cached.doc = replace(cached.doc, last_modified=modified)

    def _render_feed(
        self,
        spec: FeedSpec,
        fmt: Format,
        entries: list[Meta],
        natural: datetime,
        links: DocLinks,
        max_age: int,
    ) -> Document:
        articles = [self._bodies.article(m) for m in entries]
        shown = [a for a in articles if a is not None]
        fitted = render_feed(fmt, spec, self._config, shown, links, natural)
        if fitted.note:
            log.info("%s: %s", links.self_url, fitted.note)
        return make_document(
            fitted.body,
            MEDIA_TYPES[fmt],
            natural,
            max_age,
            complete=len(shown) == len(entries),
            note=fitted.note,
            links=tuple(("hub", hub) for hub in links.hubs)
            + ((("self", links.self_url),) if links.hubs else ()),
            stale=_stale(spec),
        )

    def _render_page(self, meta: Meta, feeds: list[FeedSpec]) -> Document:
        article = self._bodies.article(meta)
        if article is None:
            raise Unsettled(f"article {meta.id} is being written; try again in a moment")
        body = pages.render_article(self._config, article, feeds)
        return make_document(body, HTML, meta.updated, self._config.max_age, stale=_stale(self._config))

    # -- change -------------------------------------------------------------------------------

    def apply(self, paths: Iterable[str] = (), config_changed: bool = False) -> bool:
        """Take in changed article paths (relative) and/or a changed config; True if reloaded."""
        changed = self.reload_config() if config_changed else False
        paths = list(paths)
        if paths:
            started = time.perf_counter()
            if self._read(paths):
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

    def stale_paths(self) -> list[str]:
        """Article paths whose file changed, appeared or went since the index read them."""
        path = self._index.db.path
        if path is None or self._index.count() < PARALLEL_FROM:
            return stale_paths(self._config, self._index.stamps())
        return sorted(set(stale_paths_aside(self._config, path)) | self._index.unreadable())

    def catch_up(self) -> None:
        """Read every file that is not the version indexed (after a start that trusted the index)."""
        stale = self.stale_paths()
        if stale:
            log.info("%d article file(s) changed since the index was written", len(stale))
            self.apply(stale)
        self.trusted = False

    def checking(self) -> AbstractContextManager[bool]:
        """True for one worker at a time: the others see what it finds through the shared index."""
        return self._index.db.first_to("check")

    def _read(self, paths: list[str]) -> bool:
        """Parse first, then update the index: requests never wait on a parse."""
        config = self._config
        reads = {rel: parse_file(config, rel) for rel in paths}
        records = {rel: record for rel, (record, _) in reads.items() if record is not None}
        final = dated(records, lambda ids: self._ledger.first_seen(ids, self._clock()))
        changed = False
        with self._index.lock:  # a batch (a folder moved) is seen whole or not at all
            for rel, (_, body) in reads.items():
                record = final.get(rel)
                changed |= self._index.apply(rel, record)
                if record is not None and record.meta is not None and body:
                    self._bodies.offer(record.meta, body)
        # Another worker sharing the index may have written these very rows first.
        changed |= self._index.changed_elsewhere()
        if changed:
            with self._lock:
                self._generation += 1  # readers see the change now; the cache can follow
        return changed

    def reload_config(self) -> bool:
        """Use a changed config if it is valid; otherwise keep the last good one and say why."""
        try:
            config = load_config(self._config_path)
        except ConfigError as exc:
            self._config_error = exc
            for problem in exc.problems:
                log.error("config error, still serving the last good config: %s", problem)
            for hook in self.reload_hooks:
                hook(False)
            return False
        self._config_error = None
        if config == self._config:
            return False
        old = self._config
        reindex = (
            config.articles_dir,
            config.url,
            config.timezone,
            config.author,
            config.max_article_bytes,
        ) != (
            old.articles_dir,
            old.url,
            old.timezone,
            old.author,
            old.max_article_bytes,
        )
        trusted = False
        if reindex:
            index, trusted = open_index(config, self._state_dir, self._ledger, self._clock)
        else:
            index = self._index
        index.config = config
        with self._lock:
            self._config, self._index = config, index
            self._bodies.configure(config)
            self._generation += 1
        if trusted:  # made by another worker (or an earlier run) for this config
            self.catch_up()
        log.info("config reloaded from %s%s", self._config_path, " (articles re-read)" if reindex else "")
        return True

    def health(self) -> dict[str, object]:
        status: dict[str, object] = {"status": "ok"}
        if self._config_error is not None:
            status = {
                "status": "degraded",
                "reason": "config.yaml is broken; serving the last good config",
                "errors": [str(p) for p in self._config_error.problems],
            }
        view = self.view()
        status.update(articles=self.article_count(), feeds=len(view.specs), problems=len(self.problems()))
        return status

    def close(self) -> None:
        self._ledger.close()
