"""What a change touched: the few documents to look at after it, found from the change itself.

A purge must name exactly the documents whose bytes changed. Looking at every document finds
them, but at a million articles that costs seconds of CPU per change. The index journals, in the
transaction of each change, the rows the change replaced (``journal`` in :mod:`feeds.store.schema`);
with the rows as they are now, they tell which article pages, which feeds (and which of their
archive pages) and which sitemap pages can have changed. Entries that came out or went with no
file changing (an embargo ending, a ``delay`` or a ``window`` passing) are found by their
publication time. Those candidates are then looked at like every document (by their key, which
moves only when their bytes do): a candidate too many costs a key, never a wrong purge.

What the journal cannot tell makes the caller look at every document (:func:`plan` returns
None): the first look, another index (a rebuild, or the copy in memory while the state folder
takes no writes), another config, feeds appearing or going, a display name that changed (it
shows on every page of its topic or tag), a journal pruned past the last look, and more than
``LOOK_MAX`` changed or released entries at once (a burst: one walk is then cheaper).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import inventory, sitemaps
from .archives import archive_pages, archive_slice
from .catalogue import (
    ARCHIVE,
    FORMATS,
    SITEMAP_PAGE,
    sitemap_size,
)
from .config import FeedSpec
from .inventory import Entry, Spelled
from .selection import matches_slugs
from .site import Site
from .store import TAG, TOPIC, IndexStore, Reader, Trace
from .store.queries import simple

LOOK_MAX = 2_000  # changed or released entries looked at one by one; more, and every document


@dataclass(frozen=True)
class Mark:
    """Where a look left off: the index and its journal, the config, the feeds, the time, the
    display names, and each feed's archive size then."""

    store: IndexStore
    journal: str | None
    seq: int
    setting: str
    feeds: frozenset[str]
    now: datetime
    names: Spelled
    totals: Mapping[str, int] = field(default_factory=dict)
    sitemap: int = 0  # articles the sitemap listed


@dataclass(frozen=True)
class Plan:
    """The documents to look at, the URLs that can only have gone, and the next mark."""

    documents: list[Entry]
    gone: list[str]
    mark: Mark
    journal: tuple[str, int] | None  # (journal id, last change) to claim, if changes were read


def mark(site: Site) -> Mark:
    """A mark for a look at every document, taken before it: changes made while it runs are
    journaled after ``seq`` and looked at next time (twice at worst, never missed)."""
    view = site.view()
    with site.read() as (reader, now):
        names = reader.all_spellings(TOPIC), reader.all_spellings(TAG)
        totals = {name: reader.total(spec, now) for name, spec in view.specs.items() if not spec.span}
        articles = sitemap_size(view, reader, now, site.sitemap_urls)[0]
        return Mark(
            view.store,
            reader.journal_id(),
            reader.journal_last(),
            inventory.digest(view.config),
            frozenset(view.specs),
            now,
            names,
            totals,
            articles,
        )


