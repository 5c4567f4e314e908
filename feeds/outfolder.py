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
import io
import itertools
import json
import logging
import os
import re
import shutil
import stat
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .config import SiteConfig
from .errors import FeedsError

log = logging.getLogger(__name__)

MANIFEST = ".feeds-export.json"
MARKER = ".feeds-build"  # identifies folders this module created; written first, kept in the export
MARKER_BYTES = b"written by feeds build (see .feeds-export.json)\n"
GENERATOR = "feeds"
FORMAT_VERSION = 3
BOOKKEEPING = frozenset({MANIFEST, MARKER})
_MANIFEST_LIMIT = 64 << 20  # of a version 1 manifest: one of 100,000 articles is under 10 MB
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
#
# Version 2 lists every document (its .gz twin implied) with what the next build needs to reuse
# its file without rendering it: the digest of what its bytes depend on (``key``, empty when
# only rendering tells), the digest of its bytes (its ETag), and the file's and twin's stat as
# written (mtime, size, inode). It is one JSON document laid out one record a line, so that a
# million records are read as a stream into compact digests, never into a list. Version 3 adds,
# on the header line, the ``mark``: where in the index's journal the export stands
# (:mod:`feeds.rebuild`), so that the next build finds what changed without a walk.


def is_relative_path(rel: object) -> bool:
    """True for a plain relative path that stays inside the folder it is joined to."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        return False
    parts = rel.split("/")
    return "" not in parts and "." not in parts and ".." not in parts


_HEADER_V2 = f'{{"generator": "{GENERATOR}", "version": 2, "documents": [\n'
_HEADER_START = f'{{"generator": "{GENERATOR}", "version": {FORMAT_VERSION}, "mark": '.encode()
_HEADER_END = b', "documents": [\n'
_FOOTER = "]}\n"
_MARK_LIMIT = 16 << 20  # the mark names every topic and tag: a few MB for the largest sites
_LINE_LIMIT = 16 << 10  # an article id is at most a few hundred characters
_RECORDS_LIMIT = 20_000_000  # documents: an export of ten million articles has about 12 million
_HEX32 = re.compile(r"[0-9a-f]{32}")
_INT_MAX = 1 << 63
_INTS = [int] * 5  # the types of a record's numbers


@dataclass(frozen=True)
class Record:
    """One document of an export: ``rel``, and its ``.gz`` twin beside it."""

    rel: str
    key: str  # digest of what the bytes depend on; "" when only rendering tells
    etag: str  # digest of the bytes
    mtime_ns: int  # of both files
    size: int
    ino: int
    gz_size: int
    gz_ino: int

    def line(self) -> str:
        fields = [
            self.rel,
            self.key,
            self.etag,
            self.mtime_ns,
            self.size,
            self.ino,
            self.gz_size,
            self.gz_ino,
        ]
        return json.dumps(fields, ensure_ascii=False)

    @property
    def stamp(self) -> Stamp:
        return (self.mtime_ns, self.size, self.ino, self.gz_size, self.gz_ino)


Stamp = tuple[int, int, int, int, int]  # mtime_ns, size and inode of a file, size and inode of its twin


def stamp_of(doc: os.stat_result, twin: os.stat_result) -> Stamp | None:
    """The stamp of a document's file and twin as found, None unless both are regular files
    written together (a hand-edited or truncated file no longer has the stamp recorded)."""
    if not (stat.S_ISREG(doc.st_mode) and stat.S_ISREG(twin.st_mode)) or doc.st_mtime_ns != twin.st_mtime_ns:
        return None
    return (doc.st_mtime_ns, doc.st_size, doc.st_ino, twin.st_size, twin.st_ino)


_N = r"(0|[1-9][0-9]{0,18})"
_STRING = r'"([^"\\\x00-\x1f]*(?:\\.[^"\\\x00-\x1f]*)*)"'
# A record as ManifestWriter writes it; anything else is parsed as JSON (and most likely refused).
_LINE = re.compile(rf'\[{_STRING}, "((?:[0-9a-f]{{32}})?)", "([0-9a-f]{{32}})", {", ".join([_N] * 5)}\]')
Fields = tuple[str, str, str, Stamp]  # a record's path, key, ETag and stamp


def _parse(text: str) -> Fields | None:
    """The record on one line: the common form read by one regular expression (a million lines
    take seconds less than through ``json``), checked like any other."""
    found = _LINE.fullmatch(text)
    if found is None:
        record = _record(json.loads(text))
        return None if record is None else (record.rel, record.key, record.etag, record.stamp)
    rel, key, etag, *numbers = found.groups()
    if "\\" in rel:
        rel = json.loads(f'"{rel}"')
    mtime_ns, size, ino, gz_size, gz_ino = map(int, numbers)
    stamp = (mtime_ns, size, ino, gz_size, gz_ino)
    if not is_relative_path(rel) or rel in BOOKKEEPING or max(stamp) >= _INT_MAX:
        return None
    return rel, key, etag, stamp


def _record(fields: object) -> Record | None:
    if not isinstance(fields, list) or len(fields) != 8:
        return None
    rel, key, etag, *numbers = fields
    if not is_relative_path(rel) or rel in BOOKKEEPING:
        return None
    if not isinstance(key, str) or (key and not _HEX32.fullmatch(key)):
        return None
    if not isinstance(etag, str) or not _HEX32.fullmatch(etag):
        return None
    if list(map(type, numbers)) != _INTS or min(numbers) < 0 or max(numbers) >= _INT_MAX:
        return None
    return Record(rel, key, etag, *numbers)


class Digests:
    """A set of 64-bit digests (``hash()`` of this process) that a million entries fill with
    8 bytes each, and optionally 16 bytes of payload each (an ETag): sorted arrays in 256
    buckets, searched by bisection."""

    def __init__(self, payload: bool = False) -> None:
        self._keys = [array("q") for _ in range(256)]
        self._values: list[bytearray] | None = [bytearray() for _ in range(256)] if payload else None
        self._sorted = False

    def add(self, digest: int, value: bytes = b"") -> None:
        self._keys[digest & 0xFF].append(digest)
        if self._values is not None:
            self._values[digest & 0xFF] += value.ljust(16, b"\0")[:16]
        self._sorted = False

    def seal(self) -> bool:
        """Sort for look-ups; False if some digest came twice (a path listed twice)."""
        unique = True
        for i, keys in enumerate(self._keys):
            if self._values is None:
                self._keys[i] = array("q", sorted(keys))
            else:
                order = sorted(range(len(keys)), key=keys.__getitem__)
                self._keys[i] = array("q", [keys[j] for j in order])
                old = self._values[i]
                self._values[i] = bytearray(b"".join([old[j * 16 : j * 16 + 16] for j in order]))
            unique = unique and len(set(keys)) == len(keys)
        self._sorted = True
        return unique

    def _find(self, digest: int) -> int:
        assert self._sorted, "seal() first"
        keys = self._keys[digest & 0xFF]
        i = bisect_left(keys, digest)
        return i if i < len(keys) and keys[i] == digest else -1

    def __contains__(self, digest: int) -> bool:
        return self._find(digest) >= 0

    def get(self, digest: int) -> bytes | None:
        i = self._find(digest)
        if i < 0 or self._values is None:
            return None
        return bytes(self._values[digest & 0xFF][i * 16 : i * 16 + 16])

    def __len__(self) -> int:
        return sum(len(k) for k in self._keys)


def file_digest(rel: str) -> int:
    return hash(("file", rel))


def key_digest(rel: str, key: str, found: Stamp) -> int:
    return hash(("key", rel, key, found))


def bytes_digest(rel: str, etag: str, found: Stamp) -> int:
    return hash(("bytes", rel, etag, found))


def stamp_digest(rel: str, mtime_ns: int, size: int, ino: int) -> int:
    return hash(("stamp", rel, mtime_ns, size, ino))


@dataclass
class Manifest:
    """What an earlier export says it wrote: every file (``in``), and per document what lets
    the next build reuse it (version 2; a version 1 manifest lists files only)."""

    version: int
    files: Digests = field(default_factory=Digests)
    by_key: Digests = field(default_factory=lambda: Digests(payload=True))  # -> the ETag
    by_bytes: Digests = field(default_factory=Digests)
    documents: int = 0
    mark: dict[str, object] | None = None  # version 3: where the export stands in the index
    identity: tuple[int, int, int, int] = (0, 0, 0, 0)  # the file read: device, inode, size, mtime
    light: bool = False  # read for an update: only each file's path and stamp (``stamps``)
    stamps: Digests = field(default_factory=Digests)

    def __contains__(self, rel: str) -> bool:
        return rel in BOOKKEEPING or file_digest(rel) in self.files

    def reusable(self, rel: str, key: str, found: Stamp) -> str | None:
        """The ETag of the file found with ``found`` if it is the one recorded with ``key``."""
        etag = self.by_key.get(key_digest(rel, key, found)) if key else None
        return etag.hex() if etag is not None else None

    def same_bytes(self, rel: str, etag: str, found: Stamp) -> bool:
        return bytes_digest(rel, etag, found) in self.by_bytes


def _header(mark: Mapping[str, object]) -> str:
    shown = json.dumps(mark, ensure_ascii=False, sort_keys=True)
    return _HEADER_START.decode() + shown + _HEADER_END.decode()


class ManifestWriter:
    """Writes a version 3 manifest one record at a time (a million of them never sit in memory)."""

    def __init__(self, path: Path, mark: Mapping[str, object]) -> None:
        self._file = path.open("w", encoding="utf-8")
        self._file.write(_header(mark))
        self._pending: str | None = None

    def add(self, record: Record) -> None:
        self.add_line(record.line())

    def add_line(self, line: str) -> None:
        """A record as another manifest of ours wrote it (see :func:`record_lines`)."""
        if self._pending is not None:
            self._file.write(self._pending + ",\n")
        self._pending = line

    def close(self) -> None:
        if self._pending is not None:
            self._file.write(self._pending + "\n")
        self._file.write(_FOOTER)
        self._file.close()

    def abandon(self) -> None:
        self._file.close()


def manifest_bytes(records: Iterable[Record], mark: Mapping[str, object] | None = None) -> bytes:
    """A whole manifest (tests, small exports): version 3, or version 2 without a mark."""
    lines = [r.line() for r in records]
    header = _HEADER_V2 if mark is None else _header(mark)
    return (header + ",\n".join(lines) + ("\n" if lines else "") + _FOOTER).encode()


def _open_regular(path: Path) -> io.BufferedReader | None:
    """``path`` opened for reading if it is a regular file; None for anything else (a FIFO
    would block, a symlink may point anywhere)."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def _read_regular(path: Path, limit: int) -> bytes | None:
    """Up to ``limit + 1`` bytes of a regular file; None for anything else."""
    handle = _open_regular(path)
    if handle is None:
        return None
    with handle:
        return handle.read(limit + 1)


