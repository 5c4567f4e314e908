"""The production server stops in any state, and a crashed worker comes back.

Production runs granian with two WSGI workers (docs/operations.md "Production", deploy/feeds.service). A
worker inherits the signal handlers of granian's main process when it is forked and installs its
own only after create_app has returned. A SIGTERM that reaches it while it is still loading the
article index therefore only sets a flag in the worker's copy of the server object: the worker
goes on to serve, and without ``--workers-kill-timeout`` the main process waits for it in
``join()`` forever. Without ``--respawn-failed-workers`` one dead worker makes granian stop the
whole server.

The process tests start real granian processes with the options of deploy/feeds.service (only
host, port and, for the slow start, the factory replaced), each in its own process group, and
check the whole group: main process and workers. The unit tests check that the unit runs the
documented command and that its stop settings fit granian's.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from granian.cli import cli as granian_cli

from conftest import REPO, MakeSite

UNIT = REPO / "deploy" / "feeds.service"
OPERATIONS = REPO / "docs" / "operations.md"  # documents the production command
TESTS = Path(__file__).resolve().parent
START_BOUND = 60.0  # seconds for granian and its workers to come up on a busy 2-core machine
STOP_SLACK = 10.0  # seconds on top of granian's kill timeout for a stop to finish
SLOW_START = 120.0  # seconds the slow factory sleeps: far longer than any stop bound
T = TypeVar("T")


# -- the unit file and the documented command ------------------------------------------------------


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a systemd unit: key -> values in order (a key may repeat, as Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    logical = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):  # continued on the next line
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.startswith("[") and logical.endswith("]"):
            section = sections.setdefault(logical[1:-1], {})
        elif section is not None and "=" in logical:
            key, value = logical.split("=", 1)
            section.setdefault(key.strip(), []).append(value.strip())
        logical = ""
    return sections


def unit_value(unit: dict[str, dict[str, list[str]]], key: str, section: str = "Service") -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"{UNIT.name}: expected one {key}= in [{section}], found {values}"
    return values[0]


def unit_environment(unit: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in unit.get("Service", {}).get("Environment", []):
        for item in shlex.split(value):
            name, _, setting = item.partition("=")
            env[name] = setting
    return env


def unit_command(unit: dict[str, dict[str, list[str]]]) -> list[str]:
    return shlex.split(unit_value(unit, "ExecStart"))


def documented_command(text: str) -> tuple[dict[str, str], list[str]]:
    """Environment and arguments of the first command in the Production section's first sh block."""
    section = re.search(r"^## Production\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, "docs/operations.md has no '## Production' section"
    block = re.search(r"^```sh\n(.*?)^```", section.group(1), re.MULTILINE | re.DOTALL)
    assert block, "docs/operations.md: no ```sh block in the Production section"
    joined = re.sub(r"\\\n", " ", block.group(1))  # line continuations
    line = next(x for x in joined.splitlines() if x.strip() and not x.lstrip().startswith("#"))
    words = shlex.split(line)
    env: dict[str, str] = {}
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def granian_params(args: list[str]) -> dict[str, Any]:
    """What granian's own command line makes of ``args`` (defaults filled in; no GRANIAN_* env)."""
    with granian_cli.make_context("granian", list(args)) as ctx:
        return dict(ctx.params)


def kill_timeout(params: dict[str, Any]) -> int:
    timeout = params["workers_kill_timeout"]
    assert timeout, "granian without --workers-kill-timeout waits forever for a worker still starting"
    return int(timeout)


@pytest.fixture(scope="module")
def production_args() -> list[str]:
    """The unit's granian arguments, the APP last."""
    args = unit_command(read_unit(UNIT))[1:]
    assert granian_params(args)["app"] == args[-1]
    return args


def serve_args(production: list[str], port: int, app: str) -> list[str]:
    """The production arguments on 127.0.0.1:port, serving ``app``."""
    args = list(production[:-1])
    for name, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        if name in args:
            args[args.index(name) + 1] = value
        else:
            args = [a for a in args if not a.startswith(name + "=")] + [name, value]
    return [*args, app]


# -- processes ----------------------------------------------------------------------------------


def _stat(pid: str | int) -> tuple[str, int, int] | None:
    """State, parent and process group of a process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2])


def _live(test: Callable[[int, int], bool]) -> set[int]:
    """Processes (zombies left out) whose (parent, group) pass ``test``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(entry)) and stat[0] != "Z" and test(stat[1], stat[2]):
            found.add(int(entry))
    return found


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def _holds_socket(pid: int, inodes: set[str]) -> bool:
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return False
    return any(link[len("socket:[") : -1] in inodes for link in links if link.startswith("socket:["))


