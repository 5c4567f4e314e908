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
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .bodies import SETTLE_SECONDS
from .config import SiteConfig
from .documents import Document
from .errors import FeedsError, Unsettled
from .site import FORMATS, Site

log = logging.getLogger(__name__)

MANIFEST = ".feeds-export.json"
MARKER = ".feeds-build"  # identifies folders this module created; written first, kept in the export
MARKER_BYTES = b"written by feeds build (see .feeds-export.json)\n"
GENERATOR = "feeds"
FORMAT_VERSION = 1
BOOKKEEPING = frozenset({MANIFEST, MARKER})
_MANIFEST_LIMIT = 64 << 20  # a real manifest of 100,000 articles is under 10 MB
_WORK_FOLDER = re.compile(r"\.(?P<name>.+)\.feeds-(?P<kind>tmp|old)-(?P<pid>[1-9][0-9]*)")


class ExportRefused(FeedsError):
    """The target cannot be replaced without risking files feeds did not write."""


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
    files: dict[str, Document] = {"index.html": site.index_page()}
    for name in sorted(site.specs):
        for fmt in FORMATS:
            files[f"feeds/{name}.{fmt}"] = site.feed(name, fmt)
    for article in site.published():
        files[f"articles/{article.id}.html"] = site.page(article.id)
    return files


# -- which folders may be a target --------------------------------------------------------------


def target_refusal(
    out: Path, *, config: Iterable[Path], articles: Path, state: Iterable[Path] = ()
) -> str | None:
    """Why replacing ``out`` would destroy the site itself, or None when it would not.

    Pure, so every case is testable without a site or a disk: callers pass paths with symlinks
    already resolved, as :func:`build` does.
    """
    for path in config:
        if out == path:
            return "it is the config file"
        if out in path.parents:
            return f"it contains the config file {path}"
    for what, folder in [("articles folder", articles), *(("state folder", s) for s in state)]:
        if out == folder:
            return f"it is the {what}"
        if out in folder.parents:
            return f"it contains the {what} {folder}"
        if folder in out.parents:
            return f"it lies inside the {what} {folder}"
    return None


def _protected(site: SiteConfig, state_dir: Path | None) -> tuple[list[Path], Path, list[Path]]:
    # The config as named and as pointed to: a config.yaml symlinked from elsewhere still marks
    # its folder as the site folder.
    named = site.path.absolute()
    config = [named.parent.resolve() / named.name, named.resolve()]
    states = [state_dir.resolve()] if state_dir is not None else []
    return config, site.articles_dir.resolve(), states


def check_target(site: SiteConfig, state_dir: Path | None, out: Path) -> Path:
    """``out`` resolved, or :class:`ExportRefused` if building there could lose the site.

    Needs only the config, so the CLI refuses before it reads a single article.
    """
    try:
        resolved = out.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
        raise ExportRefused(f"cannot build into {out}: cannot resolve the path ({exc})") from None
    config, articles, states = _protected(site, state_dir)
    reason = target_refusal(resolved, config=config, articles=articles, state=states)
    if reason is not None:
        shown = str(resolved) if str(out) == str(resolved) else f"{out} (= {resolved})"
        example = config[0].parent / "public"
        unsafe = target_refusal(example, config=config, articles=articles, state=states)
        hint = "" if unsafe else f", for example {example}"
        raise ExportRefused(
            f"refusing to build into {shown}: {reason}, and a build replaces the whole folder. "
            f"Give the export a folder of its own{hint}."
        )
    if resolved.exists() and not resolved.is_dir():
        raise ExportRefused(
            f"refusing to build into {out}: it exists and is not a folder. "
            "Give the path of a folder (it is created when missing)."
        )
    return resolved


# -- the manifest ----------------------------------------------------------------------------------


def is_relative_path(rel: object) -> bool:
    """True for a plain relative path that stays inside the folder it is joined to."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def manifest_bytes(files: Iterable[str]) -> bytes:
    data = {"generator": GENERATOR, "version": FORMAT_VERSION, "files": sorted(files)}
    return (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode()


def _read_regular(path: Path, limit: int) -> bytes | None:
    """Up to ``limit + 1`` bytes of a regular file; None for anything else (a FIFO would block)."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit + 1) if stat.S_ISREG(os.fstat(fd).st_mode) else None