def read_manifest(folder: Path, light: bool = False) -> Manifest | None:
    """What an export in ``folder`` says it wrote, or None when it is not provably an export.

    Anything unexpected counts as "not an export": the manifest decides what gets deleted and
    which files are reused unread, so a hand-edited, truncated or planted one must never be
    trusted. Reading costs at most one pass over the file, in bounded lines.

    ``light`` (a version 3 manifest, for a build that updates the spare): only each file's path
    and stamp is kept, for :func:`walk` to tell whether every one is still as written; a file
    of ours found otherwise means a full read after all. :func:`with_records` adds what reusing
    a few files needs.
    """
    handle = _open_regular(folder / MANIFEST)
    if handle is None:
        return None
    with handle:
        first = handle.readline(_MARK_LIMIT)
        if first == _HEADER_V2.encode():
            return _read_v2(handle, 2)
        if first.startswith(_HEADER_START) and first.endswith(_HEADER_END):
            mark = _mark(first[len(_HEADER_START) : -len(_HEADER_END)])
            manifest = _read_v2(handle, FORMAT_VERSION, light) if mark is not None else None
            if manifest is not None:
                st = os.fstat(handle.fileno())
                manifest.mark = mark
                manifest.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            return manifest
        handle.seek(0)
        return _read_v1(handle.read(_MANIFEST_LIMIT + 1))


