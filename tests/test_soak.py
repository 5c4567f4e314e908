"""The short soak: bench/soak.py for 20 seconds against granian with 2 workers (issue 5).

Eight pollers send conditional GETs to every feed, the index and pages while articles are
added, edited (in place in chunks and renamed into place), deleted and embargoed, and
config.yaml is rewritten (once broken for 3 seconds). The full run is
``.venv/bin/python bench/soak.py --pollers 16 --minutes 3 --out bench/SOAK.md`` (bench/SOAK.md).
"""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))  # importable by name: the document checker runs in a spawned process

import soak  # noqa: E402


@pytest.fixture(scope="module")
def result() -> soak.Result:
    outcome = soak.run(soak.Options(pollers=8, seconds=20, server="granian"))
    print(outcome.markdown())  # shown with -s or on failure
    return outcome


def test_the_server_never_fails_and_every_document_parses(result: soak.Result) -> None:
    assert result.requests > 1000
    assert result.statuses[200] > 0 and result.statuses[304] > 0
    assert result.fivexx == []
    assert result.malformed == []
    assert result.validated > 10
    assert result.truncated == []
    assert not result.client_errors
    assert result.tracebacks == 0


def test_every_change_is_seen_within_two_seconds(result: soak.Result) -> None:
    kinds = {c.kind for c in result.changes}
    assert {"add", "edit", "delete", "config"} <= kinds, kinds
    assert [f"{c.kind} {c.marker} ({c.how})" for c in result.missed] == []
    assert result.max_latency < soak.LATENCY_LIMIT, result.markdown()
    assert not any(c.early for c in result.changes)  # no embargo lifted early


def test_a_broken_config_degrades_health_and_the_fix_restores_it(result: soak.Result) -> None:
    assert result.health_degraded and None not in result.health_degraded
    assert result.health_ok and None not in result.health_ok
    assert result.health_errors == 0


def test_workers_agree_and_no_reader_keeps_an_outdated_copy(result: soak.Result) -> None:
    assert result.final_checked > 10
    assert result.final_etags_differ == []
    assert result.final_dates_differ == []
    assert result.stale_caches == []
    # While a change settles, workers may briefly give one ETag two dates; they must converge.
    assert result.lm_window < soak.LATENCY_LIMIT, result.lm_interleaved


def test_the_report_says_what_was_measured(result: soak.Result) -> None:
    report = result.markdown()
    for words in (
        "requests",
        "status counts",
        "5xx",
        "malformed",
        "change → visible",
        "RSS at start",
        "RSS at end",
    ):
        assert words in report
    assert result.rss_start and result.rss_end
    assert not result.failures(), report