def read_manifest(folder: Path) -> frozenset[str] | None:
    """The files an export in ``folder`` says it wrote, or None when it is not provably an export.

    Anything unexpected counts as "not an export": the manifest decides what gets deleted, so
    a hand-edited, truncated or planted one must never be trusted.
    """
    raw = _read_regular(folder / MANIFEST, _MANIFEST_LIMIT)
    try:
        data = json.loads(raw) if raw is not None and len(raw) <= _MANIFEST_LIMIT else None
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(data, dict) or set(data) != {"generator", "version", "files"}:
        return None
    files, version = data["files"], data["version"]
    if data["generator"] != GENERATOR or type(version) is not int or version != FORMAT_VERSION:
        return None
    if not isinstance(files, list) or not all(is_relative_path(rel) for rel in files):
        return None
    if len(set(files)) != len(files) or BOOKKEEPING & set(files):
        return None
    return frozenset(files) | BOOKKEEPING


# -- walking a tree without following links -------------------------------------------------------


@dataclass
class _Tree:
    files: list[str] = field(default_factory=list)  # everything but real folders, symlinks included
    dirs: dict[str, int] = field(default_factory=dict)  # folder -> mode, parents before children
    empty: list[str] = field(default_factory=list)


def _walk(root: Path) -> _Tree:
    tree = _Tree()

    def visit(folder: Path, prefix: str) -> None:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        if not entries and prefix:
            tree.empty.append(prefix.rstrip("/"))
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                tree.dirs[rel] = entry.stat(follow_symlinks=False).st_mode
                visit(Path(entry.path), rel + "/")
            else:
                tree.files.append(rel)

    visit(root, "")
    return tree


def _ancestors(rel: str) -> Iterator[str]:
    parts = rel.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def _same_entry(a: Path, b: Path) -> bool:
    """True when ``b`` is provably the same file as ``a``, so deleting ``a`` loses nothing."""
    try:
        sa, sb = a.lstat(), b.lstat()
    except OSError:
        return False
    if stat.S_ISLNK(sa.st_mode) or stat.S_ISLNK(sb.st_mode):
        return stat.S_ISLNK(sa.st_mode) and stat.S_ISLNK(sb.st_mode) and os.readlink(a) == os.readlink(b)
    return not stat.S_ISDIR(sa.st_mode) and os.path.samestat(sa, sb)


# -- work folders beside the target ----------------------------------------------------------------


