"""Static export: every feed, page and the index as files a plain web server can serve.

A build replaces the target folder as a whole: the new tree is written into a temporary folder
beside it and swapped in with one rename, so a web server never sees a half-written export.
Replacing a whole folder is also how an export could destroy data (``feeds build .`` in the
site folder used to delete config.yaml and every article), so the contract's promise that a
build "never deletes anything it did not write" is kept here in three layers:

* folders that hold the site itself (config, articles, state) are never a target;
* a folder is only replaced when its manifest (``.feeds-export.json``) proves it is an export,
  unless the operator forces it;
* whatever the manifest does not list is carried into the new tree by hard links before the
  swap, and the old tree loses only what was ours or is provably in the new tree.

Symlinks are the exception: a web server that follows them serves whatever they point to
(``/etc/passwd``), so none is ever carried into a new export. It stays in the old tree, which
is then set aside beside the target with a warning saying where (:func:`discard_old`).

An archive of a million articles is a million pages, so nothing here holds the export: the
documents are planned as a stream (:class:`_Plan`), and each is written with its ``.gz`` twin
as soon as it is rendered, then dropped. Most of them did not change since the last build:
article and archive pages (and full sitemap pages, and files copied as they are) come with a
``key``, a digest of everything their bytes depend on, read from the index without rendering.
When the old export's manifest recorded the same key for a file that is still the one it
wrote (same inode, size and mtime, and so its twin), that file is hard-linked into the new
tree instead of being rendered. The few other documents (feeds, feed pages, the index, OPML,
sitemap index, news sitemap, robots.txt) are rendered and linked when their bytes and date
are those recorded. Keys are recorded only for documents rendered while no other process
wrote to the index, so a key always describes the bytes beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
import time
import zlib
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from importlib import metadata
from itertools import islice
from pathlib import Path

from . import catalogue, rebuild
from .archives import archive_pages
from .assets import MEDIA, STATIC, Folder
from .bodies import SETTLE_SECONDS
from .catalogue import FORMATS, Kind, sitemap_size
from .documents import Document
from .outfolder import (
    BOOKKEEPING,
    MANIFEST,
    MARKER,
    MARKER_BYTES,
    Digests,
    ExportRefused,
    Manifest,
    ManifestWriter,
    Record,
    Stamp,
    Tree,
    ancestors,
    check_target,
    clean_leftovers,
    discard_old,
    folder_mtime,
    has_marker,
    is_relative_path,
    keep_spare,
    lock,
    manifest_identity,
    read_manifest,
    read_mark,
    record_lines,
    remove_work_folder,
    scan_files,
    spare_folder,
    stamp_of,
    walk,
    with_records,
    work_folder,
)
from .renames import exchange
from .renderers import Outcome, Rendered, render, render_all
from .site import Site
from .sitemaps import page_slice
from .store import TAG, TOPIC

log = logging.getLogger(__name__)
# Exported files an operator may have put there by hand (robots.txt), and where theirs goes now.
_OVERRIDDEN = {k.place.file(): k.override for k in catalogue.KINDS if k.override is not None}
PROGRESS = 100_000  # documents between two progress lines in the log


@dataclass(frozen=True)
class Exported:
    """What a build did: documents in the export, how many were rendered, how many files
    (each with its twin) were written, and how many were taken over from the old export."""

    documents: int
    rendered: int
    written: int
    reused: int
    seconds: float


@dataclass(frozen=True)
class Job:
    """One document to export. ``key``: a digest of what its bytes depend on, "" when only
    rendering tells; ``source``: a file copied as it is, whose version the key holds."""

    rel: str
    kind: Kind
    params: dict[str, str]
    key: str = ""
    source: Path | None = None


def _digest(value: Hashable) -> str:
    """32 hex digits of ``repr``: the same in every process (``hash()`` is not)."""
    return hashlib.sha256(repr(value).encode()).hexdigest()[:32]


# Libraries whose output is in the exported bytes: a new version may render differently.
_RENDERERS = ("feedgen", "jinja2", "markupsafe", "lxml", "pyyaml", "cmarkgfm", "nh3", "python-slugify")


def _code() -> str:
    """What rendering depends on besides the site: this package's code and templates, the
    libraries it renders with and zlib (the twins). Part of every key, so an upgrade that
    renders differently renders everything once."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".html", ".xml", ".txt")):
        digest.update(f"{path.relative_to(package)}\0".encode() + path.read_bytes() + b"\0")
    versions = []
    for name in _RENDERERS:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, ""))
    digest.update(repr((versions, zlib.ZLIB_RUNTIME_VERSION, sys.version)).encode())
    return digest.hexdigest()


