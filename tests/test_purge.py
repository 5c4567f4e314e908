"""Purge on change: every document whose bytes changed is PURGEd from each cache, once.

Real gunicorn with three workers and live reload in front of a recording cache (a loopback
HTTP server that records each PURGE). What a change must purge is found the way a cache would
see it: every document reachable from the index is fetched before and after, and the ones whose
ETag changed (or that appeared or went away) are exactly the ones purged, each once.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import lxml.html
import pytest
from lxml import etree
from test_notify import ARTICLES, retitle, serving

from feeds.inventory import path_of
from feeds.notify import purge
from feeds.site import FORMATS

from conftest import MakeSite, StartServer
from support import harness
from support.waiting import PATIENCE, wait_until

HOST = harness.HOST
SITE_URL = "https://news.example.org/"
ATOM = "{http://www.w3.org/2005/Atom}"
SITEMAPS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


class RecordingCache:
    """A cache on loopback that records each PURGE (path, Host) and answers 200. With a
    ``gate`` it holds every PURGE (``arrived`` counts them) until the gate is set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.arrived = 0
        self.purges: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
        cache = self

        class Handler(harness.QuietHandler):
            def do_PURGE(self) -> None:  # noqa: N802 - the method's name
                with cache.lock:
                    cache.arrived += 1
                if cache.gate is not None:
                    cache.gate.wait(PATIENCE)
                with cache.lock:
                    cache.purges.append((time.monotonic(), self.path, self.headers["Host"]))
                self.answer(200)

        self._serving = ExitStack()
        self.server = self._serving.enter_context(harness.in_thread(harness.loopback(Handler)))

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_port}"

    def settle(self, since: int, server: harness.Server, quiet: float = 1.0) -> list[tuple[str, str]]:
        """The (path, Host) purged after the first ``since``: once the cache has every purge the
        server says it sent (so a machine that stalls mid-round does not cut the round short),
        and ``quiet`` seconds passed without any (a duplicate would come in that time)."""
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            with self.lock:
                last = self.purges[-1][0] if self.purges else 0.0
                count = len(self.purges)
            sent = announced(server)  # logged before the purges go out
            if sent and since < count >= sent and time.monotonic() - last >= quiet:
                with self.lock:
                    return [(path, host) for _, path, host in self.purges[since:]]
            time.sleep(0.05)
        raise AssertionError(f"no quiet round of purges within {PATIENCE:g} s: {announced(server)} announced")

    def close(self) -> None:
        self._serving.close()


@pytest.fixture
def cache() -> Iterator[RecordingCache]:
    recording = RecordingCache()
    yield recording
    recording.close()


def announced(server: harness.Server) -> int:
    """Purges the server's workers logged they are sending, in all (one line per pass)."""
    lines = re.findall(r"(\d+) document\(s\) changed; purging them from (\d+) cache", server.log.read_text())
    return sum(int(documents) * int(caches) for documents, caches in lines)


def documents(server: harness.Server) -> dict[str, str]:
    """Every document a cache in front could hold, by path, with its ETag."""
    found: dict[str, str] = {}
    todo = ["/", "/feeds.opml", "/robots.txt", "/sitemap.xml", "/sitemap-news.xml"]
    index = lxml.html.fromstring(server.fetch("/").body)
    todo += [h for h in index.xpath("//a/@href") if h.startswith(("/feeds/", "/articles/"))]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        reply = server.fetch(path)
        assert reply.status == 200, path
        found[path] = reply.headers["etag"]
        if path == "/sitemap.xml":  # an index of pages, once the site is large
            pages = etree.fromstring(reply.body).iterfind(f"{SITEMAPS}sitemap/{SITEMAPS}loc")
            todo += [path_of(str(loc.text)) for loc in pages]
        if path.endswith(".atom"):  # archive pages, in every format
            for link in etree.fromstring(reply.body).iter(f"{ATOM}link"):
                if link.get("rel") in ("prev-archive", "next-archive"):
                    base = path_of(link.get("href", "")).rpartition(".")[0]
                    todo += [f"{base}.{fmt}" for fmt in FORMATS]
    return found


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def test_a_change_purges_exactly_the_documents_it_changed_once(
    make_site: MakeSite, start_server: StartServer, cache: RecordingCache
) -> None:
    config = make_site(ARTICLES, {"site": {"url": SITE_URL}, "cache": {"purge": [cache.url]}})
    server = serving(start_server, config, 3)
    before = documents(server)
    assert any("/archive/" in p for p in before)  # "kurz" (two entries) has an archive page

    retitle(config, "politik/erster.md", "Erster Artikel, berichtigt")
    first = cache.settle(0, server)
    after = documents(server)
    assert Counter(first).most_common(1)[0][1] == 1  # each once, however many workers
    assert {host for _, host in first} == {"news.example.org"}  # the host clients ask for
    expected = changed(before, after)
    assert sorted(path for path, _ in first) == expected
    assert "/articles/erster" in expected and "/feeds/alle.atom" in expected
    assert "/feeds/klima.atom" not in expected  # a feed the article is not in stays cached

    # A new article: its page (which a cache may hold as a 404) and what lists it.
    new = config.parent / "articles" / "politik" / "vierter.md"
    new.write_text("---\nid: vierter\ntitle: Vierter\ndate: 2025-05-04T08:00:00+02:00\n---\nText\n")
    second = cache.settle(len(first), server)
    assert sorted(path for path, _ in second) == changed(after, documents(server))
    assert "/articles/vierter" in {path for path, _ in second}

    # Deleted: its page goes from the cache too, whether it came while serving or was there
    # from the start (a page no change had touched before).
    current = documents(server)
    new.unlink()
    (config.parent / "articles" / "politik" / "zweiter.md").unlink()
    third = cache.settle(len(first) + len(second), server)
    assert {"/articles/vierter", "/articles/zweiter"} <= {path for path, _ in third}
    assert sorted(path for path, _ in third) == changed(current, documents(server))
    assert Counter(third).most_common(1)[0][1] == 1


