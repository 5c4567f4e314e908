"""The production server (gunicorn, two workers) over real HTTP, as a feed reader meets it."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import lxml.html
import pytest
import yaml

from feeds import create_app

import harness
from conftest import DEMO_CONFIG, REPO


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Server]:
    log = tmp_path_factory.mktemp("gunicorn") / "log.txt"
    command = lambda port: harness.gunicorn_command(port, 2, extra=["--access-logfile", "-"])  # noqa: E731
    with harness.start(command, log, config=DEMO_CONFIG, timeout=20.0) as server:
        yield server


def feed_paths(server: harness.Server) -> list[str]:
    index = server.fetch("/")
    assert index.status == 200
    doc = lxml.html.fromstring(index.body)
    return sorted(
        {urlsplit(h).path for h in doc.xpath("//a/@href") if urlsplit(h).path.startswith("/feeds/")}
    )


def test_index_lists_every_feed(server: harness.Server) -> None:
    paths = feed_paths(server)
    operator = yaml.safe_load(Path(DEMO_CONFIG).read_text(encoding="utf-8"))["feeds"]
    topics = [p.name for p in (REPO / "articles").iterdir() if p.is_dir()]
    for name in [*operator, *topics]:
        assert f"/feeds/{name}.rss" in paths and f"/feeds/{name}.atom" in paths, name


def test_every_feed_parses(server: harness.Server) -> None:
    paths = feed_paths(server)
    assert paths
    for path in paths:
        reply = server.fetch(path)
        assert reply.status == 200, path
        kind = "rss" if path.endswith(".rss") else "atom"
        assert reply.headers["content-type"] == f"application/{kind}+xml; charset=utf-8"
        parsed = feedparser.parse(reply.body)
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        assert parsed.version == ("rss20" if kind == "rss" else "atom10")
        assert parsed.entries, path


def test_workers_and_processes_agree(server: harness.Server) -> None:
    # Another process over the same files: identical bytes and validators (one cache, N servers).
    local = create_app(DEMO_CONFIG).test_client()
    for path in ["/", *feed_paths(server)]:
        tags = {server.fetch(path).headers["etag"] for _ in range(4)}  # spread over workers
        assert tags == {local.get(path).headers["etag"]}, path
        assert server.fetch(path).body == local.get(path).data


@pytest.mark.parametrize("path", ["/feeds/alle.atom", "/feeds/ukraine.rss", "/"])
def test_revalidation(server: harness.Server, path: str) -> None:
    first = server.fetch(path)
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    assert first.status == 200 and etag and last_modified
    by_tag = server.fetch(path, {"If-None-Match": etag})
    by_date = server.fetch(path, {"If-Modified-Since": last_modified})
    for reply in (by_tag, by_date):
        assert reply.status == 304
        assert reply.body == b""
        assert reply.headers["etag"] == etag
        assert reply.headers["last-modified"] == last_modified
        assert reply.headers["cache-control"] == first.headers["cache-control"]
    assert server.fetch(path, {"If-None-Match": '"other"'}).status == 200


def test_gzip(server: harness.Server) -> None:
    plain = server.fetch("/feeds/alle.rss")
    zipped = server.fetch("/feeds/alle.rss", {"Accept-Encoding": "gzip"})
    assert zipped.status == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert int(zipped.headers["content-length"]) == len(zipped.body) < len(plain.body)
    assert gzip.decompress(zipped.body) == plain.body
    assert zipped.headers["etag"] != plain.headers["etag"]
    again = server.fetch(
        "/feeds/alle.rss", {"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}
    )
    assert again.status == 304


def test_head_and_not_found(server: harness.Server) -> None:
    get = server.fetch("/feeds/alle.atom")
    head = server.fetch("/feeds/alle.atom", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(get.body))
    assert head.headers["etag"] == get.headers["etag"]
    missing = server.fetch("/feeds/nope.rss")
    assert missing.status == 404
    assert missing.headers["content-type"].startswith("text/plain")
