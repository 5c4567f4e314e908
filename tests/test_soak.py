"""The short soak: tests/support/soak.py (bench/soak.py runs it) for 20 s against granian, 2 workers.

Eight pollers send conditional GETs to every feed, the index and pages, and a probe asks
/healthz every 250 ms, while articles are added, edited (in place in chunks and renamed into
place), deleted and embargoed, config.yaml is rewritten (once broken for 3 seconds), and midway
a symlink to a secret outside the articles folder, a YAML alias bomb, an article over 2 MiB and a
named pipe are dropped into it. The full run is
``.venv/bin/python bench/soak.py --pollers 16 --minutes 3 --out bench/SOAK.md`` (bench/SOAK.md).
"""

from __future__ import annotations

import re

import pytest
import yaml

from feeds import create_app

from conftest import DEMO_CONFIG, NOW, MakeSite, StartServer
from support import soak

# -- the soak's document checker, on documents of known shape (fast) ----------------------------


def test_every_document_of_the_demo_site_passes_the_checker() -> None:
    """No false alarm: the demo's feeds, index and pages are whole."""
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    summary = {name for name, feed in config["feeds"].items() if feed.get("content") == "summary"}
    client = create_app(DEMO_CONFIG, clock=lambda: NOW).test_client()
    index = client.get("/").get_data(as_text=True)
    paths = sorted(set(re.findall(r'href="[^"]*?(/(?:feeds|articles)/[^"#?]+)"', index)))
    assert (
        sum(p.startswith("/feeds/") for p in paths) >= 20
        and sum(p.startswith("/articles/") for p in paths) >= 10
    )
    problems = {}
    for path in ["/", *paths]:
        is_feed = path.startswith("/feeds/") and "." in path.rsplit("/", 1)[1]  # not the feed's page
        kind = "feed" if is_feed else "page" if path.startswith("/articles/") else "index"
        full = kind == "feed" and path.rsplit("/", 1)[1].split(".")[0] not in summary
        found = soak.check_document(kind, full, client.get(path).data)
        if found != (None, [], []):
            problems[path] = found
    assert problems == {}


@pytest.mark.parametrize(
    "body, truncated, hollow",
    [
        ("BEGIN-SOAKM7X\n\nText.\n\nEND-SOAKM7X\n", False, False),
        ("BEGIN-SOAKM7X\n\nText, abgeschnitten", True, False),
        ("", False, True),  # what a server shows of a file it caught mid-write
    ],
    ids=["whole", "truncated", "hollow"],
)
def test_the_checker_finds_soak_articles_without_their_whole_body(
    make_site: MakeSite, body: str, truncated: bool, hollow: bool
) -> None:
    article = f"---\ntitle: Soak SOAKM7X Messung\ndate: 2025-05-01\nsummary: Kurz.\n---\n{body}"
    client = create_app(make_site({"klima/soak-7.md": article}), clock=lambda: NOW).test_client()
    for kind, path, full in (
        ("feed", "/feeds/alle.rss", True),
        ("feed", "/feeds/alle.atom", True),
        ("page", "/articles/klima/soak-7", False),
    ):
        malformed, cut, empty = soak.check_document(kind, full, client.get(path).data)
        assert malformed is None
        assert bool(cut) == truncated, (path, cut)
        assert bool(empty) == hollow, (path, empty)
    # A summary feed shows no bodies: nothing to miss there.
    assert soak.check_document("feed", False, client.get("/feeds/kurz.atom").data) == (None, [], [])


