"""The site of one process: a thin front over the writer, the index and the document cache.

Requests come here for documents (:meth:`Site.document`): the view of the published snapshot
(specs, newest date, next embargo) says what exists, one read transaction of the index gives
a document's inputs, and :class:`~feeds.cache.Documents` renders it only if they changed.
Changes never happen here: :class:`~feeds.live.Live` makes them and publishes snapshots.

:func:`open_site` does the I/O (config, state folder, the check of the files); :class:`Site`
takes its parts, so tests can build one from an index made in memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from . import assets, catalogue, health, sitemaps
from .archives import archive_pages
from .articles import Meta
from .bodies import Bodies
from .cache import Documents
from .catalogue import FORMATS, Kind, Making, View
from .config import FeedSpec, SiteConfig, load_config
from .documents import Document
from .errors import ConfigError, NotFound, Problem
from .live import Clock, Live, Snapshot, open_store, stand_in
from .render import EPOCH, warm_up
from .selection import next_change, specs_for_topics
from .sightings import Sightings
from .store import AudienceStore, IndexStore, Ledger, PageKey, PageRow, Reader

__all__ = ["FORMATS", "Site", "open_site"]
CHECK_FIRST = 10_000  # articles an index may hold to be checked before serving (about 0.3 s)
AUDIENCE = "audience.sqlite"  # subscriber counts, in the state folder


def utc_now() -> datetime:
    return datetime.now(UTC)


def open_site(
    config_path: str | os.PathLike[str],
    clock: Clock = utc_now,
    state_dir: Path | None = None,
    *,
    verify: bool = True,
    sitemap_urls: int = sitemaps.PAGE_URLS,
) -> Site:
    """Read the config, open the state folder and the index; ConfigError if unusable.

    An index left by an earlier run is trusted only once every file was compared with it: here,
    before returning, when ``verify`` or the archive is small; otherwise the writer thread does
    it (a million files take seconds) and documents are answered uncacheably until it is done.
    """
    path = Path(config_path)
    config = load_config(path)
    ledger = Ledger(state_dir / "validators.sqlite" if state_dir else None)
    standing = stand_in(config, state_dir) if state_dir is not None and not verify else None
    if standing is not None:  # an upgrade: an earlier version's index serves while ours is built
        (store, upgrade), trusted, reason = standing, True, None
    else:
        (store, trusted, reason), upgrade = open_store(config, state_dir, ledger, clock), None
    site = Site(config, store, ledger=ledger, clock=clock, config_path=path, state_dir=state_dir,
                verified=not trusted, store_reason=reason, sitemap_urls=sitemap_urls,
                audience=AudienceStore(state_dir / AUDIENCE if state_dir else None),
                upgrade=upgrade)  # fmt: skip
    if trusted and upgrade is None and (verify or site.article_count() <= CHECK_FIRST):
        site.live.check(aside=False)  # nothing is served yet: no request waits for the interpreter
    warm_up(config)  # one-time costs of a first render, before a server says it is ready
    site.view()
    return site


class Site:
    """One process's front to the site. Thread-safe."""

    def __init__(
        self,
        config: SiteConfig,
        store: IndexStore,
        *,
        ledger: Ledger | None = None,
        clock: Clock = utc_now,
        config_path: Path | None = None,
        state_dir: Path | None = None,
        verified: bool = True,
        store_reason: str | None = None,
        sitemap_urls: int = sitemaps.PAGE_URLS,
        audience: AudienceStore | None = None,
        upgrade: Path | None = None,
    ) -> None:
        self.sitemap_urls = sitemap_urls  # URLs per sitemap page: the protocol's limit, lower in tests
        self.ledger = ledger or Ledger(None)
        # Who reads each feed: noted by requests, counted by a thread of its own (feeds.sightings).
        self.audience = Sightings(audience or AudienceStore(None), clock)
        self.state_dir = state_dir
        self._clock = clock
        self._bodies = Bodies(config, missing=lambda rel: self.live.snapshot.store.suspect(rel))
        self._files = {
            catalogue.STATIC.place.kind: assets.Assets(assets.STATIC),
            catalogue.MEDIA.place.kind: assets.Assets(assets.MEDIA),
        }
        first = Snapshot(config, store, generation=1, verified=verified, upgrading=upgrade is not None)
        self.live = Live(config_path or config.path, first, self.ledger, clock=clock, state_dir=state_dir,
                         offer=self._bodies.offer, store_reason=store_reason, upgrade=upgrade)  # fmt: skip
        self.live.published.append(self._prepare)
        self._documents = Documents(
            self.ledger, clock, frozenset(k.place.kind for k in catalogue.KINDS if k.recent)
        )
        self._view: View | None = None
        self._view_lock = threading.Lock()  # requests only: one computes a new view, others wait
        self._prepare(self.live.snapshot)

    def _prepare(self, snapshot: Snapshot) -> None:
        """On the writer's thread, before a snapshot is published: its view, so requests find it
        ready (computed without a lock that requests take)."""
        self._bodies.configure(snapshot.config)
        view = self._view
        if view is None or not _holds(view, snapshot, self._clock()):
            self._view = _view_of(snapshot, self._clock())

    # -- what the site is -----------------------------------------------------------------------

    @property
    def config(self) -> SiteConfig:
        return self.live.snapshot.config

    @property
    def config_path(self) -> Path:
        return self.live.config_path

    @property
    def config_error(self) -> ConfigError | None:
        """Why the config file on disk is not the one being served, if it is not."""
        return self.live.snapshot.config_error

    @property
    def reload_hooks(self) -> list[Callable[[bool], None]]:
        """Called by the writer after each reload (True: applied, False: a broken config refused)."""
        return self.live.hooks

    @property
    def render_hooks(self) -> list[Callable[[str, float], None]]:
        return self._documents.hooks

    def now(self) -> datetime:
        return self._clock()

    def set_watched(self, watched: bool) -> None:
        """Whether a watcher re-reads files as their writers close them (bodies wait for it)."""
        self._bodies.watched = watched

    def apply(self, paths: Iterable[str] = (), config_changed: bool = False) -> bool:
        """Take in changed files and/or config now, on this thread (tools, tests)."""
        return self.live.apply(paths, config_changed)

    def view(self) -> View:
        """Feeds and dates of the published snapshot, valid until the next embargo ends (or the
        news sitemap's oldest article turns 48 hours old)."""
        snapshot, view, now = self.live.snapshot, self._view, self._clock()
        if view is not None and _holds(view, snapshot, now):
            return view
        with self._view_lock:  # requests only: one computes (an embargo ended), the others wait
            view = self._view
            if view is None or not _holds(view, snapshot, now):
                view = self._view = _view_of(snapshot, now)
        return view

    @property
    def specs(self) -> dict[str, FeedSpec]:
        return dict(self.view().specs)

    # -- documents ----------------------------------------------------------------------------

    def document(self, kind: Kind, params: dict[str, str], keep: bool = True) -> Document:
        """The document of ``kind`` with ``params``; NotFound, or Unsettled while it is written.

        ``keep=False``: asked once (a static export walks every document), so not kept rendered.
        """
        make = kind.make
        if make is None:  # a file served as it is
            return self._files[kind.place.kind].get(self.config, params["rel"])
        if kind.override is not None:  # looked for on every request, as files of static/ are
            try:
                return self._files[catalogue.STATIC.place.kind].get(self.config, kind.override)
            except NotFound:
                pass
        view = self.view()

        def inputs() -> catalogue.Made:
            with view.store.read() as reader:
                return make(Making(view, reader, self._bodies, self._clock(), self.sitemap_urls), params)

        return self._documents.get((kind.place.kind, kind.key(params)), view, inputs, keep)

    def feed(self, name: str, fmt: str) -> Document:
        return self.document(catalogue.FEED, {"name": name, "fmt": fmt})

    def archive(self, name: str, page: int, fmt: str) -> Document:
        return self.document(catalogue.ARCHIVE, {"name": name, "page": str(page), "fmt": fmt})

    def feed_page(self, name: str) -> Document:
        return self.document(catalogue.FEED_PAGE, {"name": name})

    def page(self, article_id: str) -> Document:
        return self.document(catalogue.ARTICLE, {"id": article_id})

    def index_page(self) -> Document:
        return self.document(catalogue.INDEX, {})

    def opml(self) -> Document:
        return self.document(catalogue.OPML, {})

    def asset(self, rel: str) -> Document:
        return self.document(catalogue.STATIC, {"rel": rel})

    def sitemap_pages(self) -> int:
        """How many pages ``/sitemap.xml`` names (0: it lists every URL itself)."""
        view = self.view()
        with self.read() as (reader, now):
            return catalogue.sitemap_size(view, reader, now, self.sitemap_urls)[2]

    def asset_paths(self) -> list[str]:
        return list(assets.listed(self.config))

    def picture(self, rel: str) -> Document:
        """A picture beside the articles (``rel``: its path under the articles folder)."""
        return self.document(catalogue.MEDIA, {"rel": rel})

    def picture_paths(self) -> list[str]:
        """Every picture under the articles folder that would be served (a static export copies them)."""
        return list(assets.listed(self.config, assets.MEDIA))

    # -- questions about the articles --------------------------------------------------------------

    def _store(self) -> IndexStore:
        return self.live.snapshot.store

    @contextmanager
    def read(self) -> Iterator[tuple[Reader, datetime]]:
        """One read transaction of the index as published now, and the time it is read at."""
        with self._store().read() as reader:
            yield reader, self._clock()

    def feed_entries(self, spec: FeedSpec) -> list[Meta]:
        with self.read() as (reader, now):
            return reader.select(spec, now)

    def archived(self, spec: FeedSpec) -> int:
        """How many archive pages the feed has now."""
        with self.read() as (reader, now):
            return archive_pages(reader.total(spec, now), spec.limit)

    def published(self) -> Iterator[Meta]:
        """Articles visible now, newest first (read in batches: there may be a million)."""
        now = self._clock()
        return self._store().batches(lambda r, after: r.published(now, after, 512))

    def page_keys(self) -> Iterator[PageKey]:
        """What every article page's bytes depend on (see :meth:`Reader.page_keys`), undecoded."""
        now = self._clock()
        return self._store().batches(lambda r, after: r.page_keys(now, after, 10_000))

    def page_rows(self) -> Iterator[PageRow]:
        """Every visible article's id, permalink and page key (see :meth:`Reader.page_rows`)."""
        now = self._clock()
        return self._store().batches(lambda r, after: r.page_rows(now, after, 10_000))

    def all_articles(self) -> list[Meta]:
        """Every indexed article, drafts and embargoed ones included, by path."""
        with self.read() as (reader, _):
            return reader.articles()

    def article_count(self) -> int:
        return self.live.snapshot.articles

    def topics(self) -> dict[str, str]:
        """Topics with a visible article: slug -> display spelling."""
        with self.read() as (reader, now):
            return reader.topics(now)

    def problems(self) -> list[Problem]:
        with self._store().read() as reader:
            used = reader.topic_slugs() if self.config.topic_names else frozenset()
        return health.problems(self.live.snapshot, used)

    def health(self) -> dict[str, object]:
        return health.report(self.live.snapshot, len(self.view().specs), self.ledger.problem)

    def close(self) -> None:
        self.live.stop()
        self.live.snapshot.store.close()
        self.ledger.close()
        self.audience.close()


