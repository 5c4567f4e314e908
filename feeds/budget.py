"""The polling budget (``polling:``): how soon one client may ask for one document again.

A client is the peer's address, or, when the peer is one of ``polling.proxies``, the right-most
address of X-Forwarded-For that is not itself a trusted proxy (a client may write anything to
the left of what the proxy appends; the header of anyone else is never read; a malformed entry
means the peer). A request whose client cannot be told (the peer is no IP address: a unix
socket) is never refused.

One slot per (client, document) in a :class:`Table` of :data:`SLOTS` slots that the workers of
a state folder share: where a hash of the pair puts it, the slot holds a 64-bit fingerprint of
the pair and the time of the client's last request that was let through, stored as ``time XOR
fingerprint``. A request is refused when its slot holds its own fingerprint and a time less
than the interval ago (the interval of *this* request's kind: with If-None-Match or
If-Modified-Since it is conditional); otherwise it is let through and written. A refused
request writes nothing, so a client polling too fast is let through once per interval.

Why a client within its budget is never refused:

* Another client's record in the same slot has another fingerprint: it is overwritten (the
  newest wins), and the client it belonged to is let through once more. A full table forgets;
  it never mistakes one client for another (two pairs share a fingerprint with odds of 2**-63,
  and finding an address that shares a victim's means inverting BLAKE2b).
* Two workers deciding at once for one client may both read the old record and both let the
  request through: a race can only let a request through, never refuse one.
* A slot read while another worker writes it may come back half old, half new (its two words
  are two stores). The fingerprint then fails, or the time, un-XORed with a fingerprint it was
  not written with, lands outside the last interval (odds of landing inside below 2**-37 for
  the longest interval): no record. The same holds for damaged contents.
* The time is ``CLOCK_MONOTONIC`` in milliseconds, one clock for every process of the machine,
  never stepped; the table lives in ``/dev/shm``, emptied at boot, so no time of an earlier
  boot is ever read.

Memory is the table's 4 MiB, whatever the number of clients; no lock, no clean-up.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
import mmap
import os
import socket
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import Polling

log = logging.getLogger(__name__)
# Documents that programs poll: every feed format, archive pages, the OPML list, sitemaps and
# robots.txt. HTML pages are for people, who reload them; static files and pictures are asked
# for by every page view; /healthz and /metrics are no documents.
POLLED = frozenset({"feed", "archive", "opml", "robots", "sitemap", "sitemappage", "newssitemap"})
SLOTS = 1 << 18  # 4 MiB of (fingerprint, time) pairs
SHARED_MEMORY = Path("/dev/shm")  # RAM, emptied at boot; systemd's RemoveIPC= empties it at stop
FORWARDED_HOPS = 16  # X-Forwarded-For entries looked at, right to left
PEERS_KEPT = 4096  # peer addresses whose parse is remembered
HEADER = struct.Struct("<16sQ40x")  # magic, slot count; the slots start on a cache line
MAGIC = b"feeds polling v1"
_V4_MAPPED = bytes(10) + b"\xff\xff"
_OPEN = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO never blocks the open
Networks = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]  # IPv4's, IPv6's


@dataclass(frozen=True)
class _Seen:
    """Peers seen under one ``polling.proxies``: each with its address and whether it is a proxy."""

    proxies: tuple[str, ...]
    trusted: Networks
    peers: dict[str, tuple[bytes | None, bool]]


class Budget:
    """One worker's side of the polling budget; the table is opened by the first polled request."""

    def __init__(
        self,
        state_dir: Path | None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        slots: int = SLOTS,
        memory: Path = SHARED_MEMORY,
    ) -> None:
        self._path = table_path(state_dir, memory) if state_dir is not None else None
        self._clock = clock
        self._count = slots
        self._table: Table | None = None
        self._open_lock = threading.Lock()  # one thread opens the table
        self._seen = _Seen((), ((), ()), {})

    def wait(self, environ: Mapping[str, Any], path: str, polling: Polling) -> int:
        """Whole seconds this request's client must wait before asking for ``path`` again;
        0 when it is within its budget (and the request is recorded)."""
        client = self.client(environ, polling.proxies)
        if client is None:
            return 0
        conditional = "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ
        interval = 1000 * (polling.conditional if conditional else polling.unconditional)
        key = path.encode(errors="surrogateescape") + b"\0" + client  # no document path has a NUL
        digest = int.from_bytes(hashlib.blake2b(key, digest_size=16).digest(), "little")
        mark = (digest >> 64) | 1  # never 0, the empty slot's
        index = 2 * (digest % self._count)
        words = (self._table or self._open()).words
        now = self._clock() // 1_000_000
        if words[index] == mark:
            elapsed = now - (words[index + 1] ^ mark)
            if 0 <= elapsed < interval:
                return -(-(interval - elapsed) // 1000)
        words[index] = mark
        words[index + 1] = now ^ mark
        return 0

    def client(self, environ: Mapping[str, Any], proxies: tuple[str, ...]) -> bytes | None:
        """The client's address (packed, IPv4-mapped as IPv4): the peer's, or the one a trusted
        proxy forwarded; None when the peer is no IP address."""
        seen = self._seen
        if seen.proxies is not proxies:  # the first request, or a reloaded config
            seen = self._seen = _Seen(proxies, _networks(proxies), {})
        peer = environ.get("REMOTE_ADDR") or ""
        known = seen.peers.get(peer)
        if known is None:
            if len(seen.peers) >= PEERS_KEPT:
                seen.peers.clear()
            address = packed(peer.split("%")[0])
            known = seen.peers[peer] = (address, address is not None and _within(address, seen.trusted))
        address, proxy = known
        if proxy:
            return forwarded(environ.get("HTTP_X_FORWARDED_FOR"), seen.trusted) or address
        return address

    @property
    def shared(self) -> bool:
        """Whether the workers share the table (False: this process keeps its own)."""
        return (self._table or self._open()).where is not None

    def _open(self) -> Table:
        with self._open_lock:
            if self._table is None:
                self._table = Table.open(self._path, self._count)
            return self._table


class Table:
    """``count`` slots of two unsigned 64-bit words, (0, 0) until written, in shared memory.

    Mapped from a file in ``/dev/shm`` that the workers of one state folder share (``where``),
    or, without one, from this process's memory (``where`` None): then each worker judges
    alone, and a client may get one request through per worker and interval.
    """

    def __init__(self, words: memoryview, where: Path | None) -> None:
        self.words = words
        self.where = where

    @classmethod
    def open(cls, path: Path | None, count: int) -> Table:
        """The table in the file ``path`` (made if missing), or in memory when that cannot be:
        one log line says why."""
        size = HEADER.size + 16 * count
        if path is not None:
            try:
                return cls(_words(_mapped(path, count, size)), path)
            except OSError as exc:
                reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or exc
                log.warning(
                    "polling budget: %s cannot hold the table of recent clients (%s); each worker "
                    "keeps its own in memory",
                    path,
                    reason,
                )
        return cls(_words(mmap.mmap(-1, size)), None)


def table_path(state_dir: Path, memory: Path = SHARED_MEMORY) -> Path:
    """The table of a state folder: one per folder and user, named by both."""
    folder = hashlib.blake2b(os.fsencode(os.path.realpath(state_dir)), digest_size=8).hexdigest()
    return memory / f"feeds-polling-{os.geteuid()}-{folder}"


def forwarded(header: str | None, trusted: Networks) -> bytes | None:
    """The right-most address of X-Forwarded-For that is not a trusted proxy; the left-most
    looked at when all are; None without a header or for a malformed entry (then the peer)."""
    if not header:
        return None
    if "," not in header:  # the usual case: one reader, named by one proxy
        found = packed(header.strip())
        return found if found is not None else packed(_host(header.strip()))
    rest, found = header, None
    for _ in range(FORWARDED_HOPS):
        if not rest:
            break
        rest, _, entry = rest.rpartition(",")
        entry = entry.strip()
        found = packed(entry) or packed(_host(entry))
        if found is None or not _within(found, trusted):
            break
    return found


def packed(text: str) -> bytes | None:
    """An IP address as 4 or 16 bytes, an IPv4-mapped IPv6 one as IPv4; None if it is none."""
    try:
        if ":" not in text:
            return socket.inet_pton(socket.AF_INET, text)
        found = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return None
    return found[12:] if found[:12] == _V4_MAPPED else found


def _host(entry: str) -> str:
    """An entry without the port some proxies append (``[2001:db8::1]:80``, ``192.0.2.1:80``)."""
    if entry.startswith("["):
        return entry[1 : entry.find("]")]
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry


def _within(address: bytes, networks: Networks) -> bool:
    number = int.from_bytes(address, "big")
    for net, mask in networks[len(address) == 16]:
        if number & mask == net:
            return True
    return False


@lru_cache(maxsize=8)
def _networks(networks: tuple[str, ...]) -> Networks:
    """IPv4 and IPv6 networks as (network, mask) integers; an IPv4-mapped one as IPv4."""
    found: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])
    for text in networks:
        network = ipaddress.ip_network(text)
        mapped = getattr(network.network_address, "ipv4_mapped", None)
        if mapped is not None and network.prefixlen >= 96:  # ::ffff:10.0.0.0/104 is 10.0.0.0/8
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        found[network.version == 6].append((int(network.network_address), int(network.netmask)))
    return tuple(found[0]), tuple(found[1])


