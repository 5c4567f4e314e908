"""The production server (gunicorn, two workers) over real HTTP, as a feed reader meets it."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import lxml.html
import pytest
import yaml

from conftest import DEMO_CONFIG, REPO
from feeds import create_app


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def fetch(port: int, path: str, headers: dict[str, str] | None = None,
          method: str = "GET") -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "log.txt"
    env = {**os.environ, "FEEDS_CONFIG": str(DEMO_CONFIG)}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
             "--access-logfile", "-", "feeds:create_app()"],
            cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if fetch(port, "/healthz").status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not come up:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def feed_paths(port: int) -> list[str]:
    index = fetch(port, "/")
    assert index.status == 200
    doc = lxml.html.fromstring(index.body)
    return sorted({urlsplit(h).path for h in doc.xpath("//a/@href")
                   if urlsplit(h).path.startswith("/feeds/")})


def test_index_lists_every_feed(server: int) -> None:
    paths = feed_paths(server)
    operator = yaml.safe_load(Path(DEMO_CONFIG).read_text(encoding="utf-8"))["feeds"]
    topics = [p.name for p in (REPO / "articles").iterdir() if p.is_dir()]
    for name in [*operator, *topics]:
        assert f"/feeds/{name}.rss" in paths and f"/feeds/{name}.atom" in paths, name


def test_every_feed_parses(server: int) -> None:
    paths = feed_paths(server)
    assert paths
    for path in paths:
        reply = fetch(server, path)
        assert reply.status == 200, path
        kind = "rss" if path.endswith(".rss") else "atom"
        assert reply.headers["Content-Type"] == f"application/{kind}+xml; charset=utf-8"
        parsed = feedparser.parse(reply.body)
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        assert parsed.version == ("rss20" if kind == "rss" else "atom10")
        assert parsed.entries, path


def test_workers_and_processes_agree(server: int) -> None:
    # Another process over the same files: identical bytes and validators (one cache, N servers).
    local = create_app(DEMO_CONFIG).test_client()
    for path in ["/", *feed_paths(server)]:
        tags = {fetch(server, path).headers["ETag"] for _ in range(4)}  # spread over workers
        assert tags == {local.get(path).headers["ETag"]}, path
        assert fetch(server, path).body == local.get(path).data


@pytest.mark.parametrize("path", ["/feeds/alle.atom", "/feeds/ukraine.rss", "/"])
def test_revalidation(server: int, path: str) -> None:
    first = fetch(server, path)
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert first.status == 200 and etag and last_modified
    by_tag = fetch(server, path, {"If-None-Match": etag})
    by_date = fetch(server, path, {"If-Modified-Since": last_modified})
    for reply in (by_tag, by_date):
        assert reply.status == 304
        assert reply.body == b""
        assert reply.headers["ETag"] == etag
        assert reply.headers["Last-Modified"] == last_modified
        assert reply.headers["Cache-Control"] == first.headers["Cache-Control"]
    assert fetch(server, path, {"If-None-Match": '"other"'}).status == 200


def test_gzip(server: int) -> None:
    plain = fetch(server, "/feeds/alle.rss")
    zipped = fetch(server, "/feeds/alle.rss", {"Accept-Encoding": "gzip"})
    assert zipped.status == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept-Encoding"
    assert int(zipped.headers["Content-Length"]) == len(zipped.body) < len(plain.body)
    assert gzip.decompress(zipped.body) == plain.body
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    again = fetch(server, "/feeds/alle.rss",
                  {"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]})
    assert again.status == 304


def test_head_and_not_found(server: int) -> None:
    get = fetch(server, "/feeds/alle.atom")
    head = fetch(server, "/feeds/alle.atom", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == str(len(get.body))
    assert head.headers["ETag"] == get.headers["ETag"]
    missing = fetch(server, "/feeds/nope.rss")
    assert missing.status == 404
    assert missing.headers["Content-Type"].startswith("text/plain")