def _job(kind: Kind, key: str = "", source: Path | None = None, **params: object) -> Job:
    return Job(kind.place.file(**params), kind, {k: str(v) for k, v in params.items()}, key, source)


def _file_version(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_size, st.st_mtime_ns)


# -- what to export -------------------------------------------------------------------------------


class _Plan:
    """Every document of the site, in a stream: the few rendered anyway, feeds, archive pages and
    article pages with their keys (read from the index in batches, undecoded), then the
    sitemap pages.

    Every key holds ``setting``: the config, the code that renders (:func:`_code`) and the
    display names of topics and tags (a page shows the name most entries write, which rarely
    moves; when it does, everything is rendered again).
    """

    def __init__(self, site: Site, code: str) -> None:
        self.site = site
        self.config = site.config
        self.view = site.view()
        with site.read() as (reader, _):
            names = (reader.all_spellings(TOPIC), reader.all_spellings(TAG))
        self.setting = _digest((self.config, code, names))

    def jobs(self) -> Iterator[Job]:
        yield from self._few()
        yield from self._files(STATIC, catalogue.STATIC, self.site.asset_paths())
        yield from self._files(MEDIA, catalogue.MEDIA, self.site.picture_paths())
        for name in sorted(self.view.specs):
            yield from self._feed(name)
        for name in sorted(self.view.specs):
            yield from self._archive(name)
        sitemap = _SitemapKeys(self.site, self.setting)
        yield from self._articles(sitemap)
        yield from sitemap.jobs()

    def always(self) -> Iterator[Job]:
        """What a build looks at whatever changed: the few documents rendered anyway, the files
        copied as they are (by their version), and the feeds with a window, which the clock
        changes."""
        yield from self._few()
        yield from self._files(STATIC, catalogue.STATIC, self.site.asset_paths())
        yield from self._files(MEDIA, catalogue.MEDIA, self.site.picture_paths())
        for name in sorted(self.view.specs):
            if self.view.specs[name].span:
                yield from self._feed(name)
                yield from self._archive(name)

    def _few(self) -> Iterator[Job]:
        for kind in (catalogue.INDEX, catalogue.OPML, catalogue.ROBOTS, catalogue.SITEMAP):
            yield _job(kind)
        yield _job(catalogue.NEWS_SITEMAP)

    def _files(self, folder: Folder, kind: Kind, paths: Iterable[str]) -> Iterator[Job]:
        root = folder.locate(self.config)
        for rel in paths:
            source = root / rel
            version = _file_version(source)
            key = _digest((rel, version)) if version is not None else ""
            yield _job(kind, key, source, rel=rel)

    def _feed(self, name: str) -> Iterator[Job]:
        """A feed's documents and its page, keyed by its newest entries and how many archive
        pages it has; a feed with a window (its entries change with the clock) is rendered."""
        spec = self.view.specs[name]
        what: object = None
        if not spec.span:
            with self.site.read() as (reader, now):
                count = archive_pages(reader.total(spec, now), spec.limit)
                first = tuple(islice(reader.history(spec, now), spec.limit))
            natural = None if first else self.view.newest  # the date of a feed without entries
            what = (self.setting, repr(spec), count, first, natural)
        jobs = [_job(catalogue.FEED_PAGE, name=name)]
        jobs += [_job(catalogue.FEED, name=name, fmt=fmt) for fmt in FORMATS]
        for job in jobs:
            yield job if what is None else Job(job.rel, job.kind, job.params, _digest((job.rel, what)))

    def _archive(self, name: str) -> Iterator[Job]:
        """Archive pages keyed by their entries, walked newest first in one read transaction
        (only a digest per page is kept)."""
        spec = self.view.specs[name]
        per_page = spec.limit
        with self.site.read() as (reader, now):
            total = reader.total(spec, now)
            count = archive_pages(total, per_page)
            if not count:
                return
            pages = [hashlib.sha256() for _ in range(count)]
            seen = 0
            for line in reader.history(spec, now):
                if per_page <= seen < total:
                    pages[(total - 1 - seen) // per_page].update(line.encode() + b"\n")  # 0: the oldest
                seen += 1
        keyed = seen == total  # else the walk and the count disagree: render every page
        for page in range(1, count + 1):
            for fmt in FORMATS:
                job = _job(catalogue.ARCHIVE, name=name, page=page, fmt=fmt)
                if keyed:
                    what = (self.setting, repr(spec), job.rel, page < count, pages[page - 1].hexdigest())
                    job = Job(job.rel, job.kind, job.params, _digest(what))
                yield job

    def _articles(self, sitemap: _SitemapKeys) -> Iterator[Job]:
        """Article pages: one shows its article, the display names of its topics and tags and
        the topic feeds it is in, which exist while it does (a topic feed has a visible entry)."""
        place = catalogue.ARTICLE.place
        for article_id, permalink, content, updated, shown in self.site.page_rows():
            sitemap.note(permalink, content, updated)
            rel = place.file(id=article_id)
            yield Job(rel, catalogue.ARTICLE, {"id": article_id}, _digest((self.setting, rel, shown)))


class _SitemapKeys:
    """The pages of a large sitemap: those holding articles only are keyed from the article
    pages' walk (newest first) on its way; the last pages, which also list the site's pages,
    are rendered."""

    def __init__(self, site: Site, setting: str) -> None:
        self.site = site
        self.setting = setting
        self.per_page = site.sitemap_urls
        with site.read() as (reader, now):
            self.articles, _, self.count = sitemap_size(site.view(), reader, now, self.per_page)
        self.full = self.articles // self.per_page if self.count else 0
        self.digests = [hashlib.sha256() for _ in range(self.full)]
        self.seen = 0

    def note(self, permalink: str, content: int, updated: int) -> None:
        position = self.articles - 1 - self.seen  # oldest first
        self.seen += 1
        if 0 <= position < self.full * self.per_page:
            self.digests[position // self.per_page].update(f"{permalink}\0{content}\0{updated}\n".encode())

    def jobs(self) -> Iterator[Job]:
        keyed = self.full if self.seen == self.articles else 0  # else changed mid-walk: render all
        for page in range(1, self.count + 1):
            job = _job(catalogue.SITEMAP_PAGE, page=page)
            if page <= keyed:
                part = page_slice(self.articles, self.per_page, page)
                what = (self.setting, job.rel, part.start, part.stop, self.digests[page - 1].hexdigest())
                job = Job(job.rel, job.kind, job.params, _digest(what))
            yield job


# -- writing the new tree ---------------------------------------------------------------------------


@dataclass
class _Tally:
    documents: int = 0
    rendered: int = 0
    written: int = 0
    reused: int = 0


class _Writer:
    """Writes (or links from the old export) one document after another into ``tmp``.

    ``old``: the old export's manifest, None to render and write everything.
    """

    def __init__(
        self,
        site: Site,
        out: Path,
        tmp: Path,
        old: Manifest | None,
        foreign: Tree,
        mark: dict[str, object],
        updating: bool = False,
    ) -> None:
        self.site, self.out, self.tmp, self.old, self.foreign = site, out, tmp, old, foreign
        self.updating = updating  # tmp holds an earlier export's files: replace, never write into them
        self.manifest = ManifestWriter(tmp / MANIFEST, mark)
        self.tally = _Tally()
        self.made: set[str] = set()  # folders made in tmp
        self.recorded: set[str] = set()  # documents in the new manifest
        self._foreign_files = set(foreign.files)
        self._checked: set[str] = set()  # folders whose ancestors were checked for clashes
        self._store = site.view().store
        self._version = self._store.data_version()
        self._journal = self._journaled()

    def _journaled(self) -> tuple[str | None, int]:
        with self._store.read() as reader:
            return reader.journal_id(), reader.journal_last()

    def _stable(self) -> bool:
        """No other process changed the index's rows since the build began (keys describe the
        bytes). Every change of a row is journaled; the file also moves when a process only
        notes that it compared the files (a server's worker starting during an hour-long build),
        which must not cost the next build a render of everything."""
        version = self._store.data_version()
        if version == self._version:
            return True
        if self._journaled() != self._journal:
            return False
        self._version = version
        return True

    def export(self, job: Job) -> bool:
        """False when the document cannot be had whole right now (an article being written)."""
        return self.reuse(job) or self.place(job, render(self.site, job.kind, job.params))

    def reuse(self, job: Job) -> bool:
        """Whether the old export's file was taken over by its key (nothing to render)."""
        rel = job.rel
        if not is_relative_path(rel):
            raise ExportRefused(f"refusing to write {rel!r}: it would land outside {self.out}")
        self._check(rel)
        found = self._found(rel) if job.key else None
        if found is not None and self.old is not None:
            etag = self.old.reusable(rel, job.key, found)
            if etag is not None:
                self._link(rel)
                self._done(Record(rel, job.key, etag, *found), reused=True)
                return True
        return False

    def place(self, job: Job, rendered: Rendered) -> bool:
        """The rendered document written (or linked, its bytes unchanged); False when it could
        not be had whole (an article being written)."""
        rel = job.rel
        if rendered is Outcome.GONE:  # gone since the listing, or changed into something refused
            self.remove(rel)
            return True
        if rendered is Outcome.UNSETTLED:
            return False
        doc = rendered
        self.tally.rendered += 1
        key = job.key if self._stable() else ""
        if job.source is not None and key != _job_key(job):
            key = ""  # the file changed since it was listed: its key may not describe these bytes
        mtime_ns = int(doc.last_modified.timestamp()) * 1_000_000_000
        found = self._found(rel)
        if (
            found is not None
            and self.old is not None
            and found[0] == mtime_ns
            and self.old.same_bytes(rel, doc.etag, found)
        ):
            self._link(rel)
            self._done(Record(rel, key, doc.etag, *found), reused=True)
        else:
            stamp = self._write(rel, doc, mtime_ns)
            self._done(Record(rel, key, doc.etag, *stamp), reused=False)
        return True

    def _done(self, record: Record, reused: bool) -> None:
        self.manifest.add(record)
        self.recorded.add(record.rel)
        self.tally.documents += 1
        if reused:
            self.tally.reused += 1
        else:
            self.tally.written += 1
        if self.tally.documents % PROGRESS == 0:
            t = self.tally
            log.info(
                "%s: %d documents so far (%d rendered, %d reused)",
                self.out,
                t.documents,
                t.rendered,
                t.reused,
            )

    def _check(self, rel: str) -> None:
        """Refuses before the swap when the document would overwrite a file we did not write."""
        clashes = [p for p in (rel, f"{rel}.gz") if p in self._foreign_files or p in self.foreign.dirs]
        parent = rel.rpartition("/")[0]
        if parent and parent not in self._checked:
            clashes += [a for a in ancestors(rel) if a in self._foreign_files]
            self._checked.add(parent)
        if clashes:
            _refuse_clashes(self.out, clashes)

    def _found(self, rel: str) -> Stamp | None:
        """The stamp of the old export's file and twin, if both are there as regular files."""
        if self.old is None:
            return None
        try:
            return stamp_of(os.lstat(f"{self.out}/{rel}"), os.lstat(f"{self.out}/{rel}.gz"))
        except (OSError, ValueError):
            return None

    def _folder(self, rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent and parent not in self.made:
            (self.tmp / parent).mkdir(parents=True, exist_ok=True)
            self.made.update([*ancestors(rel)])

    def remove(self, rel: str) -> None:
        """``rel`` and its twin out of the tree being updated (an earlier export's files there
        are ours: the spare holds nothing else)."""
        if self.updating:
            for name in (rel, f"{rel}.gz"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.tmp}/{name}")

    def take(self, rel: str) -> bool:
        """The live export's file and twin in place of the spare's (a document that changed
        before the last build and not since); False when the live export has none."""
        self.remove(rel)
        if self.old is None or rel not in self.old or self._found(rel) is None:
            return False
        self._link(rel)
        return True

    def _link(self, rel: str) -> None:
        self._folder(rel)
        self.remove(rel)
        for name in (rel, f"{rel}.gz"):
            os.link(f"{self.out}/{name}", f"{self.tmp}/{name}", follow_symlinks=False)

    def _write(self, rel: str, doc: Document, mtime_ns: int) -> Stamp:
        self._folder(rel)
        self.remove(rel)  # the spare's file may be a link to the live export's: never written into
        target = self.tmp / rel
        twin = self.tmp / f"{rel}.gz"
        target.write_bytes(doc.body)
        twin.write_bytes(doc.gzipped)
        os.utime(target, ns=(mtime_ns, mtime_ns))
        os.utime(twin, ns=(mtime_ns, mtime_ns))
        stamp = stamp_of(os.lstat(target), os.lstat(twin))
        assert stamp is not None, target
        return stamp

    def carry(self, line: str) -> None:
        """A record of the live export taken over as it is (its files are already in place)."""
        self.manifest.add_line(line)
        self.tally.documents += 1
        self.tally.reused += 1


def _job_key(job: Job) -> str:
    """The key of a file copied as it is, as it is now."""
    assert job.source is not None
    version = _file_version(job.source)
    return _digest((job.params["rel"], version)) if version is not None else ""


def _write_all(writer: _Writer, jobs: Iterable[Job], attempts: int = 3, workers: int = 1) -> None:
    """Every job written, rendered on ``workers`` processes when there are many (see
    :mod:`feeds.renderers`); those that cannot be had whole right now (articles being written)
    are tried again once their files had time to settle, and the build is refused if they never
    do: a web server serves these files for minutes or hours."""
    fresh = (job for job in jobs if not writer.reuse(job))
    with contextlib.closing(render_all(writer.site, fresh, _asked, workers)) as rendered:
        waiting = [job for job, doc in rendered if not writer.place(job, doc)]
    for _ in range(attempts - 1):
        if not waiting:
            return
        time.sleep(SETTLE_SECONDS)
        waiting = [job for job in waiting if not writer.export(job)]
    if waiting:
        raise ExportRefused(
            "articles are being written right now; run the build again once they are finished"
        )


def _asked(job: Job) -> tuple[Kind, dict[str, str]]:
    return job.kind, job.params


# -- bringing the spare up to date ---------------------------------------------------------------------

# Export paths of the documents looked at on every build (:meth:`_Plan.always`) that are not a
# fixed name: files copied as they are.
_COPIED = tuple(f"{kind.place.export.partition('{')[0]}" for kind in (catalogue.STATIC, catalogue.MEDIA))


@dataclass(frozen=True)
class _Update:
    """What changed since the live export was built (render these again) and since the spare
    was (take these over from the live export)."""

    live: rebuild.Changed
    spare: rebuild.Changed


def _is_spare(folder: Path) -> bool:
    try:
        return stat.S_ISDIR(folder.lstat().st_mode) and has_marker(folder)
    except OSError:
        return False


def _update_plan(
    site: Site, out: Path, ours: Manifest, foreign: Tree, spare: Path, code: str
) -> _Update | None:
    """How to bring the spare to the export of now, when the marks on it and on the live export
    tell; None: build a whole new tree."""
    if ours.mark is None or not foreign.untouched:
        return None  # a file of the live export edited by hand: only a look at every one tells
    live_mark = rebuild.read_mark(site, ours.mark, code)
    spare_mark = rebuild.read_mark(site, read_mark(spare), code)
    if live_mark is None or spare_mark is None:
        return None
    live = rebuild.since(site, live_mark, lambda rel: os.path.lexists(out / rel))
    if live is None:
        return None
    earlier = rebuild.since(site, spare_mark, lambda rel: os.path.lexists(spare / rel))
    return None if earlier is None else _Update(live, earlier)


@dataclass(frozen=True)
class _Steps:
    """How the spare becomes the new export: ``jobs`` looked at (rendered, or linked by key),
    ``taken`` over from the live export, ``gone``."""

    jobs: dict[str, Job]
    taken: list[str]
    gone: set[str]


def _steps(update: _Update, always: Iterable[Job]) -> _Steps:
    jobs = {job.rel: job for job in always}
    for kind, params, rel in update.live.documents:
        jobs.setdefault(rel, Job(rel, kind, params))
    gone = (set(update.live.gone) | set(update.spare.gone)) - jobs.keys()
    taken = [rel for _, _, rel in update.spare.documents if rel not in jobs and rel not in gone]
    return _Steps(jobs, list(dict.fromkeys(taken)), gone)


def _update(writer: _Writer, steps: _Steps, ours: Manifest, workers: int = 1) -> None:
    """Turn the spare (in ``writer.tmp``) into the new export: the documents that changed since
    the live export was built are rendered (and linked from it where their bytes did not
    change), those that changed only before are linked from it, pages now gone are removed, and
    every other record of the live manifest is taken over, its file being the same in both."""
    gone = set(steps.gone)
    for rel in steps.taken:
        if not writer.take(rel):
            gone.add(rel)
    for rel in gone:
        writer.remove(rel)
    for prefix in _COPIED:  # copied files no longer there
        for rel, entry in scan_files(writer.tmp, prefix):
            twin_of = rel.removesuffix(".gz")
            if (
                rel not in steps.jobs
                and twin_of not in steps.jobs
                and not entry.is_dir(follow_symlinks=False)
            ):
                os.unlink(entry.path)
    _write_all(writer, steps.jobs.values(), workers=workers)
    skip = {json.dumps(rel, ensure_ascii=False) for rel in (writer.recorded | gone | steps.jobs.keys())}
    copied = tuple(f'"{prefix}' for prefix in _COPIED)
    for encoded, line in record_lines(writer.out, ours):
        if encoded not in skip and not encoded.startswith(copied):
            writer.carry(line)


# -- build ---------------------------------------------------------------------------------------------


def _survey(out: Path, force: bool, light: bool = False) -> tuple[Manifest | None, Tree]:
    """The old export's manifest (``light``: see :func:`read_manifest`), and what in ``out`` we
    did not write; or a refusal when that cannot be known."""
    if not os.path.lexists(out):
        return None, Tree()
    ours = read_manifest(out, light)
    checked = ours if ours is not None and ours.light else None
    tree = walk(out, skip=ours.__contains__ if ours is not None else None, checked=checked)
    if ours is None and (tree.files or tree.dirs) and not force:
        raise ExportRefused(
            f"refusing to build into {out}: it is not empty and is not an export of feeds (no valid "
            f"{MANIFEST}), so it may hold files feeds did not write. Use an empty or new folder, or "
            "pass --force to build into it anyway: files already there are kept, never deleted."
        )
    return ours, tree


def _refuse_clashes(out: Path, found: Iterable[str]) -> None:
    clashes = sorted(set(found))
    more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
    they, them = ("they", "them") if len(clashes) > 1 else ("it", "it")
    own = "".join(
        f" Your own {rel} goes in static/{name}: it is then exported in its place."
        for rel, name in _OVERRIDDEN.items()
        if rel in clashes
    )
    raise ExportRefused(
        f"refusing to build into {out}: {', '.join(clashes[:5])}{more} would be overwritten, but "
        f"no export manifest says feeds wrote {them}. Move {them} out of the folder (or delete "
        f"{them} if {they} came from an export older than manifests), then build again.{own}"
    )


def _carry(out: Path, tmp: Path, foreign: Tree, ours_dirs: set[str]) -> None:
    """Hard-link every foreign entry but symlinks into the new tree, so the swap keeps it."""
    for rel in [*foreign.files, *foreign.empty]:
        source, target = out / rel, tmp / rel
        try:
            if rel not in foreign.dirs and source.is_symlink():
                continue  # left in the old tree, which discard_old sets aside and reports
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel in foreign.dirs:
                target.mkdir(exist_ok=True)
            else:
                os.link(source, target, follow_symlinks=False)
        except OSError as exc:
            raise ExportRefused(
                f"refusing to build into {out}: {source} is not ours and cannot be kept through the "
                f"swap ({exc.strerror or exc}). Move it out of the folder, then build again."
            ) from None
    for rel in reversed([d for d in foreign.dirs if d not in ours_dirs and (tmp / d).is_dir()]):
        os.chmod(tmp / rel, stat.S_IMODE(foreign.dirs[rel]))


Survey = tuple[Manifest, Tree]  # a light survey of an export about to be updated


def survey_ahead(out: Path) -> Survey | None:
    """The survey an update of the export in ``out`` starts with, made before the site is open
    (in a process of its own while the site's files are checked; a million articles take
    half a minute each): None when ``out`` is not an export with a spare beside it. The build
    takes it only if the export is still the one surveyed (:func:`_ahead`)."""
    if not _is_spare(spare_folder(out)):
        return None
    ours, foreign = _survey(out, force=False, light=True)
    if ours is None or not ours.light:
        return None
    return replace(ours, stamps=Digests()), foreign  # the stamps served the walk: not sent back


def _ahead(out: Path, ahead: Future[Survey | None] | None) -> Survey | None:
    if ahead is None:
        return None
    try:
        found = ahead.result()
    except (BrokenProcessPool, OSError, ExportRefused) as exc:
        log.info("the survey made ahead failed (%s); surveying %s again", exc, out)
        return None
    if found is None or found[0].identity != manifest_identity(out) or found[1].top != folder_mtime(out):
        return None  # another build swapped the export meanwhile, or there was none
    return found


def build(
    site: Site,
    out: Path,
    *,
    force: bool = False,
    full: bool = False,
    ahead: Future[Survey | None] | None = None,
    workers: int = 1,
) -> Exported:
    """Write the export to ``out`` atomically; what it did.

    Beside each file goes its ``.gz`` twin (nginx ``gzip_static``), byte-identical to what
    the app serves gzipped. Documents unchanged since the export in ``out`` was built are
    linked from it rather than rendered (``full``: every document is rendered and written).
    Raises :class:`ExportRefused` before the swap when the build could lose a file feeds did
    not write. ``ahead``: :func:`survey_ahead` of ``out``, started before the site was opened.
    ``workers``: processes that render once a build has many documents to render (each opens
    the site from its config, index and ledger, and reads the clock itself).
    """
    started = time.monotonic()
    out = check_target(site.config, site.state_dir, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with lock(out.parent):
        clean_leftovers(out)
        spare = spare_folder(out)
        updating = not full and _is_spare(spare)  # worth a try: see _update_plan
        found = _ahead(out, ahead) if updating else None
        ours: Manifest | None
        if found is not None:
            ours, foreign = found
        else:  # a refusal comes first
            ours, foreign = _survey(out, force, light=updating)
        files = set(foreign.files)
        bookkeeping = [rel for rel in BOOKKEEPING if rel in files or rel in foreign.dirs]
        if bookkeeping:
            _refuse_clashes(out, bookkeeping)
        tmp, old = work_folder(out, "tmp"), work_folder(out, "old")
        code = _code()
        update = (
            _update_plan(site, out, ours, foreign, spare, code) if updating and ours is not None else None
        )
        if update is None and ours is not None and ours.light:
            ours, foreign = _survey(out, force)  # all of it: documents are reused by key or bytes
        if update is None and updating:
            discard_old(spare, out)  # too old to bring up to date: what is ours in it goes
        writer: _Writer | None = None
        try:
            if update is not None and ours is not None:
                os.replace(spare, tmp)
                (tmp / MANIFEST).unlink()  # a work folder from here on, until its new manifest
                mark = rebuild.mark_data(update.live.mark, code)
                steps = _steps(update, _Plan(site, code).always())
                known = with_records(out, ours, [*steps.jobs, *steps.taken])
                writer = _Writer(site, out, tmp, known, foreign, mark, updating=True)
                _update(writer, steps, ours, workers)
            else:
                mark = rebuild.mark_data(rebuild.start(site), code)
                tmp.mkdir(mode=0o700)
                (tmp / MARKER).write_bytes(MARKER_BYTES)
                writer = _Writer(site, out, tmp, None if full else ours, foreign, mark)
                _write_all(writer, _Plan(site, code).jobs(), workers=workers)
            writer.manifest.close()
            _carry(out, tmp, foreign, writer.made)
            tmp.chmod(0o755)
            _swap(tmp, out, old)
        except BaseException:
            if writer is not None:
                writer.manifest.abandon()
            with contextlib.suppress(OSError):
                remove_work_folder(tmp)
            raise
        if os.path.lexists(old) and not _kept(old, out, ours, foreign, mark):
            discard_old(old, out, None if ours is not None and ours.light else ours)
    t = writer.tally
    done = Exported(t.documents, t.rendered, t.written, t.reused, time.monotonic() - started)
    log.info(
        "exported %d documents to %s in %.1f s: %d rendered, %d written, %d reused",
        done.documents,
        out,
        done.seconds,
        done.rendered,
        done.written,
        done.reused,
    )
    return done


def _kept(old: Path, out: Path, ours: Manifest | None, foreign: Tree, mark: dict[str, object]) -> bool:
    """Whether the replaced export was kept as the next build's spare (the new export is in
    place already: a failure here only costs the next build time)."""
    earlier = ours.mark if ours is not None else None
    useful = earlier is not None and all(earlier.get(k) == mark[k] for k in ("journal", "code", "setting"))
    try:
        return keep_spare(old, out, ours, foreign, useful)
    except OSError as exc:
        log.warning("cannot keep %s for the next build (%s); it links every file again", old, exc)
        return False


def _swap(tmp: Path, out: Path, old: Path) -> None:
    """The new tree in place of ``out`` in one step, the old one at ``old``.

    The new tree is named like an old one first, so a build killed at any moment leaves trees
    that the next build's :func:`clean_leftovers` treats rightly (an old tree's files that are
    not ours are never deleted; the new one holds nothing but ours and links)."""
    if not os.path.lexists(out):
        os.replace(tmp, out)
        return
    marked = has_marker(out)
    try:
        if not marked:  # an export of ours has it already; a forced folder gets it now
            (out / MARKER).write_bytes(MARKER_BYTES)
        os.replace(tmp, old)
        try:
            if exchange(old, out):
                return
        except BaseException:
            os.replace(old, tmp)
            raise
        os.replace(old, tmp)  # no exchange here: two renames, and a moment without the export
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
    except BaseException:
        if not marked and read_manifest(out) is None:
            (out / MARKER).unlink(missing_ok=True)
        raise
