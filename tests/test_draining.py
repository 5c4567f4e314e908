"""A worker about to be replaced by a reload closes each connection after its answer, so a
keep-alive client never has a request in flight on a connection the stopping worker closes
(the whole reload with real granian: tests/test_deploy.py)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterable
from typing import Any

from feeds.draining import DRAIN, Draining, newer_siblings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _headers(app: Draining) -> dict[str, str]:
    got: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        got.update(headers)

    b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, start_response))
    return got


def test_connections_close_for_a_while_once_a_newer_worker_appears() -> None:
    siblings = frozenset({40})  # started with the server, a moment after this one
    clock = Clock()
    app = Draining(_app, look=lambda: siblings, clock=clock)
    assert "Connection" not in _headers(app)
    clock.now += 1.5
    assert "Connection" not in _headers(app)
    siblings = frozenset({40, 41})  # the reload started a new worker
    clock.now += 1.5
    assert _headers(app)["Connection"] == "close"
    clock.now += DRAIN - 2
    assert _headers(app)["Connection"] == "close"
    clock.now += 3  # not stopped after all (a crash's respawn): keep-alive again
    assert "Connection" not in _headers(app)
    siblings = frozenset({40, 41, 42})  # the next reload
    clock.now += 1.5
    assert _headers(app)["Connection"] == "close"


def _report(started: Any, ask: Any, answer: Any, done: Any) -> None:
    started.set()
    ask.wait(30)
    answer.put(sorted(newer_siblings()))
    done.wait(30)  # a worker that has exited is no newer worker: both live until both answered


def test_a_worker_sees_the_workers_started_after_it_and_no_others() -> None:
    """Two real processes forked from one parent (as granian's workers are its children, with
    its command line): the older sees the newer, the newer sees none."""
    context = multiprocessing.get_context("fork")
    ask, done, answers = context.Event(), context.Event(), [context.Queue(), context.Queue()]
    older_started, newer_started = context.Event(), context.Event()
    older = context.Process(target=_report, args=(older_started, ask, answers[0], done))
    older.start()
    assert older_started.wait(30)
    time.sleep(0.05)  # start times count in ticks of 10 ms: the newer one starts ticks later
    newer = context.Process(target=_report, args=(newer_started, ask, answers[1], done))
    newer.start()
    assert newer_started.wait(30)
    ask.set()
    try:
        assert answers[0].get(timeout=30) == [newer.pid]
        assert answers[1].get(timeout=30) == []
    finally:
        done.set()
        older.join(30)
        newer.join(30)
