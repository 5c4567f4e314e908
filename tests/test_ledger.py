"""The ledger: Last-Modified that never goes backwards, and the date dateless articles were seen.

Both are promises to readers that every worker and every restart must keep alike, so they are
tested across two Ledger instances over one file, as two workers would use it.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from feeds import create_app
from feeds.store import Ledger, decide

from conftest import NOW, SMALL_ARTICLES, MakeSite

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def s(moment: datetime) -> int:
    return int(moment.timestamp())


def test_decide_keeps_the_latest_date_and_never_goes_back() -> None:
    assert decide(None, "a", 100, 500) == 100  # first version: its natural date
    assert decide(("a", 100), "a", 100, 500) == 100  # the same bytes: the same date
    assert decide(("a", 100), "b", 200, 500) == 200  # newer natural date: taken
    # The newest entry deleted: natural date moves back; the change is dated when it was seen.
    assert decide(("b", 200), "c", 100, 500) == 500
    # Seen in the same second as the previous version: still later than it.
    assert decide(("b", 500), "c", 100, 500) == 501


@pytest.mark.parametrize("shared", [True, False], ids=["sqlite", "memory"])
def test_a_document_whose_newest_entry_goes_gets_a_later_date(tmp_path: Path, shared: bool) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite" if shared else None)
    first = ledger.stamp("feed:x.rss", "aaa", T0 + timedelta(days=2), T0 + timedelta(days=3))
    assert first == T0 + timedelta(days=2)
    after_delete = ledger.stamp("feed:x.rss", "bbb", T0 + timedelta(days=1), T0 + timedelta(days=4))
    assert after_delete > first
    # Back to the first bytes (the article restored): still a change for a reader holding "bbb".
    assert ledger.stamp("feed:x.rss", "aaa", T0 + timedelta(days=2), T0 + timedelta(days=5)) > after_delete


def test_two_workers_agree_on_last_modified(tmp_path: Path) -> None:
    a, b = Ledger(tmp_path / "l.sqlite"), Ledger(tmp_path / "l.sqlite")
    a.stamp("feed:x.rss", "one", T0, T0)
    moved = a.stamp("feed:x.rss", "two", T0 - timedelta(days=1), T0 + timedelta(hours=1))
    assert b.lookup("feed:x.rss", "two") == moved
    assert b.stamp("feed:x.rss", "two", T0 - timedelta(days=1), T0 + timedelta(hours=5)) == moved


def test_the_first_worker_to_see_an_article_sets_its_date_for_everyone(tmp_path: Path) -> None:
    a, b = Ledger(tmp_path / "l.sqlite"), Ledger(tmp_path / "l.sqlite")
    seen_a = a.first_seen(["x", "y"], T0)
    seen_b = b.first_seen(["y", "z"], T0 + timedelta(hours=1))
    assert seen_a == {"x": T0, "y": T0}
    assert seen_b == {"y": T0, "z": T0 + timedelta(hours=1)}
    restarted = Ledger(tmp_path / "l.sqlite")
    assert restarted.first_seen(["x", "z"], T0 + timedelta(days=9)) == {"x": T0, "z": T0 + timedelta(hours=1)}


def test_a_foreign_file_is_left_untouched_and_the_ledger_works_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE accounts (name TEXT)")
        db.execute("INSERT INTO accounts VALUES ('alice')")
    before = path.read_bytes()
    ledger = Ledger(path)
    assert ledger.first_seen(["x"], T0) == {"x": T0}
    assert ledger.stamp("k", "e", T0, T0) == T0
    ledger.close()
    assert path.read_bytes() == before


def test_an_unusable_state_folder_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    ledger = Ledger(blocker / "l.sqlite")
    assert ledger.first_seen(["x"], T0) == {"x": T0}
    assert ledger.first_seen(["x"], T0 + timedelta(days=1)) == {"x": T0}


@pytest.mark.parametrize("shared", [True, False], ids=["sqlite", "memory"])
def test_a_change_is_claimed_once_and_a_new_document_is_only_recorded(tmp_path: Path, shared: bool) -> None:
    ledger = Ledger(tmp_path / "l.sqlite" if shared else None)
    url = "https://news.example.org/feeds/alle.atom"
    assert not ledger.claim_change(url, "one")  # first seen: the baseline, nothing to announce
    assert not ledger.claim_change(url, "one")
    assert ledger.claim_change(url, "two")
    assert not ledger.claim_change(url, "two")
    assert ledger.claim_change(url, "one")  # back to the old bytes: a change too
    assert not ledger.claim_change("https://news.example.org/feeds/neu.atom", "x")


def test_of_all_workers_bringing_a_change_exactly_one_claims_it(tmp_path: Path) -> None:
    workers = [Ledger(tmp_path / "l.sqlite") for _ in range(3)]
    assert not any(w.claim_change("u", "one") for w in workers)
    assert [w.claim_change("u", "two") for w in workers] == [True, False, False]
    assert [w.claim_change("u", "three") for w in reversed(workers)] == [True, False, False]
    assert not Ledger(tmp_path / "l.sqlite").claim_change("u", "three")  # a restart announces nothing


def test_workers_set_up_the_ledger_one_at_a_time(tmp_path: Path) -> None:
    """Regression: of two workers starting together, one got "database is locked" while the
    other switched the new file to WAL, kept its dates in memory, and so announced every change
    a second time. Setting up now waits for the lock file beside the ledger."""
    import fcntl
    import threading

    path = tmp_path / "validators.sqlite"
    opened: list[Ledger] = []
    with open(tmp_path / "validators.sqlite.lock", "a+b") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)  # another worker is setting it up
        opener = threading.Thread(target=lambda: opened.append(Ledger(path)))
        opener.start()
        opener.join(0.3)
        assert opener.is_alive() and not opened  # it waits its turn instead of failing
    opener.join(10)
    assert opened and opened[0].claim_change("k", "e1") is False  # shared, not in memory
    other = Ledger(path)
    assert other.claim_change("k", "e2") is True and opened[0].claim_change("k", "e2") is False


# --- forged or damaged rows: ignored with one log line, never an error to a reader ----------------


@pytest.mark.parametrize("forged", ["1000000000000000", "'abc'", "-99999999999999", "1.5", "x'00'"])
def test_a_forged_last_modified_is_ignored(
    make_site: MakeSite, tmp_path: Path, forged: str, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    config = make_site()
    first = create_app(config, clock=lambda: NOW, state_dir=state).test_client().get("/feeds/alle.rss")
    assert first.status_code == 200
    with sqlite3.connect(state / "validators.sqlite") as db:
        assert db.execute(f"UPDATE versions SET lm = {forged}").rowcount > 0
    client = create_app(config, clock=lambda: NOW, state_dir=state).test_client()
    with caplog.at_level(logging.WARNING):
        again = client.get("/feeds/alle.rss")
        revalidated = client.get(
            "/feeds/alle.rss", headers={"If-Modified-Since": first.headers["Last-Modified"]}
        )
    assert again.status_code == 200 and again.data == first.data
    assert 2000 < parsedate_to_datetime(again.headers["Last-Modified"]).year < 2100
    assert revalidated.status_code in (200, 304)
    assert "malformed row" in caplog.text


@pytest.mark.parametrize("forged", ["1000000000000000", "'abc'", "-1e300"])
def test_a_forged_first_seen_date_is_ignored_at_a_cold_and_a_warm_start(
    make_site: MakeSite, tmp_path: Path, forged: str
) -> None:
    state = tmp_path / "state"
    config = make_site({**SMALL_ARTICLES, "politik/ohne.txt": "Ohne Datum\nText ohne Datum.\n"})
    assert create_app(config, clock=lambda: NOW, state_dir=state).test_client().get("/").status_code == 200
    with sqlite3.connect(state / "validators.sqlite") as db:
        assert db.execute(f"UPDATE first_seen SET seen = {forged}").rowcount == 1
    for index in state.glob("index-*.sqlite*"):
        index.unlink()  # a cold start dates every dateless article again
    cold = create_app(config, clock=lambda: NOW, state_dir=state).test_client()
    assert "Ohne Datum" in cold.get("/feeds/alle.rss").get_data(as_text=True)
    warm = create_app(config, clock=lambda: NOW, state_dir=state)
    path = config.parent / "articles" / "politik" / "ohne.txt"
    path.write_text("Ohne Datum, neu\nText.\n", encoding="utf-8")
    assert warm.extensions["feeds"].apply(["politik/ohne.txt"])
    assert "Ohne Datum, neu" in warm.test_client().get("/feeds/alle.rss").get_data(as_text=True)
