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
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from . import catalogue
from .bodies import SETTLE_SECONDS
from .catalogue import FORMATS
from .documents import Document
from .errors import NotFound, Unsettled
from .outfolder import (
    BOOKKEEPING,
    MANIFEST,
    MARKER,
    MARKER_BYTES,
    ExportRefused,
    Tree,
    ancestors,
    check_target,
    clean_leftovers,
    discard_old,
    has_marker,
    is_relative_path,
    lock,
    manifest_bytes,
    read_manifest,
    remove_work_folder,
    walk,
    work_folder,
)
from .site import Site

log = logging.getLogger(__name__)
# Exported files an operator may have put there by hand (robots.txt), and where theirs goes now.
_OVERRIDDEN = {k.place.file(): k.override for k in catalogue.KINDS if k.override is not None}


def export_files(site: Site, attempts: int = 3) -> dict[str, Document]:
    """Relative file path -> document, for everything the site serves.

    A web server serves these files for minutes or hours, so none may lack an entry whose file
    was being written while it rendered: such documents are rendered again once the file had
    time to settle, and the build is refused if it never does.
    """
    for attempt in range(attempts):
        try:
            files = _documents(site)
        except Unsettled:
            files = None
        if files is not None and all(doc.complete for doc in files.values()):
            return files
        if attempt + 1 < attempts:
            time.sleep(SETTLE_SECONDS)
    raise ExportRefused("articles are being written right now; run the build again once they are finished")


def _documents(site: Site) -> dict[str, Document]:
    files: dict[str, Document] = {}

    def add(kind: catalogue.Kind, **params: object) -> None:
        text = {key: str(value) for key, value in params.items()}
        files[kind.place.file(**params)] = site.document(kind, text)

    add(catalogue.INDEX)
    add(catalogue.OPML)
    add(catalogue.ROBOTS)
    add(catalogue.SITEMAP)
    add(catalogue.NEWS_SITEMAP)
    for page in range(1, site.sitemap_pages() + 1):
        add(catalogue.SITEMAP_PAGE, page=page)
    for name, spec in sorted(site.specs.items()):
        add(catalogue.FEED_PAGE, name=name)
        for fmt in FORMATS:
            add(catalogue.FEED, name=name, fmt=fmt)
        for page in range(1, site.archived(spec) + 1):
            for fmt in FORMATS:
                add(catalogue.ARCHIVE, name=name, page=page, fmt=fmt)
    for rel in site.asset_paths():
        add(catalogue.STATIC, rel=rel)
    for rel in site.picture_paths():
        try:
            add(catalogue.MEDIA, rel=rel)
        except NotFound:  # gone or changed into something refused since the listing: not exported
            continue
    for article in site.published():
        add(catalogue.ARTICLE, id=article.id)
    return files


# -- build ---------------------------------------------------------------------------------------------


def _foreign(out: Path, force: bool) -> Tree:
    """What in ``out`` we did not write, or a refusal when that cannot be known."""
    if not os.path.lexists(out):
        return Tree()
    tree = walk(out)
    if not tree.files and not tree.dirs:
        return tree
    ours = read_manifest(out)
    if ours is None and not force:
        raise ExportRefused(
            f"refusing to build into {out}: it is not empty and is not an export of feeds (no valid "
            f"{MANIFEST}), so it may hold files feeds did not write. Use an empty or new folder, or "
            "pass --force to build into it anyway: files already there are kept, never deleted."
        )
    foreign = Tree(
        files=[rel for rel in tree.files if rel not in (ours or ())],
        dirs=tree.dirs,
        empty=tree.empty,
    )
    return foreign


def _check_collisions(out: Path, foreign: Tree, written: Iterable[str]) -> None:
    paths = set(written)
    folders = {a for rel in paths for a in ancestors(rel)}
    clashes = sorted(
        {rel for rel in foreign.files if rel in paths or rel in folders} | (paths & foreign.dirs.keys())
    )
    if clashes:
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


def _carry(out: Path, tmp: Path, foreign: Tree, written: set[str]) -> None:
    """Hard-link every foreign entry but symlinks into the new tree, so the swap keeps it."""
    ours_dirs = {a for rel in written for a in ancestors(rel)}
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


def _write(tmp: Path, files: dict[str, Document]) -> None:
    for rel, doc in files.items():
        target = tmp / rel
        twin = target.parent / (target.name + ".gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(doc.body)
        twin.write_bytes(doc.gzipped)
        stamp = doc.last_modified.timestamp()
        os.utime(target, (stamp, stamp))
        os.utime(twin, (stamp, stamp))


def build(site: Site, out: Path, *, force: bool = False) -> int:
    """Write the export to ``out`` atomically; returns the number of documents written.

    Beside each file goes its ``.gz`` twin (nginx ``gzip_static``), byte-identical to what
    the app serves gzipped. Raises :class:`ExportRefused` before writing anything when the
    build could lose a file feeds did not write.
    """
    out = check_target(site.config, site.state_dir, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with lock(out.parent):
        clean_leftovers(out)
        foreign = _foreign(out, force)  # before rendering: a refusal should not take minutes
        files = export_files(site)
        written = {f"{rel}{gz}" for rel in files for gz in ("", ".gz")}
        for rel in written:
            if not is_relative_path(rel):
                raise ExportRefused(f"refusing to write {rel!r}: it would land outside {out}")
        _check_collisions(out, foreign, written | BOOKKEEPING)
        tmp, old = work_folder(out, "tmp"), work_folder(out, "old")
        tmp.mkdir(mode=0o700)
        try:
            (tmp / MARKER).write_bytes(MARKER_BYTES)
            _write(tmp, files)
            (tmp / MANIFEST).write_bytes(manifest_bytes(written))
            _carry(out, tmp, foreign, written)
            tmp.chmod(0o755)
            _swap(tmp, out, old)
        except BaseException:
            with contextlib.suppress(OSError):
                remove_work_folder(tmp)
            raise
        if os.path.lexists(old):
            discard_old(old, out)
    log.info("exported %d documents to %s", len(files), out)
    return len(files)


def _swap(tmp: Path, out: Path, old: Path) -> None:
    if not os.path.lexists(out):
        os.replace(tmp, out)
        return
    os.replace(out, old)
    try:
        if not has_marker(old):  # an export of ours has it already; a forced folder gets it now
            (old / MARKER).write_bytes(MARKER_BYTES)
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        if read_manifest(out) is None:
            (out / MARKER).unlink(missing_ok=True)
        raise