def _words(memory: mmap.mmap) -> memoryview:
    return memoryview(memory).cast("Q")[HEADER.size // 8 :]


def _mapped(path: Path, count: int, size: int) -> mmap.mmap:
    """The file mapped, after checking that it is ours; made first if missing."""
    try:
        fd = os.open(path, _OPEN)
    except FileNotFoundError:
        fd = _create(path, count, size)
    try:
        _check(fd, count, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _create(path: Path, count: int, size: int) -> int:
    """Made under a private name and linked into place whole; the first worker's file wins."""
    made, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.pwrite(made, HEADER.pack(MAGIC, count), 0)
        os.ftruncate(made, size)
        os.link(name, path)
    except FileExistsError:  # another worker was first: use its file
        os.close(made)
        return os.open(path, _OPEN)
    except BaseException:
        os.close(made)
        raise
    finally:
        os.unlink(name)
    return made


def _check(fd: int, count: int, size: int) -> None:
    """Ours: a regular file of this user that nobody else may write, of the table's size and
    with its header (a file of another size would be mapped past its end)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise OSError(0, "it is not a regular file of this user that only this user may write")
    if info.st_size != size or os.pread(fd, HEADER.size, 0) != HEADER.pack(MAGIC, count):
        raise OSError(0, f"it is not a table of {count} slots")
