"""The HTTP contract as a cache, an aggregator or a browser sees it, over the Flask test client
(and, for what only a real worker shows, the production server on loopback)."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from calendar import timegm
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import feedparser
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import create_environ

from feeds import create_app

from conftest import NOW, MakeSite
from support import harness
from support.waiting import PATIENCE

FEED_NAMES = ("alle", "kurz", "klima", "politik")  # operator feeds + topic feeds of SMALL_ARTICLES
FEED_PATHS = [f"/feeds/{name}.{fmt}" for name in FEED_NAMES for fmt in ("rss", "atom")]
# One of each kind of document: feeds of both formats (one with its own max_age), index, page.
DOCS = ["/feeds/alle.rss", "/feeds/kurz.atom", "/", "/articles/erster"]
GZIP = {"Accept-Encoding": "gzip"}
# An Accept-Encoding value of 300 KB that Werkzeug would parse for a tenth of a second or more.
HOSTILE_CODINGS = "gzip;q=0.5, br;q=0.1, " * 14_000


def hostile_coding(i: int) -> str:
    """A distinct huge Accept-Encoding value (a cache keyed by the value keeps each)."""
    return f"x-{i}, {HOSTILE_CODINGS}"


def strong_tag(response) -> str:
    """The unquoted opaque tag, after checking it is a quoted strong tag."""
    value = response.headers["ETag"]
    assert value.startswith('"') and value.endswith('"'), value
    return value[1:-1]


def http_time(value: str) -> datetime:
    return parsedate_to_datetime(value)


# --- content types and cache headers --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/feeds/alle.rss", "application/rss+xml; charset=utf-8"),
        ("/feeds/politik.rss", "application/rss+xml; charset=utf-8"),
        ("/feeds/alle.atom", "application/atom+xml; charset=utf-8"),
        ("/feeds/klima.atom", "application/atom+xml; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
        ("/articles/erster", "text/html; charset=utf-8"),
    ],
)
def test_content_type(client: FlaskClient, path: str, content_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type


@pytest.mark.parametrize(
    ("path", "max_age"),
    [
        ("/feeds/alle.rss", 300),
        ("/feeds/alle.atom", 300),
        ("/feeds/kurz.rss", 600),
        ("/feeds/kurz.atom", 600),
        ("/feeds/klima.rss", 300),
        ("/", 300),
        ("/articles/zweiter", 300),
        ("/feeds/kurz.json", 600),
        ("/feeds/kurz", 600),
        ("/feeds.opml", 300),
    ],
)
def test_cache_headers(client: FlaskClient, path: str, max_age: int) -> None:
    response = client.get(path)
    assert response.headers["Cache-Control"] == (
        f"public, max-age={max_age}, stale-while-revalidate=60, stale-if-error=86400"
    )
    assert response.headers["Vary"] == "Accept-Encoding"
    assert strong_tag(response)


@pytest.mark.parametrize("name", FEED_NAMES)
def test_last_modified_is_newest_entry_update(client: FlaskClient, name: str) -> None:
    # Atom carries each entry's <updated>; RSS cannot, so the Atom twin is the reference.
    atom = feedparser.parse(client.get(f"/feeds/{name}.atom").data)
    assert atom.entries
    newest = max(timegm(entry.updated_parsed) for entry in atom.entries)
    expected = datetime.fromtimestamp(newest, UTC)
    for fmt in ("rss", "atom"):
        assert http_time(client.get(f"/feeds/{name}.{fmt}").headers["Last-Modified"]) == expected


def test_last_modified_of_page_is_article_update(client: FlaskClient) -> None:
    # zweiter: updated 2025-05-02T10:00:00+02:00
    response = client.get("/articles/zweiter")
    assert http_time(response.headers["Last-Modified"]) == datetime(2025, 5, 2, 8, 0, tzinfo=UTC)


# --- gzip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCS)
def test_gzip_when_accepted(client: FlaskClient, path: str) -> None:
    identity = client.get(path)
    zipped = client.get(path, headers=GZIP)
    assert "Content-Encoding" not in identity.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert int(zipped.headers["Content-Length"]) == len(zipped.data)
    assert gzip.decompress(zipped.data) == identity.data
    # RFC 9110 8.8.3: a strong tag names one representation's bytes.
    tag = strong_tag(identity)
    assert strong_tag(zipped) == f"{tag}-gzip"
    for header in ("Last-Modified", "Cache-Control", "Vary", "Content-Type"):
        assert zipped.headers[header] == identity.headers[header]


@pytest.mark.parametrize(
    ("accept", "zipped"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("GZIP", True),  # RFC 9110 8.4.1: content codings are case-insensitive
        ("gzip;q=0", False),
        ("deflate, br", False),
        ("identity", False),
    ],
)
def test_accept_encoding_negotiation(client: FlaskClient, accept: str, zipped: bool) -> None:
    response = client.get("/feeds/alle.rss", headers={"Accept-Encoding": accept})
    assert response.status_code == 200
    assert response.headers.get("Content-Encoding") == ("gzip" if zipped else None)
    body = gzip.decompress(response.data) if zipped else response.data
    assert feedparser.parse(body).feed.title == "Alle Meldungen"


def test_an_oversized_accept_encoding_is_answered_with_identity(client: FlaskClient) -> None:
    identity = client.get("/feeds/alle.rss")
    for value in (hostile_coding(0), "gzip, " + "x" * 300, ", ".join(["br"] * 20 + ["gzip"])):
        response = client.get("/feeds/alle.rss", headers={"Accept-Encoding": value})
        assert response.status_code == 200
        assert "Content-Encoding" not in response.headers
        assert response.data == identity.data
        assert response.headers["ETag"] == identity.headers["ETag"]
    assert client.get("/feeds/alle.rss", headers=GZIP).headers["Content-Encoding"] == "gzip"


def test_distinct_huge_accept_encodings_cost_no_parse(app: Flask) -> None:
    """CPU time of the app alone (the test client checks header values at a cost of its own), so
    a busy machine does not make it flaky: Werkzeug parsed each such value for 80-340 ms."""
    tag = app.test_client().get("/feeds/alle.rss").headers["ETag"]
    statuses: list[str] = []
    spent, count = 0.0, 100
    for i in range(count):
        environ = create_environ(
            "/feeds/alle.rss", headers={"Accept-Encoding": hostile_coding(i), "If-None-Match": tag}
        )
        started = time.process_time()
        b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
        spent += time.process_time() - started
    assert statuses == ["304 Not Modified"] * count
    assert spent / count < 0.001, f"{spent / count * 1000:.1f} ms of CPU per request"


# --- conditional requests -------------------------------------------------------------------

INM_CASES = [
    # (id, If-None-Match built from the identity tag H, client accepts gzip, expected status)
    ("same tag", '"{H}"', False, 304),
    ("other tag", '"0123456789abcdef"', False, 200),
    ("weak", 'W/"{H}"', False, 304),
    ("star", "*", False, 304),
    ("list", '"x", "{H}"', False, 304),
    ("gzip tag to identity request", '"{H}-gzip"', False, 304),
    ("identity tag to gzip request", '"{H}"', True, 304),
    ("gzip tag to gzip request", '"{H}-gzip"', True, 304),
    ("proxy-appended weak gzip tag", 'W/"{H}-gzip"', False, 304),
    ("prefix of the tag", '"{H_prefix}"', False, 200),
    ("other tag, gzip request", '"x"', True, 200),
]


@pytest.mark.parametrize("path", DOCS)
@pytest.mark.parametrize(("inm", "gz", "status"), [c[1:] for c in INM_CASES], ids=[c[0] for c in INM_CASES])
def test_if_none_match(client: FlaskClient, path: str, inm: str, gz: bool, status: int) -> None:
    plain = client.get(path, headers=GZIP if gz else {})
    tag = strong_tag(client.get(path))
    header = inm.format(H=tag, H_prefix=tag[:-1])
    response = client.get(path, headers={"If-None-Match": header, **(GZIP if gz else {})})
    assert response.status_code == status
    if status == 304:
        assert response.data == b""
        assert "Content-Encoding" not in response.headers
    else:
        assert response.data == plain.data
    # A 304 carries exactly the validators and cache headers of the 200 it stands for.
    for name in ("ETag", "Last-Modified", "Cache-Control", "Vary"):
        assert response.headers[name] == plain.headers[name], name


def _ims(client: FlaskClient, path: str, delta: timedelta | None, **extra: str):
    last_modified = client.get(path).headers["Last-Modified"]
    value = (
        format_datetime(http_time(last_modified) + delta, usegmt=True)
        if delta is not None
        else "yesterday-ish, not a date"
    )
    return client.get(path, headers={"If-Modified-Since": value, **extra})


@pytest.mark.parametrize("path", DOCS)
@pytest.mark.parametrize(
    ("delta", "status"),
    [
        (timedelta(0), 304),
        (timedelta(seconds=-1), 200),
        (timedelta(days=-400), 200),
        (timedelta(days=1), 304),
        (None, 200),
    ],
    ids=["equal", "one second older", "much older", "newer", "garbage"],
)
def test_if_modified_since(client: FlaskClient, path: str, delta: timedelta | None, status: int) -> None:
    plain = client.get(path)
    response = _ims(client, path, delta)
    assert response.status_code == status
    assert response.data == (b"" if status == 304 else plain.data)
    for name in ("ETag", "Last-Modified", "Cache-Control", "Vary"):
        assert response.headers[name] == plain.headers[name], name


@pytest.mark.parametrize("path", DOCS)
def test_if_none_match_wins_over_if_modified_since(client: FlaskClient, path: str) -> None:
    # RFC 9110 13.1.3: If-Modified-Since is ignored when If-None-Match is present.
    response = _ims(client, path, timedelta(0), **{"If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.data == client.get(path).data


@pytest.mark.parametrize("path", DOCS)
def test_matching_tag_with_old_date_is_304(client: FlaskClient, path: str) -> None:
    tag = client.get(path).headers["ETag"]
    response = _ims(client, path, timedelta(days=-400), **{"If-None-Match": tag})
    assert response.status_code == 304


# --- HEAD -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["identity", "gzip"])
@pytest.mark.parametrize("path", DOCS)
def test_head_has_get_headers_without_body(client: FlaskClient, path: str, gz: bool) -> None:
    headers = GZIP if gz else {}
    get = client.get(path, headers=headers)
    head = client.head(path, headers=headers)
    assert head.status_code == 200
    assert head.data == b""
    assert dict(head.headers) == dict(get.headers)
    assert int(head.headers["Content-Length"]) == len(get.data)


@pytest.mark.parametrize("path", DOCS)
def test_head_conditional(client: FlaskClient, path: str) -> None:
    get = client.get(path)
    by_tag = client.head(path, headers={"If-None-Match": get.headers["ETag"]})
    by_date = client.head(path, headers={"If-Modified-Since": get.headers["Last-Modified"]})
    for response in (by_tag, by_date):
        assert response.status_code == 304
        assert response.data == b""
        assert response.headers["ETag"] == get.headers["ETag"]
        assert response.headers["Last-Modified"] == get.headers["Last-Modified"]


# --- errors and health ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/feeds/nope.rss",
        "/feeds/alle.xml",
        "/feeds/x.json",
        "/feeds/nope",
        "/feeds/alle.opml",
        "/feeds/alle/",
        "/feeds.opml/",
        "/feeds/../config.yaml",
        "/feeds/UPPER.rss",
        "/feeds/",
        "/articles/nope",
        "/articles/klima/entwurf",
        "/articles/klima/sperrfrist",
        "/random/path",
        "/articles/../../etc/passwd",
        "/articles/%2e%2e/%2e%2e/config.yaml",
        "/feeds/alle.rss/extra",
        "/feeds/alle.rss%0a",  # "$" matches before a final newline: whole paths only
        "/feeds/alle%0a",
        "/feeds/kurz/archive/1.rss%0a",
        "/static//x",  # Werkzeug would redirect to the merged path (see below)
    ],
)
def test_not_found_is_short_plain_text(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "text/plain"
    assert 0 < len(response.data) < 200
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and "SECRET" not in body and "site:" not in body


def test_no_answer_redirects_to_the_host_the_client_named(app: Flask) -> None:
    """Werkzeug's router redirects doubled slashes (and a missing trailing slash) to an absolute
    URL built from the Host header: a cache keyed by path would hand it to every reader."""
    client = app.test_client()
    odd = ["/static//x", "/static//", "/static/a//b", "/healthz/", "/metrics/", "/healthz//", "/metrics//"]
    odd += ["/feeds//alle.rss", "/articles//erster", "/feeds.opml/", "/feeds/alle.rss/"]
    variants: list[str] = []
    for rule in app.url_map.iter_rules():  # the routes of today and of whoever adds one
        static = rule.rule.split("<")[0].rstrip("/")
        variants += [static, f"{static}/", f"{static}//", f"{static}//x", f"{static}/x//y"]
    for path in odd + variants:
        response = client.get(path, headers={"Host": "evil.example"})
        assert not 300 <= response.status_code < 400, (path, response.status_code)
        assert "Location" not in response.headers, path
        assert "evil.example" not in response.get_data(as_text=True), path
        if path in odd:
            assert response.status_code == 404, path


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    assert json.loads(response.data)["status"] == "ok"


# --- determinism and change -----------------------------------------------------------------


def test_same_files_give_identical_documents(make_site: MakeSite) -> None:
    """Two processes, or two machines with the same files elsewhere, behind one cache."""
    first_path = make_site(name="one")
    other_path = make_site(name="two")  # same articles and config, another folder
    clients = [
        create_app(first_path, clock=lambda: NOW).test_client(),
        create_app(first_path, clock=lambda: NOW).test_client(),
        create_app(other_path, clock=lambda: NOW).test_client(),
    ]
    for path in [*FEED_PATHS, "/", "/articles/erster", "/articles/klima/dritter"]:
        for headers in ({}, GZIP):
            answers = [c.get(path, headers=headers) for c in clients]
            assert answers[0].status_code == 200
            for other in answers[1:]:
                assert other.data == answers[0].data, path
                for name in ("ETag", "Last-Modified"):
                    assert other.headers[name] == answers[0].headers[name], (path, name)


def test_embargo_lifts_without_restart_and_tags_follow_content(make_site: MakeSite) -> None:
    now = [NOW]
    client = create_app(make_site(), clock=lambda: now[0]).test_client()
    before = {path: client.get(path) for path in ("/", "/feeds/klima.atom", "/feeds/politik.atom")}
    assert client.get("/articles/klima/sperrfrist").status_code == 404

    now[0] = datetime(2030, 1, 1, 7, 0, 1, tzinfo=UTC)  # after 08:00+01:00
    page = client.get("/articles/klima/sperrfrist")
    assert page.status_code == 200
    klima = client.get("/feeds/klima.atom")
    assert "EMBARGO-SECRET Sperrfrist" in [e.title for e in feedparser.parse(klima.data).entries]
    for path in ("/", "/feeds/klima.atom"):
        after = client.get(path)
        assert after.headers["ETag"] != before[path].headers["ETag"]
        earlier = http_time(before[path].headers["Last-Modified"])
        assert http_time(after.headers["Last-Modified"]) > earlier
        stale = client.get(path, headers={"If-None-Match": before[path].headers["ETag"]})
        assert stale.status_code == 200
    # A feed the article is not in did not change, so neither did its validators.
    politik = client.get("/feeds/politik.atom")
    assert politik.data == before["/feeds/politik.atom"].data
    assert politik.headers["ETag"] == before["/feeds/politik.atom"].headers["ETag"]


@pytest.mark.parametrize("gz", [False, True], ids=["identity", "gzip"])
def test_if_match(client: FlaskClient, gz: bool) -> None:
    # RFC 9110 13.1.1: a GET whose If-Match holds the current tag (or "*") proceeds normally;
    # only a tag that does not match is answered 412.
    accept = GZIP if gz else {}
    current = client.get("/feeds/alle.rss", headers=accept)
    for header in (current.headers["ETag"], "*"):
        response = client.get("/feeds/alle.rss", headers={"If-Match": header, **accept})
        assert response.status_code == 200, header
        assert response.data == current.data
    stale = client.get("/feeds/alle.rss", headers={"If-Match": '"stale"', **accept})
    assert stale.status_code == 412


# --- methods and the access log ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", DOCS)
def test_other_methods_on_documents_get_405_with_allow(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_other_methods_on_unknown_paths_are_still_404(client: FlaskClient) -> None:
    assert client.post("/feeds/nichts.rss").status_code == 404
    assert client.post("/nirgends").status_code == 404


@pytest.mark.parametrize(
    "raw, shown",
    [
        ('/feeds/x%0a127.0.0.1 "GET /admin" 200', "/feeds/x\\x0a127.0.0.1"),
        ("/%1b[2J%1b]0;owned%07", "/\\x1b[2J\\x1b]0;owned\\x07"),
    ],
)
def test_the_access_log_cannot_be_forged(
    make_site: MakeSite,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    raw: str,
    shown: str,
) -> None:
    monkeypatch.setenv("FEEDS_ACCESS_LOG", "1")
    client = create_app(make_site(), clock=lambda: NOW).test_client()
    with caplog.at_level("INFO", logger="feeds.access"):
        client.get(raw)
    (record,) = [r for r in caplog.records if r.name == "feeds.access"]
    line = record.getMessage()
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert shown in line


def test_log_lines_escape_what_files_and_clients_send_but_keep_the_program_s_own(
    make_site: MakeSite, capfd: pytest.CaptureFixture[str]
) -> None:
    import logging

    from feeds import logs

    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        logs.configure()
        logging.getLogger("feeds.test").warning("article problem: %s", "evil\nname.md: forged line")
        logging.getLogger("werkzeug").info("\x1b[33mPress CTRL+C to quit\x1b[0m")
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        root.handlers[:] = saved
        root.setLevel(level)
    err = capfd.readouterr().err
    assert "article problem: evil\\x0aname.md: forged line" in err
    assert len(err.splitlines()) == 2
    assert "\x1b[33mPress CTRL+C" in err


def test_hub_and_self_are_announced_in_a_link_header_of_every_feed_format(make_site) -> None:
    hubs = ["https://hub.example.net/", "https://pubsubhubbub.appspot.com/"]
    client = create_app(make_site(config={"websub": {"hubs": hubs}}), clock=lambda: NOW).test_client()
    for fmt in ("rss", "atom", "json"):
        response = client.get(f"/feeds/alle.{fmt}")
        expected = (
            '<https://hub.example.net/>; rel="hub", <https://pubsubhubbub.appspot.com/>; rel="hub", '
            f'<https://news.example.org/feeds/alle.{fmt}>; rel="self"'
        )
        assert response.headers["Link"] == expected
        again = client.get(f"/feeds/alle.{fmt}", headers={"If-None-Match": response.headers["ETag"]})
        assert again.status_code == 304 and again.headers["Link"] == expected
    assert "Link" not in client.get("/").headers
    assert "Link" not in client.get("/feeds/alle").headers
    plain = create_app(make_site(name="plain"), clock=lambda: NOW).test_client()
    assert "Link" not in plain.get("/feeds/alle.atom").headers


def test_stale_lifetimes_are_configurable_per_site_and_feed(make_site) -> None:
    config = make_site(
        config={
            "defaults": {"stale_while_revalidate": 10, "stale_if_error": 3600},
            "feeds": {"kurz": {"stale_while_revalidate": 0, "stale_if_error": 0}},
        }
    )
    client = create_app(config, clock=lambda: NOW).test_client()
    assert client.get("/feeds/alle.atom").headers["Cache-Control"] == (
        "public, max-age=300, stale-while-revalidate=10, stale-if-error=3600"
    )
    assert client.get("/").headers["Cache-Control"].endswith("stale-while-revalidate=10, stale-if-error=3600")
    for path in ("/feeds/kurz.rss", "/feeds/kurz"):  # 0: caches must not serve it stale
        assert client.get(path).headers["Cache-Control"] == "public, max-age=600"
    etag = client.get("/feeds/alle.atom").headers["ETag"]
    not_modified = client.get("/feeds/alle.atom", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["Cache-Control"].endswith("stale-if-error=3600")


@pytest.mark.parametrize(
    "path",
    [
        "/feeds/alle.json",
        "/feeds/alle",
        "/feeds.opml",
        "/feeds/kurz/archive/1.json",
        "/feeds/kurz/archive/1.rss",
    ],
)
def test_every_new_document_is_conditional_get_able_and_gzipped(client: FlaskClient, path: str) -> None:
    first = client.get(path)
    assert first.status_code == 200 and strong_tag(first)
    assert first.headers["Vary"] == "Accept-Encoding" and "Last-Modified" in first.headers
    by_tag = client.get(path, headers={"If-None-Match": first.headers["ETag"]})
    by_date = client.get(path, headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert by_tag.status_code == by_date.status_code == 304 and by_tag.data == b""
    zipped = client.get(path, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped.data) == first.data
    head = client.head(path)
    assert head.status_code == 200 and head.data == b"" and head.headers["ETag"] == first.headers["ETag"]


# --- hostile headers on the production server ---------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_huge_accept_encodings_cost_a_worker_neither_time_nor_memory(make_site: MakeSite, tmp_path) -> None:
    """Distinct 300 KB Accept-Encoding values against granian (gunicorn answers 431 itself to a
    header field over 8 KB): Werkzeug parsed each for 80-340 ms and kept it as a cache key, so
    700 of them added about 100 MB to a worker and held up every poller behind them."""
    server = harness.start(
        lambda port: harness.production_command(port, 1),
        tmp_path / "server.log",
        config=make_site(),
        state_dir=tmp_path / "state",
        timeout=PATIENCE,
        memory_limit=2 << 30,
    )
    with server:
        (worker,) = server.workers()
        tag = server.fetch("/feeds/alle.rss").headers["etag"]
        poll = {"If-None-Match": tag, "Accept-Encoding": "gzip, deflate, br, zstd"}

        def hostile(first: int, count: int, replies: list[harness.Reply]) -> None:
            for i in range(first, first + count):
                headers = {"Accept-Encoding": hostile_coding(i), "If-None-Match": tag}
                replies.append(server.fetch("/feeds/alle.rss", headers))

        # A flood while a reader polls: the worker's CPU per hostile request. That is what held
        # the pollers up (80-340 ms each); unlike a poller's wall-clock wait, it does not grow
        # when the machine is busy with other work.
        flood_count, cpu_before = 50, cpu_seconds(worker)
        replies: list[harness.Reply] = []
        flood = threading.Thread(target=hostile, args=(0, flood_count, replies))
        polls = 0
        flood.start()
        while flood.is_alive() or polls < 5:
            assert server.fetch("/feeds/alle.rss", poll).status == 304
            polls += 1
            flood.join(timeout=0.02)  # a poller every 20 ms or so: its own cost stays small
        per_request = (cpu_seconds(worker) - cpu_before) / flood_count
        assert per_request < 0.010, f"{per_request * 1000:.0f} ms of worker CPU per hostile request"
        assert len(replies) == flood_count

        before = harness.memory(worker).rss_mb
        hostile(flood_count, 1000, replies)
        after = harness.memory(worker).rss_mb
        assert after - before < 10, f"worker grew from {before:.0f} MB to {after:.0f} MB"
        assert server.fetch("/feeds/alle.rss", poll).status == 304
        # Answered as a poller with no Accept-Encoding would be: identity, not modified.
        assert [(r.status, r.headers.get("content-encoding")) for r in replies] == [(304, None)] * 1050