def test_a_document_rendered_while_its_article_is_rewritten_is_never_hollow(
    make_site: MakeSite, start_server: StartServer
) -> None:
    """The hollow check against a real server, deterministically: nothing has shown the article
    yet when a writer starts rewriting it in place, and a reader asks for it before the writer
    closes the file. A feed may show the old version whole or leave the entry out (a no-store
    answer), a page may also be a 404 or ask to come back (503 with Retry-After; the soak counts
    that as a 5xx); neither shows the article without its body."""
    text = "---\ntitle: Soak SOAKM7X Messung\ndate: 2025-05-01\nsummary: Kurz.\n---\nBEGIN-SOAKM7X\n\n"
    text += "Erster Absatz. " * 40 + "\n\nEND-SOAKM7X\n"
    config = make_site({"klima/soak-7.md": text})
    server = start_server(config)
    with open(config.parent / "articles" / "klima" / "soak-7.md", "w", encoding="utf-8") as writer:
        writer.write(text.replace("SOAKM7X", "SOAKM8X")[:150])  # the front matter and a bit
        writer.flush()
        for kind, path, full in (
            ("feed", "/feeds/alle.atom", True),
            ("page", "/articles/klima/soak-7", False),
        ):
            reply = server.fetch(path)
            assert reply.status in (200, 404) or (reply.status == 503 and "retry-after" in reply.headers), (
                path
            )
            if reply.status == 200:
                assert soak.check_document(kind, full, reply.body) == (None, [], []), path


def test_the_checker_finds_malformed_documents() -> None:
    assert soak.check_document("feed", True, b"<rss><channel><title>x</title>")[0]
    assert soak.check_document("page", False, b"<html><body><article><h1>x</h1>")[0]


# -- the soak itself (20 seconds) -------------------------------------------------------------


@pytest.fixture(scope="module")
def result() -> soak.Result:
    outcome = soak.run(soak.Options(pollers=8, seconds=20, server="granian"))
    print(outcome.markdown())  # shown with -s or on failure
    return outcome


@pytest.mark.slow
def test_the_server_never_fails_hangs_or_serves_a_broken_document(result: soak.Result) -> None:
    assert result.requests > 1000
    assert result.statuses[200] > 0 and result.statuses[304] > 0
    for check in ("5xx", "hangs", "malformed", "truncated", "hollow"):
        assert result.incidents[check] == [], check
    assert result.validated > 10
    assert not result.client_errors
    assert result.tracebacks == 0


@pytest.mark.slow
def test_hostile_files_do_no_harm(result: soak.Result) -> None:
    assert {drop.split()[0] for drop in result.drops} == set(soak.HOSTILE), result.drops
    assert result.incidents["secret served"] == []  # the symlink's target is outside the articles folder
    assert result.incidents["/healthz failed"] == []
    assert result.health_max < soak.HEALTH_LIMIT, result.markdown()
    assert len(result.health) > 40  # every 250 ms for 20 s


@pytest.mark.slow
def test_every_change_is_seen_within_two_seconds(result: soak.Result) -> None:
    kinds = {c.kind for c in result.changes}
    assert {"add", "edit", "delete", "config"} <= kinds, kinds
    assert result.incidents["never seen"] == []
    assert result.max_latency < soak.LATENCY_LIMIT, result.markdown()
    assert result.incidents["seen before their embargo"] == []


@pytest.mark.slow
def test_a_broken_config_degrades_health_and_the_fix_restores_it(result: soak.Result) -> None:
    assert result.health_degraded and None not in result.health_degraded
    assert result.health_ok and None not in result.health_ok


@pytest.mark.slow
def test_workers_agree_and_no_reader_keeps_an_outdated_copy(result: soak.Result) -> None:
    assert result.final_checked > 10 and not result.final_cut_short
    assert result.incidents[soak.ETAGS_DIFFER] == []
    assert result.incidents[soak.DATES_DIFFER] == []
    assert result.incidents["stale caches"] == []
    # While a change settles, workers may briefly give one ETag two dates; they must converge.
    assert result.lm_window < soak.LATENCY_LIMIT, result.incidents[soak.ALTERNATING]


@pytest.mark.slow
def test_the_report_says_what_was_measured(result: soak.Result) -> None:
    report = result.markdown()
    for words in (
        "requests",
        "status counts",
        "5xx",
        "hangs",
        "malformed",
        "hollow",
        "truncated",
        "/healthz",
    ):
        assert words in report
    for words in ("secret", "hostile files dropped", "change → visible", "RSS at start", "RSS at end"):
        assert words in report
    assert result.rss_start and result.rss_end
    assert not result.failures(), report
