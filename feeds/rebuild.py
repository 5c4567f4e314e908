"""What changed since an export was built, from the index's journal instead of a walk.

A static export of a million articles is a million pages, and after one edit a handful of them
differ. The purge of a cache in front of the server already knows how to find that handful
from the change itself (:mod:`feeds.changes`: the journal of the rows each change replaced).
An export remembers where it stood, as a :class:`~feeds.changes.Mark` written into its manifest
(:func:`mark_data`); the next build reads it back (:func:`read_mark`) and asks the same
question, :func:`since`, which answers with the few documents to render again and the pages
that are gone, or with None when only a look at every document tells (another index, config,
code or display name, a journal pruned past the mark, a burst of changes).

The mark is read from a file on disk, so it is checked as any input: a mark that is not exactly
what :func:`mark_data` writes is no mark, and the build looks at every document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote, urlsplit

from . import catalogue, changes
from .catalogue import Kind
from .site import Site

# Kinds the export renders (or copies) on every build anyway: a change never needs to name them.
ALWAYS = frozenset(
    {
        catalogue.INDEX,
        catalogue.OPML,
        catalogue.ROBOTS,
        catalogue.SITEMAP,
        catalogue.NEWS_SITEMAP,
        catalogue.STATIC,
        catalogue.MEDIA,
    }
)


@dataclass(frozen=True)
class Changed:
    """Documents to render again (kind, parameters, export path) and export paths now gone."""

    documents: list[tuple[Kind, dict[str, str], str]]
    gone: list[str]
    mark: changes.Mark


def mark_data(mark: changes.Mark, code: str) -> dict[str, object]:
    """What a manifest keeps of a mark: plain JSON. ``code``: what renders (a new version of
    feeds may render every document differently; its marks never match)."""
    return {
        "journal": mark.journal,
        "seq": mark.seq,
        "setting": mark.setting,
        "code": code,
        "feeds": sorted(mark.feeds),
        "now": mark.now.isoformat(),
        "topics": dict(sorted(mark.names[0].items())),
        "tags": dict(sorted(mark.names[1].items())),
        "totals": dict(sorted(mark.totals.items())),
        "sitemap": mark.sitemap,
    }


_FIELDS = frozenset(
    {"journal", "seq", "setting", "code", "feeds", "now", "topics", "tags", "totals", "sitemap"}
)


def _strings(value: object) -> dict[str, str] | None:
    if not isinstance(value, dict) or not all(type(k) is str and type(v) is str for k, v in value.items()):
        return None
    return value


def _counts(value: object) -> dict[str, int] | None:
    if not isinstance(value, dict) or not all(type(k) is str and type(v) is int for k, v in value.items()):
        return None
    return value if all(v >= 0 for v in value.values()) else None


def _moment(value: object) -> datetime | None:
    try:
        when = datetime.fromisoformat(value) if type(value) is str else None
    except ValueError:
        return None
    return when if when is not None and when.tzinfo is not None else None


def read_mark(site: Site, data: Mapping[str, object] | None, code: str) -> changes.Mark | None:
    """The mark ``data`` describes, if it is exactly one :func:`mark_data` wrote with this
    ``code``; None otherwise. (Whether it is a mark of this index and config is
    :func:`since`'s question.)"""
    if data is None or set(data) != _FIELDS or data["code"] != code:
        return None
    journal, seq, setting, feeds, sitemap = (
        data[k] for k in ("journal", "seq", "setting", "feeds", "sitemap")
    )
    topics, tags, totals, now = (
        _strings(data["topics"]),
        _strings(data["tags"]),
        _counts(data["totals"]),
        _moment(data["now"]),
    )
    if type(journal) is not str or type(setting) is not str or topics is None or tags is None:
        return None
    if type(seq) is not int or type(sitemap) is not int or seq < 0 or sitemap < 0:
        return None
    if not isinstance(feeds, list) or not all(type(f) is str for f in feeds) or totals is None or now is None:
        return None
    return changes.Mark(
        site.view().store, journal, seq, setting, frozenset(feeds), now, (topics, tags), totals, sitemap
    )


def start(site: Site) -> changes.Mark:
    """The mark of a build that looks at every document, taken before it reads anything."""
    return changes.mark(site)


def since(site: Site, last: changes.Mark, exists: Callable[[str], bool]) -> Changed | None:
    """The documents that can have changed since ``last`` (a few to render, not all that did),
    the export paths that are gone, and the mark to write; None: look at every document.
    ``exists``: whether an export path was a document at ``last``."""
    root = urlsplit(site.config.url).path

    def located(url: str) -> tuple[Kind, dict[str, str], str] | None:
        path = unquote(urlsplit(url).path)
        if not path.startswith(root):
            return None
        found = catalogue.route("/" + path[len(root) :])
        if found is None:
            return None
        kind, params = found
        return kind, params, kind.place.file(**params)

    def known(url: str) -> bool:
        found = located(url)
        return found is not None and exists(found[2])

    with site.read() as (reader, now):
        if last.seq > reader.journal_last() or last.now > now:
            return None  # a mark from the future: not one this index and clock wrote
    plan = changes.plan(site, last, known)
    if plan is None:
        return None
    documents: list[tuple[Kind, dict[str, str], str]] = []
    for entry in plan.documents:
        found = located(entry.url)
        if found is None:
            return None  # a document the export cannot place: look at every one
        if found[0] not in ALWAYS:
            documents.append(found)
    gone = [found[2] for found in map(located, plan.gone) if found is not None]
    return Changed(documents, gone, plan.mark)
