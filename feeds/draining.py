"""A worker about to be replaced closes each connection after its answer.

On a reload (SIGHUP) granian starts a new worker, then stops an old one a few seconds later
(``--respawn-interval``); gunicorn does the same with all of them. The old worker's keep-alive
connections are closed when it stops, and a request a client sends on one at that moment gets
no answer: a read error for wrk, a failed poll for a reader that does not retry. So a worker
that sees a newer worker of its server (another child of its parent, started after it) answers
with ``Connection: close`` for :data:`DRAIN` seconds: each client reconnects after its answer,
to whichever worker listens, and no request is in flight on a connection being closed.

A worker respawned after a crash makes the older ones close connections for a while too, which
costs their clients one connection per request for those seconds and nothing else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

DRAIN = 15.0  # seconds: longer than granian's respawn interval and kill timeout together (5 + 5)
LOOK = 1.0  # seconds between looks at the worker's siblings (one look: a few /proc reads)
CHILDREN_MAX = 1024  # siblings looked at, at most
Look = Callable[[], frozenset[int]]
StartResponse = Callable[..., Any]


def _stat(pid: int) -> tuple[int, int] | None:
    """A process's parent and start time (clock ticks since boot); None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        fields = text.rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _command(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()[:65536]
    except OSError:
        return None


def newer_siblings(pid: int | None = None) -> frozenset[int]:
    """Other workers of this process's server started after it (children of its parent with
    the same command line; none without a server parent)."""
    pid = os.getpid() if pid is None else pid
    me, command = _stat(pid), _command(pid)
    if me is None or me[0] <= 1 or command is None:
        return frozenset()
    parent, started = me
    children: set[int] = set()
    for task in Path(f"/proc/{parent}/task").glob("*/children"):  # a child is listed under its forking thread
        try:
            children.update(int(word) for word in task.read_text(encoding="ascii").split()[:CHILDREN_MAX])
        except (OSError, ValueError):
            continue
    newer = set()
    for child in sorted(children - {pid})[:CHILDREN_MAX]:
        found = _stat(child)
        if found is not None and found[0] == parent and found[1] > started and _command(child) == command:
            newer.add(child)
    return frozenset(newer)


class Draining:
    """WSGI middleware: ``Connection: close`` on every answer while a newer sibling is new.

    Request threads share it without a lock: a look is a few reads, two threads looking at the
    same moment find the same, and each attribute is replaced whole.
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        *,
        look: Look = newer_siblings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._look = look
        self._clock = clock
        self._pid = os.getpid()
        # The workers the server starts with are all spawned before any has loaded the app:
        # what appears after this look replaces one of them.
        self._known: frozenset[int] | None = look()
        self._next = 0.0
        self._until = float("-inf")

    def closing(self) -> bool:
        now = self._clock()
        if now >= self._next:
            self._next = now + LOOK
            if self._pid != os.getpid():  # forked from a preloaded app: its first look is now
                self._pid, self._known, self._until = os.getpid(), None, float("-inf")
            newer = self._look()
            if self._known is not None and newer - self._known:
                self._until = now + DRAIN
            self._known = newer
        return now < self._until

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.closing():
            return self.app(environ, start_response)

        def closing(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("Connection", "close")], exc_info)

        return self.app(environ, closing)
