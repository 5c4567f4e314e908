"""Logging: one line per event, and nothing a client or a file name sends can forge a line.

Request paths arrive percent-decoded and file names may hold any byte but NUL and '/', so a
``%0a`` in a URL or a newline in an article's name would start a fake log line, and ``%1b``
would send escape sequences to the operator's terminal. Everything interpolated into a log line
goes through :func:`printable` (as Werkzeug's development server does for its own log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

_ESCAPES = str.maketrans(
    {"\\": "\\\\", **{chr(c): f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}}
)
StartResponse = Callable[..., Any]


def printable(value: object) -> str:
    """``value`` as text with control characters (and backslashes) escaped."""
    return str(value).translate(_ESCAPES)


class _Printable(logging.Formatter):
    """Escapes what is interpolated into a message (paths, names, request lines).

    The format strings are the program's own (and may style their text, as Werkzeug's do);
    tracebacks keep their newlines.
    """

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple):
            record = logging.makeLogRecord(record.__dict__)
            record.args = tuple(printable(a) if isinstance(a, str) else a for a in args)
        return super().format(record)


def configure(level: int = logging.INFO) -> None:
    """One line per event on stderr, unless the server (or a test) configured logging already."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_Printable("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


class AccessLog:
    """One line per request (method, path, status, bytes, milliseconds) on ``feeds.access``.

    For servers whose own access log lacks bytes or time (granian); gunicorn's can do both.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.log = logging.getLogger("feeds.access")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["-"]

        def recording(code: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, *args)

        chunks = list(self.app(environ, recording))
        self.log.info(
            '%s "%s %s" %s %d %.2fms',
            printable(environ.get("REMOTE_ADDR", "-")),
            printable(environ.get("REQUEST_METHOD")),
            printable(environ.get("PATH_INFO")),
            status[0],
            sum(len(c) for c in chunks),
            (time.perf_counter() - started) * 1000,
        )
        return chunks
