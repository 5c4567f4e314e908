"""static/ beside config.yaml: the site's icon and logo, served safely and exported."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from feeds import create_app
from feeds.export import build
from feeds.site import open_site

from conftest import NOW, MakeSite
from support.waiting import PATIENCE

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def site_with_static(make_site: MakeSite) -> Path:
    config = make_site(config={"site": {"icon": "/static/icon.png", "logo": "/static/bilder/logo.png"}})
    static = config.parent / "static"
    (static / "bilder").mkdir(parents=True)
    (static / "icon.png").write_bytes(PNG)
    (static / "bilder" / "logo.png").write_bytes(PNG + b"logo")
    return config


def client_for(config: Path) -> FlaskClient:
    return create_app(config, clock=lambda: NOW).test_client()


def test_icon_is_served_with_its_type_and_validators(site_with_static: Path) -> None:
    client = client_for(site_with_static)
    response = client.get("/static/icon.png")
    assert response.status_code == 200 and response.data == PNG
    assert response.mimetype == "image/png"
    assert response.headers["Cache-Control"].startswith("public, max-age=")
    again = client.get("/static/icon.png", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/static/bilder/logo.png").data == PNG + b"logo"


def test_a_changed_asset_is_served_new(site_with_static: Path) -> None:
    client = client_for(site_with_static)
    first = client.get("/static/icon.png").headers["ETag"]
    path = site_with_static.parent / "static" / "icon.png"
    path.write_bytes(PNG + b"neu")
    os.utime(path, ns=(1, 2))
    assert client.get("/static/icon.png").headers["ETag"] != first


@pytest.mark.parametrize(
    "path",
    [
        "/static/../config.yaml",
        "/static/%2e%2e/config.yaml",
        "/static/missing.png",
        "/static/.hidden.png",
        "/static/_draft.png",
        "/static/page.html",
        "/static/drawing.svg",
        "/static/",
        "/static/outside.png",
        "/static/pipe.png",
        "/static/huge.png",
    ],
)
def test_what_is_not_a_plain_asset_inside_the_folder_is_404(site_with_static: Path, path: str) -> None:
    static = site_with_static.parent / "static"
    for name in (".hidden.png", "_draft.png"):
        (static / name).write_bytes(PNG)
    (static / "page.html").write_text("<script>alert(1)</script>")
    (static / "drawing.svg").write_text("<svg onload='alert(1)'/>")
    secret = site_with_static.parent / "secret.png"
    secret.write_bytes(b"SECRET")
    (static / "outside.png").symlink_to(secret)
    os.mkfifo(static / "pipe.png")
    with open(static / "huge.png", "wb") as fh:
        fh.truncate(6 * 1024 * 1024)
    client = client_for(site_with_static)
    answered = threading.Event()
    result: dict[str, int] = {}

    def fetch() -> None:
        result["status"] = client.get(path).status_code
        answered.set()

    threading.Thread(target=fetch, daemon=True).start()
    assert answered.wait(PATIENCE), f"{path} hung"  # a named pipe must never be opened for reading
    assert result["status"] == 404


def test_export_carries_the_assets(site_with_static: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(open_site(site_with_static, clock=lambda: NOW), out)
    assert (out / "static" / "icon.png").read_bytes() == PNG
    assert (out / "static" / "bilder" / "logo.png").read_bytes() == PNG + b"logo"


def test_demo_icon_and_logo_exist_where_the_demo_config_says() -> None:
    from conftest import DEMO_CONFIG

    site = open_site(DEMO_CONFIG, clock=lambda: NOW)
    for url in (site.config.icon, site.config.logo):
        assert url is not None
        rel = url.removeprefix(site.config.url + "static/")
        assert site.asset(rel).body.startswith(b"\x89PNG")


def _rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """Write ``data`` (as long as the old bytes) in place and put the old mtime back, until the
    change time has moved on (it has the clock's tick as its step)."""
    before = path.stat()
    assert len(data) == before.st_size
    deadline = time.monotonic() + 10
    while True:
        with open(path, "r+b") as fh:
            fh.write(data)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = path.stat()
        if after.st_ctime_ns != before.st_ctime_ns or time.monotonic() > deadline:
            break
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert after.st_ctime_ns != before.st_ctime_ns


def test_an_asset_rewritten_with_the_same_size_and_time_is_served_new(site_with_static: Path) -> None:
    client = client_for(site_with_static)
    path = site_with_static.parent / "static" / "icon.png"
    assert client.get("/static/icon.png").data == PNG
    new = PNG[:-3] + b"neu"
    _rewrite_keeping_size_and_mtime(path, new)
    assert client.get("/static/icon.png").data == new


def test_an_asset_replaced_by_a_file_of_the_same_size_and_time_is_served_new(site_with_static: Path) -> None:
    client = client_for(site_with_static)
    path = site_with_static.parent / "static" / "icon.png"
    assert client.get("/static/icon.png").data == PNG
    before = path.stat()
    fresh = path.with_name(".icon.png.new")
    fresh.write_bytes(PNG[:-3] + b"neu")
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
    fresh.replace(path)  # as rsync and editors save
    assert client.get("/static/icon.png").data == PNG[:-3] + b"neu"


def test_every_asset_answer_says_nosniff_and_no_document_else(site_with_static: Path) -> None:
    client = client_for(site_with_static)
    ok = client.get("/static/icon.png")
    zipped = client.get("/static/icon.png", headers={"Accept-Encoding": "gzip"})
    again = client.get("/static/icon.png", headers={"If-None-Match": ok.headers["ETag"]})
    for response in (ok, zipped, again):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/feeds/alle.rss", "/", "/articles/erster"):
        assert "X-Content-Type-Options" not in client.get(path).headers, path


def test_a_hard_link_in_static_is_refused_with_one_warning(
    site_with_static: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hard link to a file outside static/ cannot be told from a file inside it by its path."""
    secret = tmp_path / "secret.txt"
    secret.write_text("the server's secret")
    static = site_with_static.parent / "static"
    os.link(secret, static / "leak.txt")
    os.link(static / "icon.png", static / "twin.png")  # two names inside: refused as well
    client = client_for(site_with_static)
    with caplog.at_level(logging.WARNING, "feeds.assets"):
        for _ in range(3):
            for path in ("/static/leak.txt", "/static/twin.png", "/static/icon.png"):
                response = client.get(path)
                assert response.status_code == 404, path
                assert b"secret" not in response.data
    lines = sorted(r.getMessage() for r in caplog.records if r.name == "feeds.assets")
    assert len(lines) == 3 and all("hard links" in line for line in lines)
    assert [line.split(":")[0] for line in lines] == ["static/icon.png", "static/leak.txt", "static/twin.png"]
    assert client.get("/static/bilder/logo.png").status_code == 200


def test_export_leaves_refused_assets_out_and_says_so(
    site_with_static: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the server's secret")
    static = site_with_static.parent / "static"
    os.link(secret, static / "leak.txt")
    with open(static / "huge.png", "wb") as fh:
        fh.truncate(6 * 1024 * 1024)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, "feeds.assets"):
        build(open_site(site_with_static, clock=lambda: NOW), out)
    assert not (out / "static" / "leak.txt").exists() and not (out / "static" / "huge.png").exists()
    assert (out / "static" / "icon.png").read_bytes() == PNG
    lines = sorted(r.getMessage() for r in caplog.records if r.name == "feeds.assets")
    assert len(lines) == 2
    assert lines[0].startswith("static/huge.png: 6291456 bytes, over the 5242880 bytes")
    assert lines[1].startswith("static/leak.txt: has 2 hard links")