def plan(site: Site, last: Mark, known: Callable[[str], bool]) -> Plan | None:
    """What to look at since ``last``; None: look at every document. ``known``: whether a URL
    was a document at the last look (pages past a feed's new end are gone, not changed)."""
    view = site.view()
    if view.store is not last.store or inventory.digest(view.config) != last.setting:
        return None
    if frozenset(view.specs) != last.feeds:
        return None
    with site.read() as (reader, now):
        if reader.journal_id() != last.journal:
            return None
        befores, seq, whole = reader.journal(last.seq, LOOK_MAX)
        if not whole:
            return None
        released = _released(reader, view.specs.values(), last.now, now)
        expired = _released(
            reader, (), last.now - sitemaps.NEWS_WINDOW, now - sitemaps.NEWS_WINDOW
        )  # the news sitemap only
        if released is None or expired is None:
            return None
        afters = reader.traces({t.path for t in befores})
        touched = [*befores, *afters, *released]
        if len(touched) > 3 * LOOK_MAX:
            return None
        names = _names(reader, touched, last.names)
        if names is None:
            return None
        moved = _moved(befores, afters) or bool(released)
        setting = last.setting
        documents: list[Entry] = []
        gone: list[str] = []
        if touched:
            pages, lost = _article_pages(reader, now, touched, setting, names)
            documents += pages
            gone += lost
        totals = dict(last.totals)
        for name, spec in view.specs.items():
            shown = [t for t in touched if t.entry and matches_slugs(spec, set(t.slugs[0]), set(t.slugs[1]))]
            if not shown:
                continue
            documents += inventory.feed_documents(site, reader, now, name, spec, setting, names)
            if spec.span:
                continue
            total = totals[name] = reader.total(spec, now)
            found, lost = _archive_pages(
                site,
                reader,
                now,
                name,
                spec,
                (last.totals.get(name), total),
                shown,
                moved,
                names,
                known,
            )
            documents += found
            gone += lost
        articles = last.sitemap
        listing = moved or _relisted(befores, afters)  # else no sitemap lists anything else
        if touched or expired:
            documents += inventory.site_documents(site, reader, now, setting, names, listing)
        if listing:
            found, lost, articles = _sitemap_pages(
                site, reader, now, touched, moved, last.sitemap, setting, known
            )
            documents += found
            gone += lost
        documents += inventory.pictures_of(site, {t.image for t in touched if t.image})
    journal = (last.journal, seq) if last.journal is not None and seq != last.seq else None
    marked = Mark(view.store, last.journal, seq, setting, last.feeds, now, names, totals, articles)
    return Plan(_unique(documents), sorted(set(gone)), marked, journal)


def _released(
    reader: Reader, specs: Iterable[FeedSpec], since: datetime, now: datetime
) -> list[Trace] | None:
    """Entries that came out or went between two looks with no file changing: published then,
    or that long before for a feed with a ``delay`` or a ``window``."""
    if now <= since:
        return []
    offsets = {timedelta(0)} | {s.behind for s in specs} | {s.span for s in specs if s.span}
    found: list[Trace] = []
    for offset in sorted(offsets):
        part = reader.released(since - offset, now - offset, LOOK_MAX)
        if part is None:
            return None
        found += part
    return found


def _names(reader: Reader, touched: list[Trace], known: Spelled) -> Spelled | None:
    """The display names with those of the touched slugs brought up to date; None if one that
    other entries show changed."""
    topics, tags = dict(known[0]), dict(known[1])
    for kind, names, slugs in (
        (TOPIC, topics, {s for t in touched for s in t.slugs[0]}),
        (TAG, tags, {s for t in touched for s in t.slugs[1]}),
    ):
        for slug, name in reader.spellings(kind, slugs).items():
            if names.get(slug, name) != name:
                return None
            names[slug] = name
    return topics, tags


def _moved(befores: list[Trace], afters: list[Trace]) -> bool:
    """Whether an entry came, went or changed its place in feed order (pages after it shift)."""
    now = {t.path: t for t in afters}
    for before in befores:
        after = now.get(before.path)
        if after is None:
            if before.entry:
                return True
            continue
        if (before.entry, before.published, before.id, before.slugs) != (
            after.entry,
            after.published,
            after.id,
            after.slugs,
        ):
            return True
    return False


def _relisted(befores: list[Trace], afters: list[Trace]) -> bool:
    """Whether an entry's URL, ``lastmod`` or home changed: what a sitemap lists of it."""
    now = {t.path: t for t in afters}
    listed = [(b, now.get(b.path)) for b in befores]
    return any(
        a is None or (b.permalink, b.url, b.updated) != (a.permalink, a.url, a.updated) for b, a in listed
    )


def _article_pages(
    reader: Reader, now: datetime, touched: list[Trace], setting: str, names: Spelled
) -> tuple[list[Entry], list[str]]:
    keys = reader.page_keys_of({t.id for t in touched if t.id is not None}, now)
    found = [inventory.article_page(key, setting, names) for _, key in keys]
    live = {entry.url for entry in found}
    lost = [t.permalink for t in touched if t.entry and t.permalink and t.permalink not in live]
    return found, lost