def _mark(raw: bytes) -> dict[str, object] | None:
    try:
        mark = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return mark if isinstance(mark, dict) else None


def read_mark(folder: Path) -> dict[str, object] | None:
    """The mark on a version 3 manifest's first line, without reading its records."""
    handle = _open_regular(folder / MANIFEST)
    if handle is None:
        return None
    with handle:
        first = handle.readline(_MARK_LIMIT)
    if not (first.startswith(_HEADER_START) and first.endswith(_HEADER_END)):
        return None
    return _mark(first[len(_HEADER_START) : -len(_HEADER_END)])


def record_lines(folder: Path, manifest: Manifest) -> Iterator[tuple[str, str]]:
    """(the record's path as JSON, the record's line) of every record of the version 3 manifest
    ``manifest`` was read from, once more, for a build that takes most of them over as they are.
    The file must be the one read then (:class:`ExportRefused` otherwise), so the records are
    those that were checked; the path is cut from each line, not parsed again."""
    handle = _open_regular(folder / MANIFEST)
    if handle is None:
        raise ExportRefused(f"{folder / MANIFEST} changed while the export was rebuilt; build again")
    with handle:
        st = os.fstat(handle.fileno())
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != manifest.identity:
            raise ExportRefused(f"{folder / MANIFEST} changed while the export was rebuilt; build again")
        handle.readline(_MARK_LIMIT)
        end = _FOOTER.encode()
        for raw in handle:
            if raw == end:
                return
            line = raw.decode().rstrip("\n").removesuffix(",")
            # A JSON string's quotes inside are escaped, so the first '", "' ends the path.
            yield line[1 : line.index('", "') + 1], line