def wait_for(check: Callable[[], T | None], timeout: float, what: str, log: Path | None = None) -> T:
    """Poll ``check`` until it returns something true; fail with ``what`` (and the log) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = f"\nserver log:\n{log.read_text(errors='replace')[-4000:]}" if log else ""
            pytest.fail(f"{what}: not within {timeout:.0f} s{tail}")
        time.sleep(0.1)


def healthz(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code)
    except OSError:
        return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Granian:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def group(self) -> set[int]:
        """Every live process of the server's process group: main, workers, their children."""
        return _live(lambda _parent, group: group == self.pid)

    def workers(self) -> set[int]:
        return _live(lambda parent, _group: parent == self.pid)

    def serving(self) -> set[int]:
        """Workers listening on the port: past create_app, with their own signal handlers.

        granian 2 gives each worker a listening socket of its own once the app is loaded.
        """
        inodes = _listening_inodes(self.port)
        return {pid for pid in self.workers() if _holds_socket(pid, inodes)}

    def wait_serving(self, count: int) -> set[int]:
        """Wait until ``count`` workers serve and /healthz answers 200; their PIDs."""

        def ready() -> set[int] | None:
            assert self.process.poll() is None, f"granian exited ({self.process.returncode}):\n{self.tail()}"
            serving = self.serving()
            return serving if len(serving) >= count and healthz(self.port) == 200 else None

        return wait_for(ready, START_BOUND, f"{count} workers serving", self.log)

    def wait_replaced(self, pid: int, count: int) -> None:
        """Wait until worker ``pid`` is gone and ``count`` workers run again, granian still up."""

        def replaced() -> bool:
            assert self.process.poll() is None, f"granian exited instead of respawning:\n{self.tail()}"
            now = self.workers()
            return pid not in now and len(now) == count

        wait_for(replaced, START_BOUND, f"worker {pid} replaced", self.log)

    def stop_and_wait(self, bound: float) -> float:
        """SIGTERM to the main process (as systemd's KillMode=mixed does); seconds until all is gone."""
        started = time.monotonic()
        os.kill(self.pid, signal.SIGTERM)
        wait_for(
            lambda: self.process.poll() is not None and not self.group(),
            bound,
            "granian and all its workers gone after SIGTERM",
            self.log,
        )
        return time.monotonic() - started

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


StartGranian = Callable[..., Granian]


