"""static/ beside config.yaml: the site's icon and logo, served safely and exported."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from feeds import create_app
from feeds.export import build
from feeds.site import open_site

from conftest import NOW, MakeSite

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
    assert answered.wait(5), f"{path} hung"  # a named pipe must never be opened for reading
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