def _read_v1(raw: bytes) -> Manifest | None:
    try:
        data = json.loads(raw) if len(raw) <= _MANIFEST_LIMIT else None
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(data, dict) or set(data) != {"generator", "version", "files"}:
        return None
    files, version = data["files"], data["version"]
    if data["generator"] != GENERATOR or type(version) is not int or version != 1:
        return None
    if not isinstance(files, list) or not all(is_relative_path(rel) for rel in files):
        return None
    if BOOKKEEPING & set(files):
        return None
    manifest = Manifest(version=1)
    for rel in files:
        manifest.files.add(file_digest(rel))
    if not manifest.files.seal():
        return None
    manifest.by_key.seal()
    manifest.by_bytes.seal()
    return manifest


def _read_v2(handle: io.BufferedReader, version: int, light: bool = False) -> Manifest | None:
    manifest = Manifest(version=version, light=light)
    end = _FOOTER.encode()
    line = handle.readline(_LINE_LIMIT)
    while line != end:
        if not line.endswith(b"\n") or manifest.documents >= _RECORDS_LIMIT:
            return None  # truncated, a line longer than any record, or more than any export
        text = line[:-1]
        more = text.endswith(b",")
        try:
            fields = _parse((text[:-1] if more else text).decode())
        except ValueError:  # includes UnicodeDecodeError
            return None
        if fields is None:
            return None
        manifest.documents += 1
        rel, key, etag, stamp = fields
        if light:  # a file of ours found otherwise sends the build to a full read anyway
            manifest.stamps.add(stamp_digest(rel, stamp[0], stamp[1], stamp[2]))
            manifest.stamps.add(stamp_digest(rel + ".gz", stamp[0], stamp[3], stamp[4]))
        else:
            manifest.files.add(file_digest(rel))
            manifest.files.add(file_digest(rel + ".gz"))
            _add_record(manifest, Record(rel, key, etag, *stamp))
        line = handle.readline(_LINE_LIMIT)
        if more == (line == end):
            return None  # a comma before the end, or a record without one before another
    if handle.read(1):
        return None  # anything after the end
    if not manifest.files.seal():
        return None  # a file listed twice (light: then some file is not as listed, see walk)
    manifest.by_key.seal()
    manifest.by_bytes.seal()
    manifest.stamps.seal()
    return manifest