@pytest.fixture
def start_granian(tmp_path: Path, production_args: list[str]) -> Iterator[StartGranian]:
    """Start granian with the production options on a free loopback port; killed after the test."""
    started: list[Granian] = []

    def start(
        config: Path, app: str = "feeds:create_app", env: dict[str, str] | None = None, cwd: Path = REPO
    ) -> Granian:
        """``cwd`` comes first on the workers' import path (``python -m``): the code they run."""
        port = free_port()
        log = tmp_path / f"granian-{port}.log"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("GRANIAN_")}
        child_env.update(
            {
                "FEEDS_CONFIG": str(config),
                "FEEDS_STATE_DIR": str(tmp_path / "state"),
                "FEEDS_WATCH": "1",  # as in production
                "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
                **(env or {}),
            }
        )
        command = [sys.executable, "-m", "granian", *serve_args(production_args, port, app)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Granian(process, port, log)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.group():
            os.killpg(server.pid, signal.SIGKILL)
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait(timeout=30)


def _port_is_free(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        pass
    else:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


# -- the process tests --------------------------------------------------------------------------


def test_sigterm_while_workers_load_the_index_stops_everything(
    make_site: MakeSite, start_granian: StartGranian, production_args: list[str], tmp_path: Path
) -> None:
    params = granian_params(production_args)
    bound = kill_timeout(params) + STOP_SLACK
    assert SLOW_START > 2 * bound, "the slow factory must outlast the stop"
    markers = tmp_path / "markers"
    markers.mkdir()
    slow = {"FEEDS_TEST_MARKERS": str(markers), "FEEDS_TEST_START_DELAY": str(SLOW_START)}
    server = start_granian(make_site(), app="slow_start:create_app", env=slow)

    def all_inside() -> set[int] | None:
        pids = {int(marker.name) for marker in markers.iterdir()}
        return pids if len(pids) >= params["workers"] else None

    inside = wait_for(all_inside, START_BOUND, "every worker inside create_app", server.log)
    assert inside <= server.workers(), "the workers in create_app are granian's"
    assert not server.serving()

    server.stop_and_wait(bound)

    assert server.process.returncode == 0, server.tail()  # a clean stop for systemd
    assert not inside & _live(lambda _parent, _group: True)


def test_sigterm_while_serving_stops_everything_and_frees_the_port(
    make_site: MakeSite, start_granian: StartGranian, production_args: list[str]
) -> None:
    params = granian_params(production_args)
    server = start_granian(make_site())
    server.wait_serving(params["workers"])
    # A client (a proxy, a feed reader) keeps an idle keep-alive connection open meanwhile.
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        idle.request("GET", "/feeds/alle.rss")
        assert idle.getresponse().read()

        server.stop_and_wait(kill_timeout(params) + STOP_SLACK)
    finally:
        idle.close()

    assert server.process.returncode == 0, server.tail()
    assert _port_is_free(server.port)


def test_killed_workers_are_respawned_and_the_site_answers_again(
    make_site: MakeSite, start_granian: StartGranian, production_args: list[str]
) -> None:
    params = granian_params(production_args)
    assert params["respawn_failed_workers"], "without it one dead worker stops the whole server"
    server = start_granian(make_site())
    originals = server.wait_serving(params["workers"])

    for pid in sorted(originals):  # one at a time, as crashes come
        os.kill(pid, signal.SIGKILL)
        server.wait_replaced(pid, params["workers"])

    # Every original worker is dead: whatever answers now is a respawned one.
    respawned = server.wait_serving(params["workers"])
    assert not respawned & originals
    assert healthz(server.port) == 200


def _poll(port: int, stop: threading.Event, answers: list[object]) -> None:
    """A feed reader polling throughout on a keep-alive connection, never retrying: the status
    of every answer, or why there was none (a connection closed under a request in flight)."""
    connection: http.client.HTTPConnection | None = None
    while not stop.is_set():
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", "/feeds/alle.atom")
            response = connection.getresponse()
            complete = b"Erster Artikel" in response.read()  # not an index reset under it
            answers.append(response.status if complete else f"{response.status} without the articles")
            if response.will_close:  # Connection: close, from a worker about to be replaced
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as error:
            answers.append(repr(error))
            connection.close()
            connection = None
    if connection is not None:
        connection.close()


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return dict(json.load(response))
    except (OSError, ValueError):
        return {}


@pytest.mark.parametrize("layout", [False, True], ids=["same-layout", "new-layout"])
def test_a_rolling_restart_onto_new_code_answers_every_request(
    layout: bool, make_site: MakeSite, start_granian: StartGranian, production_args: list[str], tmp_path: Path
) -> None:
    """``systemctl reload`` after new code was installed (docs/operations.md, "Upgrades"): with
    the same layout the new workers serve the running version's index while they build theirs;
    a new layout is built first by ``feeds index``. Two readers poll throughout: every request
    is answered 200, and the new workers end up on the new version's own index."""
    params = granian_params(production_args)
    release = tmp_path / "release"  # the installed code, as new workers import it from disk
    shutil.copytree(REPO / "feeds", release / "feeds", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": f"{release}{os.pathsep}{TESTS}", "FEEDS_STATE_DIR": str(tmp_path / "state")}
    config = make_site()
    server = start_granian(config, env=env, cwd=release)
    originals = server.wait_serving(params["workers"])
    earlier = set((tmp_path / "state").glob("index-*.sqlite"))
    assert len(earlier) == 1
    stop, answers = threading.Event(), list[object]()
    readers = [threading.Thread(target=_poll, args=(server.port, stop, answers)) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        wait_for(lambda: len(answers) >= 20, START_BOUND, "answers before the reload", server.log)
        module = release / "feeds" / ("store/rows.py" if layout else "parsing.py")
        module.write_text(module.read_text(encoding="utf-8") + "\n# the next version\n", encoding="utf-8")
        if layout:
            checked = subprocess.run(
                [sys.executable, "-c", "import feeds.cli as c; c.cli()", "--config", str(config), "index"],
                env={**os.environ, **env}, cwd=release, capture_output=True, text=True, timeout=120,
                check=False,
            )  # fmt: skip
            assert checked.returncode == 0, checked.stderr
            assert len(set((tmp_path / "state").glob("index-*.sqlite")) - earlier) == 1, checked.stderr
        os.kill(server.pid, signal.SIGHUP)

        def upgraded() -> bool:
            seen = [_health(server.port) for _ in range(6)]
            return all(h.get("pid") and h["pid"] not in originals and "upgrading" not in h for h in seen)

        wait_for(upgraded, 4 * START_BOUND, "every worker replaced and on its own index", server.log)
        count = len(answers)
        wait_for(lambda: len(answers) >= count + 20, START_BOUND, "answers after the reload", server.log)
    finally:
        stop.set()
        for reader in readers:
            reader.join(60)
    assert [a for a in answers if a != 200] == [], server.tail()
    assert len(set((tmp_path / "state").glob("index-*.sqlite")) - earlier) == 1
    stood_in = "upgrade: serving the rows of" in server.log.read_text(errors="replace")
    assert stood_in != layout  # the same layout stands in; a new one was built before


# -- the unit file ------------------------------------------------------------------------------


def test_unit_runs_the_documented_production_command() -> None:
    """The documented production command and the unit's ExecStart give granian the same options."""
    doc_env, doc_args = documented_command(OPERATIONS.read_text(encoding="utf-8"))
    unit = read_unit(UNIT)
    unit_args = unit_command(unit)
    assert Path(doc_args[0]).name == "granian" and Path(unit_args[0]).name == "granian"
    assert granian_params(unit_args[1:]) == granian_params(doc_args[1:]), (
        f"docs/operations.md: {shlex.join(doc_args)}\n{UNIT.name}: {shlex.join(unit_args)}"
    )
    assert unit_environment(unit)["FEEDS_CONFIG"] == doc_env["FEEDS_CONFIG"]


def _seconds(span: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min)?", span.strip())
    assert match, f"TimeoutStopSec={span}: write it as seconds, e.g. 30s"
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_unit_stop_settings_fit_granian() -> None:
    unit = read_unit(UNIT)
    params = granian_params(unit_command(unit)[1:])
    kill = kill_timeout(params)
    assert params["respawn_failed_workers"]
    # SIGTERM to the main process only: granian stops its workers itself, systemd kills the rest.
    assert unit_value(unit, "KillMode") == "mixed"
    assert unit_value(unit, "Restart") == "on-failure"
    # The longest stop: one that arrives during a reload waits for it (each worker: the respawn
    # interval, then up to the kill timeout for the old one), then stops the new workers.
    longest = params["workers"] * (params["respawn_interval"] + kill) + kill
    assert _seconds(unit_value(unit, "TimeoutStopSec")) > longest
    env = unit_environment(unit)
    assert env["FEEDS_STATE_DIR"] == "/var/lib/" + unit_value(unit, "StateDirectory")
    assert unit_value(unit, "User") not in ("", "root")
    assert unit_value(unit, "ProtectSystem") == "strict"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    granian = Path(sys.executable).parent / "granian"
    if not granian.exists():
        pytest.skip("no granian script beside this Python")
    # verify insists that ExecStart is executable: point it at this venv's granian.
    text = UNIT.read_text(encoding="utf-8").replace(unit_command(read_unit(UNIT))[0], str(granian))
    copy = tmp_path / UNIT.name
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=120, check=False
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output
