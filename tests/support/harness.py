"""The one harness of the benchmark, the soak and the tests: servers as real processes on loopback.

Contains no measurement. The tests import it as ``support.harness`` (pytest puts ``tests/`` on
``sys.path``: the folder has no ``__init__.py``); the scripts under ``bench/`` put ``tests/`` on
``sys.path`` themselves. Tests never import from ``bench/``, so the harness lives here.

    with start(production_command, tmp / "server.log", config=site / "config.yaml") as server:
        reply = server.fetch("/feeds/alle.rss", {"Accept-Encoding": "gzip"})

``start`` picks a free port, runs the command in its own process group with the feeds
environment and a log file, and waits until ``/healthz`` answers 200; leaving the ``with``
block (or ``stop``) ends the whole group.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's scripts: granian, gunicorn, feeds
HOST = "127.0.0.1"
Command = Callable[[int], list[str]]  # a port in, a server command out
Headers = Mapping[str, str] | None


class ServerError(RuntimeError):
    """A server exited or never became ready; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- server commands ---------------------------------------------------------------------------


def production_command(
    port: int,
    workers: int = 2,
    *,
    app: str = "feeds:create_app",
    factory: bool = True,
    extra: Sequence[str] = (),
) -> list[str]:
    """granian as the README's Production section runs it: the one place for its flags.

    ``app``/``factory`` swap in another WSGI callable (the benchmark's bare yardstick) under
    the same server settings.
    """
    return [
        *(str(BIN / "granian"), "--interface", "wsgi"),
        *(["--factory"] if factory else []),
        *("--workers", str(workers), "--host", HOST, "--port", str(port)),
        *("--workers-kill-timeout", "5", "--respawn-failed-workers", "--respawn-interval", "5"),
        *extra,
        app,
    ]


def gunicorn_command(
    port: int,
    workers: int = 2,
    *,
    threads: int = 0,
    app: str = "feeds:create_app()",
    extra: Sequence[str] = (),
) -> list[str]:
    """gunicorn, sync workers (gthread with ``threads``), as the README's alternative."""
    # gunicorn 27 opens a control socket at a fixed path in $HOME: servers side by side would
    # fight over it, and a test should leave nothing behind.
    control = ["--no-control-socket"] if int(version("gunicorn").split(".")[0]) >= 27 else []
    gthread = ["--worker-class", "gthread", "--threads", str(threads)] if threads else []
    return [
        *(sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}", "--workers", str(workers)),
        *control,
        *gthread,
        *extra,
        app,
    ]


SERVERS: dict[str, Command] = {"granian": production_command, "gunicorn": gunicorn_command}


# -- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes  # as sent: never decompressed


def fetch(
    port: int,
    path: str,
    headers: Headers = None,
    *,
    method: str = "GET",
    timeout: float = 10.0,
    source: str | None = None,
) -> Reply:
    """One request on a fresh connection (so any worker may answer), from the loopback address
    ``source`` if given (any of 127.0.0.0/8: another client). Raises OSError (a timeout is
    ``TimeoutError``) or ``http.client.HTTPException``."""
    bind = (source, 0) if source is not None else None
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout, source_address=bind)
    try:
        conn.request(method, path, headers=dict(headers or {}))
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