def _holds(view: View, snapshot: Snapshot, now: datetime) -> bool:
    """The view was made for this state of the site (a publication that only changed the health
    keeps it) and no embargo has ended since."""
    source = view.source
    assert isinstance(source, Snapshot)
    return (
        source.generation == snapshot.generation
        and view.store is snapshot.store
        and view.config is snapshot.config
        and (view.valid_until is None or now < view.valid_until)
    )


def _view_of(snapshot: Snapshot, now: datetime) -> View:
    config = snapshot.config
    with snapshot.store.read() as reader:
        topics = reader.topics(now) if config.topic_feeds else {}
        specs = specs_for_topics(config, topics)
        # The next moment what is visible changes with no file changing: an embargo ends, an
        # entry comes out of a delay or leaves a window, or the news sitemap's oldest article
        # turns 48 hours old.
        oldest = reader.oldest_recent(now, now - sitemaps.NEWS_WINDOW, sitemaps.NEWS_MAX)
        edges = [t for t in (next_change(now, specs, reader.next_release), sitemaps.news_edge(oldest)) if t]
        return View(
            source=snapshot,
            store=snapshot.store,
            config=config,
            valid_until=min(edges, default=None),
            specs={s.name: s for s in specs},
            newest=reader.newest(now) or EPOCH,
        )