def _add_record(manifest: Manifest, record: Record) -> None:
    if record.key:
        manifest.by_key.add(key_digest(record.rel, record.key, record.stamp), bytes.fromhex(record.etag))
    manifest.by_bytes.add(bytes_digest(record.rel, record.etag, record.stamp))


def with_records(folder: Path, manifest: Manifest, rels: Iterable[str]) -> Manifest:
    """A light ``manifest`` with what reusing the files of ``rels`` needs (their records, read
    again from the same file)."""
    wanted = {json.dumps(rel, ensure_ascii=False) for rel in rels}
    found = Manifest(manifest.version, documents=manifest.documents, mark=manifest.mark)
    found.identity = manifest.identity
    for encoded, line in record_lines(folder, manifest):
        fields = _parse(line) if encoded in wanted else None
        if fields is not None:
            found.files.add(file_digest(fields[0]))
            found.files.add(file_digest(fields[0] + ".gz"))
            _add_record(found, Record(fields[0], fields[1], fields[2], *fields[3]))
    found.files.seal()
    found.by_key.seal()
    found.by_bytes.seal()
    return found


# -- walking a tree without following links -------------------------------------------------------


@dataclass
class Tree:
    files: list[str] = field(default_factory=list)  # everything but real folders, symlinks included
    dirs: dict[str, int] = field(default_factory=dict)  # folder -> mode, parents before children
    empty: list[str] = field(default_factory=list)
    mtimes: dict[str, int] = field(default_factory=dict)  # folder -> mtime when walked
    top: int | None = None  # the mtime of the folder walked
    untouched: bool = False  # walked with a light manifest: every file it lists found as written


