"""Shared fixtures: small sites built in tmp_path, a pinned clock, app/client/runner, servers."""

from __future__ import annotations

import logging
import os
import struct
import textwrap
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from feeds import create_app
from feeds.budget import SHARED_MEMORY

from support import harness
from support.waiting import PATIENCE

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "config.yaml"
SHARED = REPO.parent / "shared"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def shared(rel: str) -> Path:
    """A file of ../shared (the Atom schema, the newsroom sample).

    Only CI and developers have that folder: on a fresh clone the test is skipped with the
    reason; with CI=true (CI sets it) a missing file fails the test instead.
    """
    path = SHARED / rel
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is required in CI (CI=true) but missing")
        pytest.skip(f"needs {path}: ../shared exists only for CI and developers")
    return path


BASE_CONFIG: dict = {
    "site": {
        "title": "Testseite",
        "url": "https://news.example.org",
        "description": "Eine kleine Testseite",
        "language": "de",
        "timezone": "Europe/Berlin",
        "author": "Redaktion",
    },
    "articles": "articles",
    "defaults": {"limit": 50, "max_age": 300, "content": "full"},
    "topic_feeds": True,
    "feeds": {
        "alle": {"title": "Alle Meldungen", "description": "Alles"},
        "kurz": {"title": "Kurz", "content": "summary", "limit": 2, "max_age": 600},
    },
}


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real PNG of one colour (browsers decode it: naturalWidth == width)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + data


SMALL_ARTICLES: dict[str, str | bytes] = {
    "politik/erster.md": """\
        ---
        id: erster
        title: Erster Artikel
        date: 2025-04-28T09:30:00+02:00
        topics: [Politik]
        tags: [wahl]
        summary: Kurzfassung des ersten Artikels.
        ---
        Ein **Absatz** mit [Link](/archiv/1) und ![Bild](images/a.png).
        """,
    "politik/zweiter.md": """\
        ---
        id: zweiter
        title: Zweiter Artikel
        date: 2025-05-01T08:00:00
        updated: 2025-05-02T10:00:00+02:00
        ---
        Text des zweiten Artikels.
        """,
    "klima/dritter.txt": """\
        ---
        date: 2025-05-03
        ---
        Dritter Artikel im Exportformat
        Erster Absatz des Exports.
        Zwischentitel
        Zweiter Absatz des Exports.
        """,
    "klima/entwurf.md": """\
        ---
        title: DRAFT-SECRET Entwurf
        date: 2025-05-04T08:00:00+02:00
        draft: true
        ---
        DRAFT-SECRET
        """,
    "klima/sperrfrist.md": """\
        ---
        title: EMBARGO-SECRET Sperrfrist
        date: 2030-01-01T08:00:00+01:00
        ---
        EMBARGO-SECRET
        """,
    "politik/images/a.png": png(),  # the picture erster.md shows
}


def _merge(base: dict, override: dict) -> dict:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


MakeSite = Callable[..., Path]


@pytest.fixture(autouse=True)
def _no_file_watching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps in tests do not watch files unless a test asks (watch=True or FEEDS_WATCH=1)."""
    monkeypatch.setenv("FEEDS_WATCH", "0")


@pytest.fixture(autouse=True)
def _loggers_left_enabled() -> Iterator[None]:
    """A test that runs a tool in-process may reconfigure logging: import-linter's dictConfig
    disables every logger that exists then, the app's too, and a later test that reads the
    app's log (caplog) would see nothing. Loggers a test disabled are enabled again after it."""
    loggers = logging.root.manager.loggerDict
    enabled = {name for name, one in loggers.items() if isinstance(one, logging.Logger) and not one.disabled}
    yield
    for name in enabled:
        logger = loggers.get(name)
        if isinstance(logger, logging.Logger):
            logger.disabled = False


@pytest.fixture(autouse=True)
def _polling_tables_removed() -> Iterator[None]:
    """A server with a polling budget leaves its table of recent clients in /dev/shm (in
    production systemd's RemoveIPC= clears it at stop): the tables made during a test go."""
    pattern = f"feeds-polling-{os.geteuid()}-*"
    before = set(SHARED_MEMORY.glob(pattern))
    yield
    for table in set(SHARED_MEMORY.glob(pattern)) - before:
        table.unlink(missing_ok=True)


@pytest.fixture
def make_site(tmp_path: Path) -> MakeSite:
    """Write a site under tmp_path and return its config path.

    ``articles`` maps relative paths to text (dedented) or bytes; ``config`` is merged into
    BASE_CONFIG (pass ``raw_config`` to write config.yaml text verbatim).
    """

    def make(
        articles: dict[str, str | bytes] | None = None,
        config: dict | None = None,
        raw_config: str | None = None,
        name: str = "site",
    ) -> Path:
        root = tmp_path / name
        folder = root / "articles"
        folder.mkdir(parents=True, exist_ok=True)
        for rel, content in (SMALL_ARTICLES if articles is None else articles).items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(textwrap.dedent(content), encoding="utf-8")
        path = root / "config.yaml"
        if raw_config is not None:
            path.write_text(textwrap.dedent(raw_config), encoding="utf-8")
        else:
            data = _merge(BASE_CONFIG, config or {})
            path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    return make


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths parsed from disk (a warm start over an unchanged archive parses none)."""
    import feeds.records

    seen: list[str] = []
    real = feeds.records.parse_meta

    def counting(source, config, teaser=True):  # type: ignore[no-untyped-def]
        seen.append(source.path)
        return real(source, config, teaser)

    monkeypatch.setattr(feeds.records, "parse_meta", counting)
    return seen


@pytest.fixture
def app(make_site: MakeSite) -> Flask:
    return create_app(make_site(), clock=lambda: NOW)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


StartServer = Callable[..., harness.Server]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``gunicorn 'feeds:create_app()'`` over a config on a free loopback port, live
    reload on as in production, its state in tmp_path; every server is stopped after the test."""
    servers: list[harness.Server] = []

    def start(
        config: Path, name: str = "server", *, workers: int = 1, access_log: Path | None = None
    ) -> harness.Server:
        extra = ["--graceful-timeout", "2"]
        if access_log is not None:
            extra += ["--access-logfile", str(access_log)]
        server = harness.start(
            lambda port: harness.gunicorn_command(port, workers, extra=extra),
            tmp_path / f"{name}.log",
            config=config,
            state_dir=tmp_path / f"{name}-state",
            timeout=PATIENCE,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        harness.stop(server)
