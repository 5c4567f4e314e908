"""The polling budget: 429 with Retry-After for a client over it, nothing for one within it.

The budget's own tests pin its clock and keep its table in tmp_path; the server's run the
production command (granian, two workers sharing the table in /dev/shm) on loopback, where
every address of 127.0.0.0/8 is another client (``source``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from feeds.budget import SLOTS, Budget, Table, table_path
from feeds.config import Polling

from conftest import MakeSite
from support import harness
from support.waiting import PATIENCE

FEED = "/feeds/alle.rss"
POLL = Polling(conditional=60, unconditional=300)
BEHIND = Polling(conditional=60, unconditional=300, proxies=("127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32"))
TABLE_BYTES = 64 + 16 * SLOTS


class Clock:
    """Nanoseconds, as ``time.monotonic_ns`` gives them; tests move ``now`` (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> int:
        return round(self.now * 1e9)


def request(
    peer: str = "192.0.2.1", *, conditional: bool = False, forwarded: str | None = None
) -> dict[str, Any]:
    environ: dict[str, Any] = {"REMOTE_ADDR": peer}
    if conditional:
        environ["HTTP_IF_NONE_MATCH"] = '"x"'
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    return environ


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def budget(tmp_path: Path, clock: Clock) -> Budget:
    """A worker's budget over a state folder, its table in tmp_path instead of /dev/shm."""
    (tmp_path / "shm").mkdir()
    return Budget(tmp_path / "state", clock=clock, memory=tmp_path / "shm")


# -- the rule --------------------------------------------------------------------------------------


def test_a_client_waits_the_seconds_left_of_its_interval(budget: Budget, clock: Clock) -> None:
    assert budget.wait(request(), FEED, POLL) == 0
    clock.now += 100.2
    assert budget.wait(request(), FEED, POLL) == 200  # 199.8 s left, rounded up
    clock.now += 199.5
    assert budget.wait(request(), FEED, POLL) == 1
    clock.now += 0.3
    assert budget.wait(request(), FEED, POLL) == 0  # exactly the interval after the first


def test_the_interval_is_that_of_the_request_being_judged(budget: Budget, clock: Clock) -> None:
    """One slot per client and document; a conditional request waits the conditional interval
    since the client's last request of either kind, an unconditional one the unconditional."""
    assert budget.wait(request(conditional=True), FEED, POLL) == 0
    clock.now += 61
    assert budget.wait(request(conditional=True), FEED, POLL) == 0
    clock.now += 100
    assert budget.wait(request(), FEED, POLL) == 200
    assert budget.wait(request(conditional=True), FEED, POLL) == 0


def test_a_refused_request_does_not_push_the_next_one_back(budget: Budget, clock: Clock) -> None:
    """A reader polling every 10 s with a 60 s budget is let through every 60 s."""
    answered = []
    for _ in range(19):
        if budget.wait(request(conditional=True), FEED, POLL) == 0:
            answered.append(clock.now - 1000)
        clock.now += 10
    assert answered == [0, 60, 120, 180]


def test_other_clients_and_other_documents_are_not_affected(budget: Budget, clock: Clock) -> None:
    assert budget.wait(request(), FEED, POLL) == 0
    assert budget.wait(request(), FEED, POLL) > 0
    assert budget.wait(request(), "/feeds/alle.atom", POLL) == 0
    assert budget.wait(request("192.0.2.2"), FEED, POLL) == 0
    assert budget.wait(request("2001:db8::1"), FEED, POLL) == 0
    assert budget.wait(request("::ffff:192.0.2.1"), FEED, POLL) > 0  # the same client over IPv6


def test_a_peer_that_is_no_address_is_never_refused(budget: Budget) -> None:
    """A unix socket: no client can be told from another, so none is held to a budget."""
    for peer in ("", "unix:/run/feeds.sock", "localhost"):
        assert [budget.wait(request(peer), FEED, POLL) for _ in range(3)] == [0, 0, 0], peer


def test_the_workers_of_a_state_folder_share_one_table(tmp_path: Path, budget: Budget, clock: Clock) -> None:
    other_worker = Budget(tmp_path / "state", clock=clock, memory=tmp_path / "shm")
    assert budget.wait(request(), FEED, POLL) == 0
    assert other_worker.wait(request(), FEED, POLL) == 300
    assert budget.shared and other_worker.shared
    elsewhere = Budget(tmp_path / "other-state", clock=clock, memory=tmp_path / "shm")
    assert elsewhere.wait(request(), FEED, POLL) == 0  # another site: another table
    assert len(list((tmp_path / "shm").iterdir())) == 2


def test_clients_sharing_a_slot_let_each_other_through_and_never_refuse(tmp_path: Path, clock: Clock) -> None:
    """A full table forgets (the newest record wins); it never mistakes one client for another."""
    one_slot = Budget(tmp_path / "state", clock=clock, slots=1, memory=tmp_path)
    peers = [f"192.0.2.{n}" for n in range(1, 51)]
    for _ in range(3):
        assert [one_slot.wait(request(peer), FEED, POLL) for peer in peers] == [0] * len(peers)
        clock.now += 1
    assert one_slot.wait(request(peers[-1]), FEED, POLL) > 0  # the newest record is kept


def test_a_flood_of_distinct_clients_keeps_memory_fixed_and_refuses_none(
    tmp_path: Path, budget: Budget, clock: Clock
) -> None:
    """100,000 clients, each once: every one let through, the table stays 4 MiB and the worker's
    memory does not grow with them; a client polling all along is still held to its budget."""
    assert budget.wait(request("198.51.100.1"), FEED, POLL) == 0
    table = table_path(tmp_path / "state", tmp_path / "shm")
    blocks = sys.getallocatedblocks()
    refused = abuser_through = 0
    for n in range(100_000):
        clock.now += 0.0001
        refused += budget.wait(request(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"), FEED, POLL) > 0
        if n % 100 == 0:
            abuser_through += budget.wait(request("198.51.100.1"), FEED, POLL) == 0
    grown = sys.getallocatedblocks() - blocks
    assert refused == 0
    assert abuser_through <= 5  # once more each time the flood overwrote its slot (about 1 in 3)
    assert grown < 20_000, grown  # the parsed peers kept (at most 4,096), not one per client
    assert table.stat().st_size == TABLE_BYTES


# -- who the client is ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),  # a cache on this host
        ("127.0.0.1", "198.51.100.9, 203.0.113.7", "203.0.113.7"),  # the left is the client's to write
        ("127.0.0.1", "203.0.113.7, 10.1.2.3", "203.0.113.7"),  # past a second trusted proxy
        ("127.0.0.1", "203.0.113.7,10.1.2.3 , 127.0.0.1", "203.0.113.7"),
        ("127.0.0.1", "10.1.2.3, 10.9.9.9", "10.1.2.3"),  # all trusted: the left-most
        ("127.0.0.1", "2001:db8::1, 2a00:1450::5", "2a00:1450::5"),
        ("127.0.0.1", "[2a00:1450::5]:443", "2a00:1450::5"),
        ("127.0.0.1", "203.0.113.7:51234", "203.0.113.7"),
        ("127.0.0.1", "::ffff:203.0.113.7", "203.0.113.7"),
        ("::ffff:127.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "", "127.0.0.1"),  # the cache's own request
        ("127.0.0.1", "unknown", "127.0.0.1"),  # malformed: the peer
        ("127.0.0.1", "203.0.113.7, garbage", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7\x00", "127.0.0.1"),
        ("203.0.113.50", "127.0.0.1", "203.0.113.50"),  # not a proxy: its header is never read
        ("203.0.113.50", "203.0.113.7", "203.0.113.50"),
    ],
)
def test_the_client_is_the_peer_or_whom_a_trusted_proxy_names(
    budget: Budget, peer: str, header: str, client: str
) -> None:
    found = budget.client(request(peer, forwarded=header), BEHIND.proxies)
    assert (
        found is not None
        and socket.inet_ntop(socket.AF_INET6 if len(found) == 16 else socket.AF_INET, found) == client
    )


def test_a_long_forwarded_chain_costs_sixteen_entries_at_most(budget: Budget) -> None:
    """Whoever a trusted proxy lets through writes the left of the header: 100,000 trusted
    hops are looked at sixteen deep (then the left-most of those is the client)."""
    chain = ", ".join(["203.0.113.7"] + ["10.0.0.1"] * 100_000)
    started = time.perf_counter()
    for _ in range(10):
        assert budget.client(request("127.0.0.1", forwarded=chain), BEHIND.proxies) == bytes([10, 0, 0, 1])
    assert time.perf_counter() - started < 0.5  # rpartition over 1 MB, sixteen times: well below


# -- the table: hostile contents of /dev/shm -----------------------------------------------------


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """Where the fixture budget's table lives."""
    return table_path(tmp_path / "state", tmp_path / "shm")


def test_the_table_is_made_private_whole_and_fixed(budget: Budget, table: Path) -> None:
    assert budget.wait(request(), FEED, POLL) == 0
    info = table.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_size == TABLE_BYTES
    assert [p.name for p in table.parent.iterdir()] == [table.name]  # no work file left


def private(budget: Budget, caplog: pytest.LogCaptureFixture, why: str) -> None:
    """The budget judges alone, after one log line naming the file and why."""
    with caplog.at_level(logging.WARNING, logger="feeds.budget"):
        assert budget.wait(request(), FEED, POLL) == 0
        assert budget.wait(request(), FEED, POLL) == 300
        assert not budget.shared
    lines = [r.getMessage() for r in caplog.records if r.name == "feeds.budget"]
    assert len(lines) == 1 and why in lines[0] and "each worker keeps its own" in lines[0], lines


def test_a_link_in_place_of_the_table_is_not_followed(
    tmp_path: Path, budget: Budget, table: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"x" * TABLE_BYTES)
    table.symlink_to(target)
    private(budget, caplog, "symbolic link")
    assert target.read_bytes() == b"x" * TABLE_BYTES


@pytest.mark.parametrize(
    ("contents", "mode", "why"),
    [
        (b"not ours", 0o600, "not a table"),
        (b"\0" * TABLE_BYTES, 0o600, "not a table"),  # the right size, no header
        (b"\0" * (TABLE_BYTES + 1), 0o600, "not a table"),
        (None, 0o600, "not a table"),  # the header of another count
        (None, 0o666, "only this user may write"),
    ],
)
def test_a_file_that_is_not_exactly_a_table_is_left_alone(
    tmp_path: Path,
    budget: Budget,
    table: Path,
    caplog: pytest.LogCaptureFixture,
    contents: bytes | None,
    mode: int,
    why: str,
) -> None:
    if contents is None:
        Budget(tmp_path / "state", slots=SLOTS // 2, memory=tmp_path / "shm").wait(request(), FEED, POLL)
        contents = table.read_bytes()
        if mode != 0o600:  # a table of ours that others may write: they could refuse anyone
            Path(table).unlink()
            Budget(tmp_path / "state", memory=tmp_path / "shm").wait(request(), FEED, POLL)
            contents = table.read_bytes()
    else:
        table.write_bytes(contents)
    table.chmod(mode)
    private(budget, caplog, why)
    assert table.read_bytes() == contents


def test_a_fifo_in_place_of_the_table_blocks_nothing(
    budget: Budget, table: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.mkfifo(table)
    private(budget, caplog, "regular file")


def test_garbage_in_the_table_refuses_no_one(tmp_path: Path, budget: Budget, table: Path) -> None:
    """Damaged slots (random words) read as no record: 20,000 clients, none refused."""
    assert budget.wait(request(), FEED, POLL) == 0
    with table.open("r+b") as fh:
        fh.seek(64)
        fh.write(os.urandom(TABLE_BYTES - 64))
    other = Budget(tmp_path / "state", memory=tmp_path / "shm")
    peers = (f"10.0.{n >> 8}.{n & 255}" for n in range(20_000))
    assert sum(other.wait(request(peer), FEED, POLL) for peer in peers) == 0


def test_without_a_shared_memory_folder_each_worker_keeps_its_own(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    budget = Budget(tmp_path / "state", clock=clock, memory=tmp_path / "no-such-folder")
    private(budget, caplog, "No such file")
    assert Table.open(None, 8).where is None  # a site without a state folder: the same


# -- the production server ---------------------------------------------------------------------

Production = Callable[..., harness.Server]


@pytest.fixture
def production(tmp_path: Path, make_site: MakeSite) -> Iterator[Production]:
    """granian as in production (two workers) over a small site with ``polling``; /metrics adds
    up both workers (prometheus_client's multiprocess folder)."""
    servers: list[harness.Server] = []

    def start(polling: dict[str, Any], workers: int = 2) -> harness.Server:
        name = f"server{len(servers) + 1}"
        counts = tmp_path / f"{name}-metrics"
        counts.mkdir()
        server = harness.start(
            lambda port: harness.production_command(port, workers),
            tmp_path / f"{name}.log",
            config=make_site(config={"polling": polling}, name=name),
            state_dir=tmp_path / f"{name}-state",
            env={"PROMETHEUS_MULTIPROC_DIR": str(counts)},
            timeout=PATIENCE,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        harness.stop(server)


def sample(server: harness.Server, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when absent), whatever order the labels come in."""
    total = 0.0
    for line in server.fetch("/metrics").body.decode().splitlines():
        found = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if found is None or found[1] != name:
            continue
        given = dict(re.findall(r'(\w+)="([^"]*)"', found[2] or ""))
        if all(given.get(k) == v for k, v in labels.items()):
            total += float(found[3])
    return total


def test_a_client_over_its_budget_gets_429_with_the_seconds_left(production: Production) -> None:
    server = production({"min_interval": 3600})
    assert server.fetch(FEED).status == 200
    refused = [server.fetch(FEED) for _ in range(6)]  # fresh connections: both workers answer
    refused.append(server.fetch(FEED, {"If-None-Match": '"anything"'}))
    for reply in refused:
        assert reply.status == 429, reply
        assert 3590 <= int(reply.headers["retry-after"]) <= 3600
        assert reply.headers["cache-control"] == "no-store"
        seconds = reply.headers["retry-after"]
        assert (
            reply.body == f"Too many requests for this document: ask again in {seconds} seconds.\n".encode()
        )
    head = server.fetch(FEED, method="HEAD")
    assert (head.status, head.body) == (429, b"")
    assert sample(server, "feeds_throttled_total", feed="alle.rss") == 8
    assert sample(server, "feeds_requests_total", feed="alle.rss", status="429") == 8


def test_a_client_within_its_budget_is_never_affected(production: Production) -> None:
    """Other clients, other documents, pages for people, files, health and metrics."""
    server = production({"min_interval": 3600})
    assert server.fetch(FEED).status == 200
    assert server.fetch(FEED).status == 429
    for source in ("127.0.0.2", "127.0.0.3"):
        assert server.fetch(FEED, source=source).status == 200
    assert server.fetch("/feeds/alle.atom").status == 200
    for path in (
        "/",
        "/feeds/alle",
        "/articles/erster",
        "/media/politik/images/a.png",
        "/healthz",
        "/metrics",
    ):
        statuses = {server.fetch(path).status for _ in range(3)}
        assert 429 not in statuses, (path, statuses)
    assert sample(server, "feeds_throttled_total") == 1


def test_behind_a_trusted_proxy_the_forwarded_client_is_judged(production: Production) -> None:
    server = production({"min_interval": 3600, "proxies": ["127.0.0.1"]})

    def via(forwarded: str, **options: Any) -> int:
        return server.fetch(FEED, {"X-Forwarded-For": forwarded}, **options).status

    assert [via("203.0.113.7"), via("203.0.113.7")] == [200, 429]
    assert via("203.0.113.7, 203.0.113.8") == 200  # the right-most is the reader
    assert [via("198.51.100.1, 203.0.113.8"), via("203.0.113.9")] == [429, 200]
    # From an address that is no proxy the header is never read: the peer is the client.
    assert via("192.0.2.1", source="127.0.0.2") == 200
    assert via("192.0.2.2", source="127.0.0.2") == 429


def pipelined(port: int, requests: list[bytes], batch: int = 500) -> list[int]:
    """The status of each request, sent ``batch`` at a time on one keep-alive connection (HEAD
    requests: every answer ends with its headers)."""
    statuses: list[int] = []
    with socket.create_connection((harness.HOST, port), timeout=PATIENCE) as sock:
        rest = b""
        for start in range(0, len(requests), batch):
            sock.sendall(b"".join(requests[start : start + batch]))
            wanted = min(len(requests), start + batch)
            while len(statuses) < wanted:
                chunk = sock.recv(1 << 20)
                assert chunk, f"connection closed after {len(statuses)} answers"
                *answers, rest = (rest + chunk).split(b"\r\n\r\n")
                statuses += [int(answer[9:12]) for answer in answers]
    return statuses


def head(client: str, conditional: bool = False) -> bytes:
    condition = b'If-None-Match: "x"\r\n' if conditional else b""
    return b"HEAD %s HTTP/1.1\r\nHost: news.example.org\r\nX-Forwarded-For: %s\r\n%s\r\n" % (
        FEED.encode(),
        client.encode(),
        condition,
    )


@pytest.mark.slow
def test_a_flood_of_100000_clients_refuses_none_and_leaves_memory_as_it_was(
    tmp_path: Path, production: Production
) -> None:
    """100,000 readers behind a trusted proxy, each once, on two connections (both workers),
    with one client asking all along: each reader let through, the client held to its budget
    by both workers, the table 4 MiB and the workers' memory as before; then the first 10,000
    readers again, conditionally, their interval (1 s) past: let through again."""
    server = production({"min_interval": {"conditional": 1, "unconditional": 3600}, "proxies": ["127.0.0.1"]})
    readers = [f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}" for n in range(100_000)]
    pipelined(server.port, [head(f"192.0.2.{n % 250}") for n in range(2000)])  # every worker warm
    before = {pid: harness.memory(pid).rss_mb for pid in server.workers()}
    halves: list[list[int]] = [[], []]

    def flood(half: int) -> None:
        mine = readers[half::2]
        batches = (
            [head("198.51.100.1")] + [head(r) for r in mine[n : n + 500]] for n in range(0, len(mine), 500)
        )
        mine = [one for batch in batches for one in batch]  # the abuser, then 500 readers
        halves[half] = pipelined(server.port, mine)

    started = time.monotonic()
    threads = [threading.Thread(target=flood, args=(half,)) for half in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    abuser = [status for half in halves for n, status in enumerate(half) if n % 501 == 0]
    flooded = [status for half in halves for n, status in enumerate(half) if n % 501]
    assert len(flooded) == 100_000 and set(flooded) == {200}
    assert abuser.count(200) <= 4 and abuser.count(429) >= len(abuser) - 4  # 1 + forgotten ones
    after = {pid: harness.memory(pid).rss_mb for pid in server.workers()}
    assert all(after[pid] - before[pid] < 20 for pid in before), (before, after)
    assert table_path(tmp_path / "server1-state").stat().st_size == TABLE_BYTES
    assert took > 1.0  # the readers' conditional interval is over for the first of them
    again = pipelined(server.port, [head(reader, conditional=True) for reader in readers[:10_000]])
    assert set(again) == {200}
