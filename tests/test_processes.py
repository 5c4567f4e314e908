"""Two production servers started separately over the same files answer identically.

Any number of instances stand behind one cache or CDN only if every process gives the same
bytes, ETag and Last-Modified for every document, gzip included. The two gunicorn processes
here share nothing but the site's files (each has its own state folder, like two machines).
"""

from __future__ import annotations

from pathlib import Path

import lxml.html

from conftest import StartServer
from support import harness


def document_paths(server: harness.Server) -> list[str]:
    """The index, and every feed and article page it links to."""
    index = server.fetch("/")
    assert index.status == 200
    root = lxml.html.fromstring(index.body)
    hrefs = {
        h
        for h in root.xpath("//a/@href | //link[@rel='alternate']/@href")
        if h.startswith(("/feeds/", "/articles/"))
    }
    return ["/", *sorted(hrefs)]


def test_two_processes_serve_identical_documents_and_validators(
    tmp_path: Path, start_server: StartServer
) -> None:
    config = harness.copy_demo_site(tmp_path / "site")
    one = start_server(config, "one")
    two = start_server(config, "two")
    paths = document_paths(one)
    assert paths == document_paths(two)
    assert sum(p.startswith("/feeds/") for p in paths) >= 20
    assert sum(p.startswith("/articles/") for p in paths) >= 10
    differences = []
    for path in paths:
        for encoding in ("identity", "gzip"):
            where = f"{path} ({encoding})"
            headers = {"Accept-Encoding": encoding}
            a, b = one.fetch(path, headers), two.fetch(path, headers)
            if a.status != 200 or b.status != 200:
                differences.append(f"{where}: status {a.status} / {b.status}")
                continue
            if (a.headers.get("content-encoding") == "gzip") != (encoding == "gzip"):
                differences.append(f"{where}: Content-Encoding {a.headers.get('content-encoding')}")
            for name in ("etag", "last-modified", "content-type", "cache-control", "content-encoding"):
                if a.headers.get(name) != b.headers.get(name):
                    differences.append(f"{where}: {name} {a.headers.get(name)} != {b.headers.get(name)}")
            if a.body != b.body:
                differences.append(f"{where}: bodies differ ({len(a.body)} / {len(b.body)} bytes)")
    assert not differences, "\n".join(differences)
