"""Two production servers started separately over the same files answer identically.

Any number of instances stand behind one cache or CDN only if every process gives the same
bytes, ETag and Last-Modified for every document, gzip included. The two gunicorn processes
here share nothing but the site's files (each has its own state folder, like two machines).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gunicorn
import lxml.html
import pytest

from conftest import DEMO_CONFIG, REPO

HEALTH_TIMEOUT = 20.0
# gunicorn 27 opens a control socket at a fixed path in $HOME; servers started side by side
# would fight over it, and tests should leave nothing behind.
CONTROL_SOCKET = ["--no-control-socket"] if gunicorn.version_info >= (27,) else []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path  # stdout and stderr of the server
    access_log: Path | None = None

    def url(self, path: str) -> str:
        return self.base + path


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Answer:
    """One request with urllib, which never decompresses: the bytes as the server sent them."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, dict(error.headers.items()), error.read())


def copy_demo_site(target: Path) -> Path:
    """The demo config and articles, copied with their file times; returns the config path."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(DEMO_CONFIG, target / "config.yaml")
    shutil.copytree(REPO / "articles", target / "articles")
    return target / "config.yaml"


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.process.returncode}:\n"
                        f"{server.log.read_text()[-3000:]}")
        try:
            if fetch(server.url("/healthz"), timeout=1.0).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gunicorn not healthy after {HEALTH_TIMEOUT} s:\n{server.log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


StartServer = Callable[..., Server]


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``gunicorn 'feeds:create_app()'`` on a free loopback port; always stopped after."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(config: Path, name: str = "server", access_log: Path | None = None,
              extra_env: dict[str, str] | None = None) -> Server:
        port = free_port()
        log = tmp_path / f"{name}.log"
        env = {**os.environ, "FEEDS_CONFIG": str(config),
               "FEEDS_STATE_DIR": str(tmp_path / f"{name}-state")}
        # conftest turns file watching off for in-process apps; a server runs as in production.
        env.pop("FEEDS_WATCH", None)
        env.update(extra_env or {})
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                   "--workers", "1", "--graceful-timeout", "2", *CONTROL_SOCKET]
        if access_log is not None:
            command += ["--access-logfile", str(access_log)]
        command.append("feeds:create_app()")
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        processes.append(process)
        server = Server(process, f"http://127.0.0.1:{port}", log, access_log)
        _wait_healthy(server)
        return server

    yield start
    for process in processes:
        _stop(process)


def document_paths(server: Server) -> list[str]:
    """The index, and every feed and article page it links to."""
    index = fetch(server.url("/"))
    assert index.status == 200
    root = lxml.html.fromstring(index.body)
    hrefs = {h for h in root.xpath("//a/@href | //link[@rel='alternate']/@href")
             if h.startswith(("/feeds/", "/articles/"))}
    return ["/", *sorted(hrefs)]


def test_two_processes_serve_identical_documents_and_validators(
        tmp_path: Path, start_gunicorn: StartServer) -> None:
    config = copy_demo_site(tmp_path / "site")
    one = start_gunicorn(config, "one")
    two = start_gunicorn(config, "two")
    paths = document_paths(one)
    assert paths == document_paths(two)
    assert sum(p.startswith("/feeds/") for p in paths) >= 20
    assert sum(p.startswith("/articles/") for p in paths) >= 10
    differences = []
    for path in paths:
        for encoding in ("identity", "gzip"):
            where = f"{path} ({encoding})"
            headers = {"Accept-Encoding": encoding}
            a, b = fetch(one.url(path), headers), fetch(two.url(path), headers)
            if a.status != 200 or b.status != 200:
                differences.append(f"{where}: status {a.status} / {b.status}")
                continue
            if (a.headers.get("Content-Encoding") == "gzip") != (encoding == "gzip"):
                differences.append(f"{where}: Content-Encoding {a.headers.get('Content-Encoding')}")
            for name in ("ETag", "Last-Modified", "Content-Type", "Cache-Control", "Content-Encoding"):
                if a.headers.get(name) != b.headers.get(name):
                    differences.append(f"{where}: {name} {a.headers.get(name)} != {b.headers.get(name)}")
            if a.body != b.body:
                differences.append(f"{where}: bodies differ ({len(a.body)} / {len(b.body)} bytes)")
    assert not differences, "\n".join(differences)