def _work_folder(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.feeds-{kind}-{os.getpid()}"


def _has_marker(folder: Path) -> bool:
    return _read_regular(folder / MARKER, len(MARKER_BYTES)) == MARKER_BYTES


def _remove_work_folder(folder: Path) -> None:
    """Remove a temporary tree, its marker last, so an interrupted removal is finished later."""
    with os.scandir(folder) as listing:
        for entry in listing:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            elif entry.name != MARKER:
                os.unlink(entry.path)
    (folder / MARKER).unlink(missing_ok=True)
    folder.rmdir()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def _lock(parent: Path) -> Iterator[None]:
    """Serialise builds beside one target, so one build's clean-up never meets another's work."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock: go on unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _discard_old(old: Path, out: Path) -> None:
    """Delete from ``old`` what we wrote or what ``out`` provably holds; set aside what stays.

    The manifest and the marker go last, so a build killed in here leaves a folder the next
    build still recognises and finishes. Files that changed in ``out`` while it was rebuilt
    are in neither tree: their folder is renamed out of our naming scheme, so no later build
    touches it, and the operator is told where it is.
    """
    ours = read_manifest(old) or BOOKKEEPING
    tree = _walk(old)
    kept = []
    for rel in tree.files:
        if rel in BOOKKEEPING:
            continue
        try:
            if rel in ours or _same_entry(old / rel, out / rel):
                (old / rel).unlink()
                continue
        except OSError:  # the new export is in place: report what could not go, never fail
            pass
        kept.append(rel)
    for rel in reversed(tree.dirs):
        with contextlib.suppress(OSError):
            (old / rel).rmdir()
    for rel in (MANIFEST, MARKER):
        (old / rel).unlink(missing_ok=True)
    if not kept:
        old.rmdir()
        return
    for n in itertools.count(1):
        aside = old.with_name(f"{old.name}-kept{n if n > 1 else ''}")
        if not os.path.lexists(aside):
            break
    os.rename(old, aside)
    log.warning(
        "kept %s: %d file(s) in it (%s) are in neither the old nor the new export of %s (they changed "
        "while it was rebuilt); move them where they belong, then delete the folder",
        aside,
        len(kept),
        ", ".join(kept[:5]),
        out,
    )


def clean_leftovers(out: Path) -> None:
    """Finish what builds killed beside ``out`` left behind (call with the lock held).

    Only folders named like ours that carry our marker and whose process is gone are touched:
    an old tree of a build killed between its two renames is put back as ``out``, a temporary
    tree is removed (it holds our files and links to files that still exist elsewhere), and an
    old tree is emptied of what it provably shares with ``out``.
    """
    found: list[tuple[str, Path]] = []
    with os.scandir(out.parent) as listing:
        for entry in listing:
            match = _WORK_FOLDER.fullmatch(entry.name)
            if not match or match["name"] != out.name or not entry.is_dir(follow_symlinks=False):
                continue
            pid = int(match["pid"])
            if (pid == os.getpid() or not _process_alive(pid)) and _has_marker(Path(entry.path)):
                found.append((match["kind"], Path(entry.path)))
    for kind, folder in sorted(found, key=lambda f: (f[0] != "old", f[1].name)):
        try:
            if kind == "old" and not os.path.lexists(out):
                log.warning("restoring %s from %s, left by a build that was killed", out, folder)
                os.replace(folder, out)
                if read_manifest(out) is None:
                    (out / MARKER).unlink()
            elif kind == "old":
                _discard_old(folder, out)
            else:
                log.info("removing %s, left by a build that was killed", folder)
                _remove_work_folder(folder)
        except OSError as exc:
            log.warning("cannot clean up %s, left by a build that was killed: %s", folder, exc)


# -- build ---------------------------------------------------------------------------------------------


def _foreign(out: Path, force: bool) -> _Tree:
    """What in ``out`` we did not write, or a refusal when that cannot be known."""
    if not os.path.lexists(out):
        return _Tree()
    tree = _walk(out)
    if not tree.files and not tree.dirs:
        return tree
    ours = read_manifest(out)
    if ours is None and not force:
        raise ExportRefused(
            f"refusing to build into {out}: it is not empty and is not an export of feeds (no valid "
            f"{MANIFEST}), so it may hold files feeds did not write. Use an empty or new folder, or "
            "pass --force to build into it anyway: files already there are kept, never deleted."
        )
    foreign = _Tree(
        files=[rel for rel in tree.files if rel not in (ours or ())],
        dirs=tree.dirs,
        empty=tree.empty,
    )
    return foreign


def _check_collisions(out: Path, foreign: _Tree, written: Iterable[str]) -> None:
    paths = set(written)
    folders = {a for rel in paths for a in _ancestors(rel)}
    clashes = sorted(
        {rel for rel in foreign.files if rel in paths or rel in folders} | (paths & foreign.dirs.keys())
    )
    if clashes:
        more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        they, them = ("they", "them") if len(clashes) > 1 else ("it", "it")
        raise ExportRefused(
            f"refusing to build into {out}: {', '.join(clashes[:5])}{more} would be overwritten, but "
            f"no export manifest says feeds wrote {them}. Move {them} out of the folder (or delete "
            f"{them} if {they} came from an export older than manifests), then build again."
        )


def _carry(out: Path, tmp: Path, foreign: _Tree, written: set[str]) -> None:
    """Hard-link every foreign entry into the new tree, so the swap keeps it."""
    ours_dirs = {a for rel in written for a in _ancestors(rel)}
    for rel in [*foreign.files, *foreign.empty]:
        source, target = out / rel, tmp / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel in foreign.dirs:
                target.mkdir(exist_ok=True)
            elif source.is_symlink():
                os.symlink(os.readlink(source), target)
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
    with _lock(out.parent):
        clean_leftovers(out)
        foreign = _foreign(out, force)  # before rendering: a refusal should not take minutes
        files = export_files(site)
        written = {f"{rel}{gz}" for rel in files for gz in ("", ".gz")}
        for rel in written:
            if not is_relative_path(rel):
                raise ExportRefused(f"refusing to write {rel!r}: it would land outside {out}")
        _check_collisions(out, foreign, written | BOOKKEEPING)
        tmp, old = _work_folder(out, "tmp"), _work_folder(out, "old")
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
                _remove_work_folder(tmp)
            raise
        if os.path.lexists(old):
            _discard_old(old, out)
    log.info("exported %d documents to %s", len(files), out)
    return len(files)


def _swap(tmp: Path, out: Path, old: Path) -> None:
    if not os.path.lexists(out):
        os.replace(tmp, out)
        return
    os.replace(out, old)
    try:
        if not _has_marker(old):  # an export of ours has it already; a forced folder gets it now
            (old / MARKER).write_bytes(MARKER_BYTES)
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        if read_manifest(out) is None:
            (out / MARKER).unlink(missing_ok=True)
        raise