def test_same_bytes_rewritten_purge_nothing(
    make_site: MakeSite, start_server: StartServer, cache: RecordingCache
) -> None:
    """A file rewritten with the same bytes purges nothing; a change elsewhere, written after
    it, marks the end of the wait: its round holds only its own documents."""
    config = make_site(ARTICLES, {"site": {"url": SITE_URL}, "cache": {"purge": [cache.url]}})
    server = serving(start_server, config, 2)
    before = documents(server)
    zweiter = config.parent / "articles" / "politik" / "zweiter.md"
    zweiter.write_bytes(zweiter.read_bytes())
    retitle(config, "klima/dritter.md", "Dritter Artikel, berichtigt")
    purged = [path for path, _ in cache.settle(0, server)]
    assert "/articles/zweiter" not in purged and "/feeds/politik.atom" not in purged
    assert sorted(purged) == changed(before, documents(server))


def test_a_new_spelling_of_a_topic_purges_every_page_that_shows_its_name(
    make_site: MakeSite, start_server: StartServer, cache: RecordingCache
) -> None:
    """The first article to write "Politik" renames the topic the folder called "politik": the
    pages and feeds of the other politik articles show the new name, so they change too."""
    config = make_site(ARTICLES, {"site": {"url": SITE_URL}, "cache": {"purge": [cache.url]}})
    server = serving(start_server, config, 2)
    before = documents(server)
    spelled = config.parent / "articles" / "politik" / "fuenfter.md"
    spelled.write_text(
        "---\nid: fuenfter\ntitle: Fünfter\ndate: 2025-04-01T08:00:00+02:00\ntopics: [Politik]\n---\nText\n"
    )
    purged = sorted(path for path, _ in cache.settle(0, server))
    assert purged == changed(before, documents(server))
    assert {"/articles/erster", "/articles/zweiter", "/feeds/politik.rss"} <= set(purged)
    assert "/articles/dritter" not in purged  # klima: its name did not change


def test_a_purge_names_the_cache_path_and_the_sites_host() -> None:
    delivery = purge("http://127.0.0.1:6081/", "/news/feeds/alle.atom", "example.org")
    assert (delivery.method, delivery.url) == ("PURGE", "http://127.0.0.1:6081/news/feeds/alle.atom")
    assert dict(delivery.headers) == {"Host": "example.org"}


def test_purges_wait_for_no_request(make_site: MakeSite, start_server: StartServer) -> None:
    """A cache that hangs and one that is down: the change is served, and requests answered,
    while a purge hangs; the log names the cache that is down."""
    held = threading.Event()
    hanging = RecordingCache(gate=held)
    dead = f"http://{HOST}:{harness.free_port()}"
    try:
        config = make_site(ARTICLES, {"site": {"url": SITE_URL}, "cache": {"purge": [hanging.url, dead]}})
        server = serving(start_server, config, 2)
        retitle(config, "politik/erster.md", "Schnell berichtigt")
        wait_until(lambda: hanging.arrived > 0, "a purge at the cache that hangs")
        wait_until(
            lambda: b"Schnell berichtigt" in server.fetch("/feeds/alle.atom").body, "the change served"
        )
        assert server.fetch("/healthz").status == 200
        # The server logged nothing about the held purge yet: no request waited for it to end
        # (one that did would have waited until the purge ran out, and that is logged).
        assert f"to {hanging.url}/" not in server.log.read_text()
        wait_until(lambda: f"to {dead}/" in server.log.read_text(), "a log line about the failed purge")
        assert "cache purge" in server.log.read_text()
    finally:
        held.set()
        hanging.close()


def test_path_of_keeps_the_sites_prefix(tmp_path: Path) -> None:
    assert path_of("https://example.org/news/feeds/alle.atom") == "/news/feeds/alle.atom"
    assert path_of("https://example.org") == "/"


def test_looking_for_changes_renders_no_article_or_archive_page(make_site: MakeSite) -> None:
    """A site of a million pages must not render them all to learn what a purge would need."""
    from feeds.notify import Notifier, Outbox
    from feeds.site import open_site

    articles = {
        **ARTICLES,
        **{
            f"politik/m{i}.md": f"---\nid: m{i}\ntitle: M{i}\ndate: 2025-01-0{i}\n---\nT\n"
            for i in range(1, 8)
        },
    }
    config = make_site(articles, {"site": {"url": SITE_URL}, "cache": {"purge": ["http://127.0.0.1:9"]}})
    site = open_site(config)
    rendered: list[str] = []
    site.render_hooks.append(lambda kind, seconds: rendered.append(kind))
    notifier = Notifier(site, Outbox(delays=()))
    assert notifier.sweep() == []  # a first look learns
    path = config.parent / "articles" / "politik" / "m3.md"
    path.write_text(path.read_text().replace("title: M3", "title: M3 neu"))
    site.apply(["politik/m3.md"])
    changed = notifier.sweep()
    assert "https://news.example.org/articles/m3" in changed
    assert any("/archive/" in url for url in changed)  # m3 is old: it sits on an archive page
    assert "page" not in rendered and "archive" not in rendered
    notifier.close()
