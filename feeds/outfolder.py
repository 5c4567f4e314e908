"""The export's target folder: which folders may be one, how an export is recognised, work folders.

``feeds build`` replaces its target as a whole, which is also how it could destroy data. These
rules keep the contract's promise that a build "never deletes anything it did not write":
folders holding the site itself are never a target, a folder is only replaced when its manifest
proves it is an export (or the operator forces it), and work folders carry a marker so that only
what a build created is ever cleaned up after it.
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .config import SiteConfig
from .errors import FeedsError

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
class Tree:
    files: list[str] = field(default_factory=list)  # everything but real folders, symlinks included
    dirs: dict[str, int] = field(default_factory=dict)  # folder -> mode, parents before children
    empty: list[str] = field(default_factory=list)


def walk(root: Path) -> Tree:
    tree = Tree()

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


def ancestors(rel: str) -> Iterator[str]:
    parts = rel.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def same_entry(a: Path, b: Path) -> bool:
    """True when ``b`` is provably the same file as ``a``, so deleting ``a`` loses nothing."""
    try:
        sa, sb = a.lstat(), b.lstat()
    except OSError:
        return False
    if stat.S_ISLNK(sa.st_mode) or stat.S_ISLNK(sb.st_mode):
        return stat.S_ISLNK(sa.st_mode) and stat.S_ISLNK(sb.st_mode) and os.readlink(a) == os.readlink(b)
    return not stat.S_ISDIR(sa.st_mode) and os.path.samestat(sa, sb)


# -- work folders beside the target ----------------------------------------------------------------


def work_folder(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.feeds-{kind}-{os.getpid()}"


def has_marker(folder: Path) -> bool:
    return _read_regular(folder / MARKER, len(MARKER_BYTES)) == MARKER_BYTES


def remove_work_folder(folder: Path) -> None:
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
def lock(parent: Path) -> Iterator[None]:
    """Serialise builds beside one target, so one build's clean-up never meets another's work."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock: go on unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def discard_old(old: Path, out: Path) -> None:
    """Delete from ``old`` what we wrote or what ``out`` provably holds; set aside what stays.

    The manifest and the marker go last, so a build killed in here leaves a folder the next
    build still recognises and finishes. What stays is the operator's: symlinks, which are
    never carried into a new export, and files that changed in ``out`` while it was rebuilt
    (in neither tree). Their folder is renamed out of our naming scheme, so no later build
    touches it, and the operator is told where it is.
    """
    ours = read_manifest(old) or BOOKKEEPING
    tree = walk(old)
    kept: list[str] = []
    links: list[str] = []
    for rel in tree.files:
        if rel in BOOKKEEPING:
            continue
        try:
            if rel in ours or same_entry(old / rel, out / rel):
                (old / rel).unlink()
                continue
            is_link = (old / rel).is_symlink()
        except OSError:  # the new export is in place: report what could not go, never fail
            is_link = False
        (links if is_link else kept).append(rel)
    for rel in reversed(tree.dirs):
        with contextlib.suppress(OSError):
            (old / rel).rmdir()
    for rel in (MANIFEST, MARKER):
        (old / rel).unlink(missing_ok=True)
    if not kept and not links:
        old.rmdir()
        return
    for n in itertools.count(1):
        aside = old.with_name(f"{old.name}-kept{n if n > 1 else ''}")
        if not os.path.lexists(aside):
            break
    os.rename(old, aside)
    if links:
        log.warning(
            "left %d symlink(s) out of the new export of %s (%s): a web server following them serves "
            "any file they point to. They are kept in %s; copy what should be served into the export "
            "folder as files, then delete that folder",
            len(links),
            out,
            ", ".join(links[:5]) + (", ..." if len(links) > 5 else ""),
            aside,
        )
    if kept:
        log.warning(
            "kept %s: %d file(s) in it (%s) are in neither the old nor the new export of %s (they "
            "changed while it was rebuilt); move them where they belong, then delete the folder",
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
            if (pid == os.getpid() or not _process_alive(pid)) and has_marker(Path(entry.path)):
                found.append((match["kind"], Path(entry.path)))
    for kind, folder in sorted(found, key=lambda f: (f[0] != "old", f[1].name)):
        try:
            if kind == "old" and not os.path.lexists(out):
                log.warning("restoring %s from %s, left by a build that was killed", out, folder)
                os.replace(folder, out)
                if read_manifest(out) is None:
                    (out / MARKER).unlink()
            elif kind == "old":
                discard_old(folder, out)
            else:
                log.info("removing %s, left by a build that was killed", folder)
                remove_work_folder(folder)
        except OSError as exc:
            log.warning("cannot clean up %s, left by a build that was killed: %s", folder, exc)