@dataclass
class Server:
    """A server started by :func:`start`; a context manager that stops it."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path  # stdout and stderr
    grace: float = 10.0  # seconds between SIGTERM and SIGKILL

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def fetch(self, path: str, headers: Headers = None, **options: Any) -> Reply:
        """:func:`fetch` from this server (``method``, ``timeout``, ``source``)."""
        return fetch(self.port, path, headers, **options)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def workers(self) -> list[int]:
        """Worker processes (every descendant); the server itself if it has none."""
        return descendants(self.process.pid) or [self.process.pid]

    def memory(self) -> dict[int, Memory]:
        """Memory of the whole process tree: the server first, then each descendant."""
        return {pid: memory(pid) for pid in (self.process.pid, *descendants(self.process.pid))}

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stop(self)


def start(
    command: Command,
    log: Path,
    *,
    config: Path | None = None,
    state_dir: Path | None = None,
    watch: bool = True,
    env: Mapping[str, str] | None = None,
    ready: str | None = "/healthz",
    timeout: float = 60.0,
    grace: float = 10.0,
    memory_limit: int | None = None,
    cwd: Path = REPO,
) -> Server:
    """Run ``command(port)`` on a free port in its own process group and wait until ``ready``
    answers 200 (``None``: do not wait).

    The environment is ours plus ``FEEDS_CONFIG`` (``config``), ``FEEDS_STATE_DIR``
    (``state_dir``; unset: the default beside the config), ``FEEDS_WATCH`` (live reload, on as
    in production) and ``env``; an inherited ``PROMETHEUS_MULTIPROC_DIR`` is dropped. Output is
    appended to ``log``. ``memory_limit`` caps each server process's address space (bytes), so
    a server that explodes fails alone instead of taking the machine with it. Raises
    :class:`ServerError` (after stopping it) if the server exits or is not ready in ``timeout``.
    """
    port = free_port()
    argv = command(port)
    if memory_limit is not None:
        argv = ["prlimit", f"--as={memory_limit}", "--", *argv]
    environ = {**os.environ, "FEEDS_WATCH": "1" if watch else "0", "PYTHONUNBUFFERED": "1"}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "FEEDS_STATE_DIR", "FEEDS_CONFIG"):
        environ.pop(name, None)
    if config is not None:
        environ["FEEDS_CONFIG"] = str(config)
    if state_dir is not None:
        environ["FEEDS_STATE_DIR"] = str(state_dir)
    environ.update(env or {})
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environ,
            cwd=cwd,
            start_new_session=True,  # its own process group: stop() ends workers too
        )
    server = Server(process, port, log, grace)
    if ready is not None:
        try:
            wait_ready(server, ready, timeout)
        except BaseException:
            stop(server)
            raise
    return server


def wait_ready(server: Server, path: str = "/healthz", timeout: float = 60.0) -> float:
    """Seconds until ``path`` answers 200. A request that reaches the listen backlog waits
    there until a worker takes it, so no polling interval is added to a start-up time."""
    started = time.perf_counter()
    while True:
        if server.process.poll() is not None:
            raise ServerError(f"server exited with {server.process.returncode}:\n{server.log_tail()}")
        left = timeout - (time.perf_counter() - started)
        if left <= 0:
            raise ServerError(f"server not ready after {timeout:g} s:\n{server.log_tail()}")
        try:
            if server.fetch(path, timeout=min(left, 5.0)).status == 200:
                return time.perf_counter() - started
            time.sleep(0.05)
        except (OSError, http.client.HTTPException):
            time.sleep(0.01)


def stop(server: Server) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``server.grace`` seconds."""
    process = server.process
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group is gone
        return
    try:
        process.wait(timeout=server.grace)
    except subprocess.TimeoutExpired:
        pass
    try:  # workers that outlived their master, or a master that did not stop
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass


# -- sites, commits and memory -----------------------------------------------------------------


# -- servers in this process (hubs, caches, subscribers the tests play) ----------------------------


class QuietHandler(BaseHTTPRequestHandler):
    """A handler for a stand-in server: no access log on stderr, and a one-call answer."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def answer(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Serving(Protocol):
    server_port: int

    def serve_forever(self, poll_interval: float = 0.5) -> None: ...
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...


@contextmanager
def in_thread(server: _Serving) -> Iterator[_Serving]:
    """Serve ``server`` (http.server's or Werkzeug's) from a daemon thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def loopback(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``handler`` on a free loopback port (not yet serving)."""
    server = ThreadingHTTPServer((HOST, 0), handler)
    server.daemon_threads = True
    return server


def copy_demo_site(target: Path) -> Path:
    """The demo config and articles, copied with their file times; returns the config path."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "config.yaml", target / "config.yaml")
    shutil.copytree(REPO / "articles", target / "articles")
    return target / "config.yaml"


def commit() -> str:
    """The commit under test, marked when feeds/ has uncommitted changes."""

    def git(*args: str) -> str:
        try:
            run = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return run.stdout.strip()

    dirty = " + uncommitted changes in feeds/" if git("status", "--porcelain", "feeds") else ""
    return (git("rev-parse", "--short", "HEAD") or "?") + dirty


@dataclass(frozen=True)
class Memory:
    rss_mb: float  # VmRSS: resident now
    peak_mb: float  # VmHWM: the most it was resident


def memory(pid: int) -> Memory:
    """Resident memory of one process (zeros once it is gone)."""
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in found:
                    found[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return Memory(found["VmRSS"], found["VmHWM"])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (server workers, their helpers), children first (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    kids = [int(k) for k in fh.read().split()]
                found += kids
                todo += kids
        except OSError:
            continue
    return found