def scan(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry under ``root``, folders before what they hold, links not followed.

    A folder's listing is read as it goes (a million articles are one folder), never held.
    """
    stack: list[tuple[str, str]] = [("", os.fspath(root))]
    while stack:
        prefix, folder = stack.pop()
        below: list[tuple[str, str]] = []
        with os.scandir(folder) as listing:
            for entry in listing:
                rel = prefix + entry.name
                yield rel, entry
                if entry.is_dir(follow_symlinks=False):
                    below.append((rel + "/", entry.path))
        stack.extend(reversed(below))


def scan_files(root: Path, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """:func:`scan` of the folder ``prefix`` (ending in "/") under ``root``, named from ``root``."""
    try:
        if not stat.S_ISDIR((root / prefix).lstat().st_mode):
            return
    except OSError:
        return
    for rel, entry in scan(root / prefix):
        yield prefix + rel, entry


def walk(root: Path, skip: Callable[[str], bool] | None = None, checked: Manifest | None = None) -> Tree:
    """The tree under ``root``; files for which ``skip`` says True are left out (not held).

    ``checked``: a light manifest of ``root``, whose files are compared with their records on
    the way (one ``lstat`` each, which the walk makes anyway): ``untouched`` says whether every
    one was found as written."""
    tree = Tree(top=folder_mtime(root))
    has_entries: set[str] = set()
    found = 0
    for rel, entry in scan(root):
        parent = rel.rpartition("/")[0]
        if parent:
            has_entries.add(parent)
        if entry.is_dir(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            tree.dirs[rel] = st.st_mode
            tree.mtimes[rel] = st.st_mtime_ns
        elif (
            checked is not None and entry.is_file(follow_symlinks=False) and _as_written(rel, entry, checked)
        ):
            found += 1
        elif skip is None or not skip(rel):
            tree.files.append(rel)
    tree.untouched = checked is not None and found == 2 * checked.documents
    tree.files.sort()
    tree.empty = sorted(d for d in tree.dirs if d not in has_entries)
    return tree


def _as_written(rel: str, entry: os.DirEntry[str], manifest: Manifest) -> bool:
    st = entry.stat(follow_symlinks=False)
    return stamp_digest(rel, st.st_mtime_ns, st.st_size, st.st_ino) in manifest.stamps


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


def spare_folder(out: Path) -> Path:
    """Where the export replaced last time is kept: the next build updates it in place (a few
    files) instead of linking a whole new tree, then swaps it in."""
    return out.parent / f".{out.name}.feeds-spare"


def keep_spare(old: Path, out: Path, ours: Manifest | None, foreign: Tree, useful: bool) -> bool:
    """Keep ``old``, the export just replaced, as the next build's spare; False (nothing kept,
    ``old`` as it was but for entries ``out`` provably holds) when it is not exactly ours.

    The spare must hold nothing but files its manifest lists: what was not ours (``foreign``,
    as surveyed before the build) went into ``out`` by hard links and is removed from ``old``
    only when ``out`` still holds the same file. A folder changed since the survey (a file
    written into the export during the build) or a symlink means it is not exactly ours.
    ``useful``: whether the next build can bring it up to date (it is an export of the same
    index and code as ``out``); one it cannot would only be deleted then.
    """
    if not useful or ours is None or ours.mark is None:
        return False
    if (
        foreign.top is None
        or folder_mtime(old) != foreign.top
        or any(folder_mtime(old / rel) != mtime for rel, mtime in foreign.mtimes.items())
    ):
        log.info("not keeping %s for the next build: it changed while the export was rebuilt", old)
        return False
    for rel in foreign.files:
        if not same_entry(old / rel, out / rel) or (old / rel).is_symlink():
            log.info("not keeping %s for the next build: %s is not ours", old, rel)
            return False
        (old / rel).unlink()
    for rel in sorted(foreign.dirs, reverse=True):  # what is left empty held foreign files only
        with contextlib.suppress(OSError):
            (old / rel).rmdir()
    spare = spare_folder(out)
    if os.path.lexists(spare):
        if not spare.is_dir() or spare.is_symlink() or not has_marker(spare):
            log.warning("%s is not a spare export of feeds; the next build links every file", spare)
            return False
        discard_old(spare, out)
        if os.path.lexists(spare):
            return False
    os.replace(old, spare)
    return True


def manifest_identity(folder: Path) -> tuple[int, int, int, int] | None:
    """Which file ``folder``'s manifest is now (compared with :attr:`Manifest.identity`)."""
    try:
        st = (folder / MANIFEST).lstat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def folder_mtime(path: Path) -> int | None:
    """A folder's mtime (None: not a folder): it moves when a name in it is added or removed."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st.st_mtime_ns if stat.S_ISDIR(st.st_mode) else None


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


def discard_old(old: Path, out: Path, ours: Manifest | None = None) -> None:
    """Delete from ``old`` what we wrote or what ``out`` provably holds; set aside what stays.

    ``ours``: the manifest of ``old`` when the caller read it already. The manifest and the
    marker go last, so a build killed in here leaves a folder the next build still recognises
    and finishes. What stays is the operator's: symlinks, which are
    never carried into a new export, and files that changed in ``out`` while it was rebuilt
    (in neither tree). Their folder is renamed out of our naming scheme, so no later build
    touches it, and the operator is told where it is.
    """
    mine: Manifest | frozenset[str] = ours or read_manifest(old) or BOOKKEEPING
    kept: list[str] = []
    links: list[str] = []
    dirs: list[str] = []
    for rel, entry in scan(old):
        if entry.is_dir(follow_symlinks=False):
            dirs.append(rel)
            continue
        if rel in BOOKKEEPING:
            continue
        try:
            if rel in mine or same_entry(old / rel, out / rel):
                (old / rel).unlink()
                continue
            is_link = entry.is_symlink()
        except OSError:  # the new export is in place: report what could not go, never fail
            is_link = False
        (links if is_link else kept).append(rel)
    links.sort()
    kept.sort()
    for rel in reversed(dirs):
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