def _archive_pages(
    site: Site,
    reader: Reader,
    now: datetime,
    name: str,
    spec: FeedSpec,
    totals: tuple[int | None, int],
    shown: list[Trace],
    moved: bool,
    names: Spelled,
    known: Callable[[str], bool],
) -> tuple[list[Entry], list[str]]:
    """The archive pages of one feed that can hold a touched entry, keyed like a full look's.

    Pages count from the oldest entry and end where the subscription document begins: an entry
    that comes, goes or moves shifts every page after its place, and a new total moves the
    entries between the newest page and the subscription document."""
    before, total = totals
    count = archive_pages(total, spec.limit)
    if before is None:
        wanted: Iterable[int] = range(1, count + 1)
    elif simple(spec):
        slug = spec.topics[0] if spec.topics else None
        at = now - spec.behind
        places = [
            reader.older(slug, t.published, t.id, at, total)
            for t in shown
            if t.published is not None and t.id is not None
        ]
        if moved or before != total:
            first = max(min(places, default=total) - len(shown), 0) // spec.limit + 1
            boundary = max(min(before, total) - spec.limit, 0) // spec.limit + 1
            last = archive_pages(before, spec.limit)  # the last pages gain or lose a next-archive link
            wanted = range(min(first, boundary, min(last, count) if last != count else count), count + 1)
        else:
            wanted = sorted({place // spec.limit + 1 for place in places})
    else:
        wanted = range(1, count + 1)
    config = site.config
    setting = inventory.digest(config)
    found: list[Entry] = []
    for page in wanted:
        if not 1 <= page <= count:
            continue
        part = archive_slice(total, spec.limit, page)
        versions = reader.versions_window(spec, now, part.start, part.stop, total)
        version = (page < count, tuple(inventory.version(v, names, spec) for v in versions))
        found += inventory.archive_entries(config, name, page, version, setting)
    lost = []
    page = count + 1
    while urls := [
        u for fmt in FORMATS if known(u := ARCHIVE.place.url(config, name=name, page=page, fmt=fmt))
    ]:
        lost += urls
        page += 1
    return found, lost


def _sitemap_pages(
    site: Site,
    reader: Reader,
    now: datetime,
    touched: list[Trace],
    moved: bool,
    before: int,
    setting: str,
    known: Callable[[str], bool],
) -> tuple[list[Entry], list[str], int]:
    """The pages of a large sitemap that can hold a touched article, and the last ones, which
    also list the site's pages (the index's ``lastmod`` is the newest change)."""
    per_page = site.sitemap_urls
    articles, _, count = sitemap_size(site.view(), reader, now, per_page)
    config = site.config
    found: list[Entry] = []
    if count:
        places = [
            reader.older(None, t.published, t.id, now, articles)
            for t in touched
            if t.entry and t.published is not None and t.id is not None
        ]
        full = articles // per_page
        if not sitemaps.page_count(before + 1 + len(site.specs), per_page):  # it was one file
            wanted: Iterable[int] = range(1, count + 1)
        elif moved or articles != before:
            first = max(min(places, default=0) - len(touched), 0) // per_page + 1
            wanted = range(first, count + 1)
        else:
            wanted = sorted({p // per_page + 1 for p in places} | set(range(full + 1, count + 1)))
        for page in wanted:
            if not 1 <= page <= count:
                continue
            found.append(inventory.sitemap_page(site, reader, now, articles, page, setting))
    lost = []
    page = count + 1
    while known(url := SITEMAP_PAGE.place.url(config, page=page)):
        lost.append(url)
        page += 1
    return found, lost, articles


def _unique(entries: list[Entry]) -> list[Entry]:
    """Each URL once (an entry touched twice, a page holding two touched entries)."""
    return list({e.url: e for e in entries}.values())
