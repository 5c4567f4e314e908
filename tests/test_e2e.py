"""The production server (gunicorn, two workers) over real HTTP, as a feed reader meets it."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anyfeed
import lxml.html
import pytest
import yaml

from feeds import create_app

from conftest import DEMO_CONFIG, REPO
from support import harness
from support.waiting import PATIENCE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Server]:
    log = tmp_path_factory.mktemp("gunicorn") / "log.txt"
    command = lambda port: harness.gunicorn_command(port, 2, extra=["--access-logfile", "-"])  # noqa: E731
    with harness.start(command, log, config=DEMO_CONFIG, timeout=PATIENCE) as server:
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


MEDIA_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json",
}


def test_every_feed_parses(server: harness.Server) -> None:
    paths = feed_paths(server)
    assert paths
    for path in paths:
        reply = server.fetch(path)
        assert reply.status == 200, path
        kind = path.rpartition(".")[2] if "." in path else "page"
        if kind == "page":  # the feed's page for people
            assert reply.headers["content-type"] == "text/html; charset=utf-8"
            assert lxml.html.fromstring(reply.body).xpath("//h1")
            continue
        assert reply.headers["content-type"] == MEDIA_TYPES[kind]
        parsed = anyfeed.parse(reply.body)
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        assert parsed.version == {"rss": "rss20", "atom": "atom10", "json": "json11"}[kind]
        assert parsed.entries, path


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_a_late_subscriber_walks_the_whole_history(server: harness.Server, fmt: str) -> None:
    """Following prev-archive (JSON Feed: next_url) from a feed gives each entry exactly once."""
    local = create_app(DEMO_CONFIG).extensions["feeds"]
    wanted = {entry.id for entry in anyfeed.parse(local.feed("alle", fmt).body).entries}
    ids: list[str] = []
    url: str | None = f"/feeds/schlagzeilen.{fmt}"
    fetched = 0
    while url is not None:
        reply = server.fetch(urlsplit(url).path)
        assert reply.status == 200, url
        parsed = anyfeed.parse(reply.body)
        ids += [entry.id for entry in parsed.entries]
        url = next((link.href for link in parsed.feed.links if link.rel == "prev-archive"), None)
        fetched += 1
    assert fetched > 1  # the demo's headline feed (limit 10) has archive pages
    assert len(ids) == len(set(ids)) and set(ids) == wanted


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
