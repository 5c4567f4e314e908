"""Pictures beside the articles: served at /media/ with the static/ rules, carried in every
feed format with their real size and type, reported by ``feeds check`` when missing or refused
(and then left out), followed live and across a restart, exported, and shown by a real browser.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import feedparser
import lxml.html
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from feeds import create_app
from feeds.cli import cli
from feeds.export import build
from feeds.inventory import picture_documents
from feeds.pictures import MAX_BYTES, resolve
from feeds.site import Site, open_site

from conftest import DEMO_CONFIG, NOW, REPO, MakeSite, StartServer, png
from support import browser
from support.browser import CHROMIUM
from support.waiting import PATIENCE, wait_until

BASE = "https://news.example.org/"
MEDIA_NS = "{http://search.yahoo.com/mrss/}"
DEMO_PICTURES = {
    "sport/images/stadtlauf.jpg": "image/jpeg",
    "klima/images/hitze-marktplatz.jpg": "image/jpeg",
    "technik/images/karte.png": "image/png",
}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 100  # the first bytes are what counts
SECRET = b"root:x:0:0:SECRET\n"
T = TypeVar("T")


def article(image: str = "bilder/bild.png", body: str = "Text.", extra: str = "") -> str:
    """An article whose ``image:`` stands on line 4 and whose body starts on line 6."""
    return f'---\ntitle: Mit Bild\ndate: 2025-05-01T08:00:00+02:00\nimage: "{image}"\n{extra}---\n{body}\n'


def site_with(make_site: MakeSite, files: dict[str, str | bytes]) -> Path:
    return make_site({"politik/bild.md": article(), **files})


def client_for(config: Path, state: Path) -> FlaskClient:
    return create_app(config, clock=lambda: NOW, state_dir=state).test_client()


def enclosures(client: FlaskClient, feed: str = "politik") -> dict[str, list[tuple[str, str, str]]]:
    """(url, length, type) of every enclosure, per format, as feedparser (what most readers
    build on) reads them; JSON Feed's attachments from the JSON itself."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for fmt in ("rss", "atom"):
        response = client.get(f"/feeds/{feed}.{fmt}")
        assert response.status_code == 200
        parsed = feedparser.parse(response.data)
        assert not parsed.bozo, parsed.get("bozo_exception")
        found[fmt] = [
            (e["href"], str(e.get("length", "")), e.get("type", ""))
            for entry in parsed.entries
            for e in entry.get("enclosures", [])
        ]
    items = client.get(f"/feeds/{feed}.json").get_json()["items"]
    found["json"] = [
        (a["url"], str(a.get("size_in_bytes", "")), a["mime_type"])
        for item in items
        for a in item.get("attachments", [])
    ]
    return found


def media_content(client: FlaskClient, feed: str = "politik") -> list[dict[str, str]]:
    root = etree.fromstring(client.get(f"/feeds/{feed}.rss").data)
    return [dict(c.attrib) for c in root.iter(f"{MEDIA_NS}content")]


def in_time(action: Callable[[], T], what: str) -> T:
    """``action()``, which must finish within PATIENCE (a named pipe must never block a read)."""
    done = threading.Event()
    result: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            result.append(action())
        except BaseException as exc:  # handed to the test's thread
            failed.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(PATIENCE), f"{what} hung"
    if failed:
        raise failed[0]
    return result[0]


@pytest.mark.parametrize(
    "reference, rel",
    [
        ("bilder/a.png", "politik/2025/bilder/a.png"),
        ("./bilder/../bilder/a.png", "politik/2025/bilder/a.png"),
        ("../../gemeinsam/a.JPG", "gemeinsam/a.JPG"),
        ("/gemeinsam/a.webp", "gemeinsam/a.webp"),
        ("bilder/ein%20bild.png?v=2#oben", "politik/2025/bilder/ein bild.png"),
        ("../../../a.png", None),
        ("/../a.png", None),
        ("%2e%2e/%2E%2E/%2e%2e/a.png", None),
        ("..%2f..%2f..%2fa.png", None),
        ("bilder\\..\\..\\a.png", None),
        ("bilder/.a.png", None),
        ("_entwurf/a.png", None),
        ("bilder/a.svg", None),
        ("bilder/", None),
        ("", None),
    ],
)
def test_a_reference_names_a_picture_inside_the_folder_or_nothing(reference: str, rel: str | None) -> None:
    local = resolve("politik/2025/artikel.md", reference)
    assert (local.rel if local.refusal is None else None) == rel, local


# --- the demo ships its pictures -----------------------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path) -> FlaskClient:
    return client_for(DEMO_CONFIG, tmp_path / "state")


@pytest.mark.parametrize("rel", sorted(DEMO_PICTURES))
def test_every_demo_picture_answers_with_its_type_nosniff_and_validators(demo: FlaskClient, rel: str) -> None:
    response = demo.get(f"/media/{rel}")
    assert response.status_code == 200
    assert response.data == (REPO / "articles" / rel).read_bytes()
    assert response.headers["Content-Type"] == DEMO_PICTURES[rel]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"].startswith("public, max-age=")
    assert response.headers["Last-Modified"]
    etag = response.headers["ETag"]
    again = demo.get(f"/media/{rel}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    head = demo.head(f"/media/{rel}")
    assert head.status_code == 200 and head.data == b""
    assert len((REPO / "articles" / rel).read_bytes()) < 30 * 1024  # small, as a demo's should be


def test_demo_enclosures_carry_each_pictures_real_size_and_type_in_every_format(demo: FlaskClient) -> None:
    for feed, rel in (
        ("sport", "sport/images/stadtlauf.jpg"),
        ("klima", "klima/images/hitze-marktplatz.jpg"),
    ):
        expected = (BASE + "media/" + rel, str((REPO / "articles" / rel).stat().st_size), DEMO_PICTURES[rel])
        for fmt, found in enclosures(demo, feed).items():
            assert expected in found, (fmt, found)
        assert any((c["url"], c["fileSize"], c["type"]) == expected for c in media_content(demo, feed)), (
            media_content(demo, feed)
        )


def test_demo_body_picture_resolves_beside_its_article(demo: FlaskClient) -> None:
    page = lxml.html.fromstring(demo.get("/articles/glasfaser-ausbau-beispielkreis").data)
    assert page.xpath("//article//img/@src") == ["/media/technik/images/karte.png"]
    item = next(
        i for i in demo.get("/feeds/technik.json").get_json()["items"] if "glasfaser" in i["url"]
    )  # in a feed, every URL is absolute
    assert f'src="{BASE}media/technik/images/karte.png"' in item["content_html"]
    assert demo.get("/media/technik/images/karte.png").status_code == 200


def test_demo_feed_page_shows_the_pictures(demo: FlaskClient) -> None:
    page = lxml.html.fromstring(demo.get("/feeds/sport").data)
    (img,) = page.xpath("//ul[@class='articles']//img")
    assert img.get("src") == "/media/sport/images/stadtlauf.jpg"
    assert img.get("alt") == "Läuferinnen und Läufer beim Start auf dem Marktplatz"


def test_demo_check_reports_no_picture_problem(runner: CliRunner, tmp_path: Path) -> None:
    env = {"FEEDS_STATE_DIR": str(tmp_path / "state")}
    result = runner.invoke(cli, ["--config", str(DEMO_CONFIG), "check"], env=env)
    assert result.exit_code == 0, result.output
    assert "picture" not in result.output and "image" not in result.output


# --- a picture of one's own ----------------------------------------------------------------------


def test_a_picture_beside_the_article_is_published_with_its_size_and_type(
    make_site: MakeSite, tmp_path: Path
) -> None:
    picture = png(7, 3)
    config = site_with(make_site, {"politik/bilder/bild.png": picture})
    client = client_for(config, tmp_path / "state")
    expected = (BASE + "media/politik/bilder/bild.png", str(len(picture)), "image/png")
    assert {fmt: found for fmt, found in enclosures(client).items()} == {
        "rss": [expected],
        "atom": [expected],
        "json": [expected],
    }
    assert client.get("/media/politik/bilder/bild.png").data == picture


def test_the_type_comes_from_the_bytes_not_the_name(make_site: MakeSite, tmp_path: Path) -> None:
    config = site_with(make_site, {"politik/bilder/bild.png": JPEG})  # a JPEG named .png
    client = client_for(config, tmp_path / "state")
    assert {e[2] for found in enclosures(client).values() for e in found} == {"image/jpeg"}
    assert client.get("/media/politik/bilder/bild.png").headers["Content-Type"] == "image/jpeg"


def test_spaces_and_umlauts_in_picture_names(make_site: MakeSite, tmp_path: Path) -> None:
    config = make_site(
        {"politik/bild.md": article("Bilder/Grüße aus Köln.png"), "politik/Bilder/Grüße aus Köln.png": png()}
    )
    client = client_for(config, tmp_path / "state")
    ((url, length, _),) = enclosures(client)["rss"]
    assert url == BASE + "media/politik/Bilder/Gr%C3%BC%C3%9Fe%20aus%20K%C3%B6ln.png"
    assert length == str(len(png()))
    assert client.get(urlsplit(url).path).data == png()


def test_a_path_from_the_articles_folder_and_one_up_and_down_stay_inside(
    make_site: MakeSite, tmp_path: Path
) -> None:
    config = make_site(
        {
            "politik/a.md": article("/gemeinsam/karte.png"),
            "politik/2025/b.md": article("../../gemeinsam/karte.png").replace("Mit Bild", "Zweites"),
            "gemeinsam/karte.png": png(),
        }
    )
    found = enclosures(client_for(config, tmp_path / "state"))["rss"]
    assert [url for url, _, _ in found] == [BASE + "media/gemeinsam/karte.png"] * 2


def test_an_absolute_picture_url_stays_as_it_is(make_site: MakeSite, tmp_path: Path) -> None:
    config = make_site(
        {"politik/bild.md": article("https://cdn.example.net/b.jpg", "![x](https://cdn.example.net/c.png)")}
    )
    client = client_for(config, tmp_path / "state")
    assert [url for url, _, _ in enclosures(client)["rss"]] == ["https://cdn.example.net/b.jpg"]
    html = client.get("/feeds/politik.json").get_json()["items"][0]["content_html"]
    assert 'src="https://cdn.example.net/c.png"' in html


def check(runner: CliRunner, config: Path, tmp_path: Path) -> tuple[int, str]:
    result = runner.invoke(
        cli, ["--config", str(config), "check"], env={"FEEDS_STATE_DIR": str(tmp_path / "cs")}
    )
    return result.exit_code, result.output


def test_a_missing_picture_is_reported_with_file_and_line_and_left_out(
    make_site: MakeSite, runner: CliRunner, tmp_path: Path
) -> None:
    config = make_site({"politik/bild.md": article("bilder/fehlt.jpg", "Text\n\n![Karte](bilder/karte.png)")})
    code, output = check(runner, config, tmp_path)
    assert code == 1
    assert "politik/bild.md:4: error: image: politik/bilder/fehlt.jpg: no such file" in output
    assert "politik/bild.md:8: warning: picture politik/bilder/karte.png: no such file" in output
    client = client_for(config, tmp_path / "state")
    assert enclosures(client) == {"rss": [], "atom": [], "json": []}
    assert media_content(client) == []
    item = client.get("/feeds/politik.json").get_json()["items"][0]
    assert "image" not in item and "attachments" not in item
    page = lxml.html.fromstring(client.get("/articles/politik/bild").data)
    assert page.xpath("//article/figure") == []  # no broken picture on the page either
    # The body keeps its picture (it shows once the file is there).
    assert page.xpath("//article//img/@src") == ["/media/politik/bilder/karte.png"]


def test_check_as_json_gives_the_line(make_site: MakeSite, runner: CliRunner, tmp_path: Path) -> None:
    config = make_site({"politik/bild.md": article("bilder/fehlt.jpg")})
    result = runner.invoke(
        cli,
        ["--config", str(config), "check", "--format", "json"],
        env={"FEEDS_STATE_DIR": str(tmp_path / "s")},
    )
    report = json.loads(result.output)
    (problem,) = [p for p in report["problems"] if "fehlt.jpg" in p["message"]]
    assert (problem["file"], problem["line"], problem["severity"]) == ("politik/bild.md", 4, "error")


# --- what an attacker (or a careless sync) tries ---------------------------------------------------


def _symlink_out(folder: Path, tmp_path: Path) -> None:
    secret = tmp_path / "passwd"
    secret.write_bytes(SECRET)
    (folder / "x.png").symlink_to(secret)


def _symlink_to_etc_passwd(folder: Path, tmp_path: Path) -> None:
    (folder / "x.png").symlink_to("/etc/passwd")


def _fifo(folder: Path, tmp_path: Path) -> None:
    os.mkfifo(folder / "x.png")


def _html(folder: Path, tmp_path: Path) -> None:
    (folder / "x.png").write_bytes(b"<!doctype html><script>alert(document.cookie)</script>")


def _huge(folder: Path, tmp_path: Path) -> None:
    with open(folder / "x.png", "wb") as fh:
        fh.write(png())
        fh.truncate(MAX_BYTES + 1)  # sparse: costs no disk


def _hard_link(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png())
    os.link(outside, folder / "x.png")


def _folder(folder: Path, tmp_path: Path) -> None:
    (folder / "x.png").mkdir()


FILES = {
    "symlink out of the folder": (_symlink_out, "a symlink to a file outside the articles folder"),
    "symlink to /etc/passwd": (_symlink_to_etc_passwd, "a symlink to a file outside the articles folder"),
    "named pipe": (_fifo, "a named pipe, not a regular file"),
    "HTML named .png": (_html, "its first bytes are not a PNG, JPEG, GIF, WebP or AVIF picture"),
    "over the size limit": (_huge, f"{MAX_BYTES + 1} bytes, over the {MAX_BYTES} bytes a picture may have"),
    "hard link to a file outside": (_hard_link, "has 2 hard links"),
    "a folder named .png": (_folder, "a folder, not a regular file"),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_a_refused_picture_file_is_reported_left_out_and_never_served(
    make_site: MakeSite, runner: CliRunner, tmp_path: Path, case: str
) -> None:
    make, reason = FILES[case]
    config = make_site({"politik/bild.md": article("bilder/x.png", "![Bild](bilder/x.png)")})
    folder = config.parent / "articles" / "politik" / "bilder"
    folder.mkdir()
    make(folder, tmp_path)
    code, output = in_time(lambda: check(runner, config, tmp_path), "feeds check")
    assert code == 1, output
    assert f"politik/bild.md:4: error: image: politik/bilder/x.png: {reason}" in output
    assert f"politik/bild.md:6: warning: picture politik/bilder/x.png: {reason}" in output
    client = in_time(lambda: client_for(config, tmp_path / "state"), "start")
    assert enclosures(client) == {"rss": [], "atom": [], "json": []}
    response = in_time(lambda: client.get("/media/politik/bilder/x.png"), "GET")
    assert response.status_code == 404
    assert SECRET not in response.data
    out = tmp_path / "out"
    in_time(lambda: build(open_site(config, clock=lambda: NOW, state_dir=tmp_path / "b"), out), "build")
    assert not (out / "media" / "politik" / "bilder" / "x.png").exists()


REFERENCES = {
    "traversal": ("../../../../etc/passwd.png", "leads out of the articles folder"),
    "traversal from the root": ("/../etc/passwd.png", "leads out of the articles folder"),
    "percent-encoded traversal": ("%2e%2e/%2e%2e/%2E%2E/etc/passwd.png", "leads out of the articles folder"),
    "hidden file": ("bilder/.geheim.png", "names a hidden file or folder"),
    "not a picture": ("../../config.yaml", "leads out of the articles folder"),
    "a page, not a picture": ("bilder/seite.html", "is not a picture file"),
    "an SVG (script on our origin)": ("bilder/zeichnung.svg", "is not a picture file"),
}


@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_a_reference_out_of_the_folder_is_reported_and_left_out(
    make_site: MakeSite, runner: CliRunner, tmp_path: Path, case: str
) -> None:
    reference, reason = REFERENCES[case]
    body = f'![Bild]({reference})\n\n<img src="{reference}" alt="b">'
    config = make_site({"politik/bild.md": article(reference, body)})
    code, output = check(runner, config, tmp_path)
    assert code == 1
    assert f"politik/bild.md:4: error: image: {reference!r} {reason}" in output, output
    assert f"politik/bild.md:6: warning: picture {reference!r} {reason}" in output, output
    assert f"politik/bild.md:8: warning: picture {reference!r} {reason}" in output, output
    client = client_for(config, tmp_path / "state")
    assert enclosures(client) == {"rss": [], "atom": [], "json": []}
    html = client.get("/feeds/politik.json").get_json()["items"][0]["content_html"]
    assert "etc/passwd" not in html and "config.yaml" not in html and "src=" not in html
    page = lxml.html.fromstring(client.get("/articles/politik/bild").data)
    assert page.xpath("//img/@src") == []


@pytest.mark.parametrize(
    "path",
    [
        "/media/../config.yaml",
        "/media/%2e%2e/config.yaml",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media/politik/bild.md",
        "/media/politik/.hidden.png",
        "/media/politik/_entwurf.png",
        "/media/politik//bilder/bild.png",
        "/media/",
        "/media/politik/bilder/fehlt.png",
    ],
)
def test_what_is_not_a_picture_inside_the_folder_is_404(
    make_site: MakeSite, tmp_path: Path, path: str
) -> None:
    config = site_with(
        make_site,
        {"politik/bilder/bild.png": png(), "politik/.hidden.png": png(), "politik/_entwurf.png": png()},
    )
    client = client_for(config, tmp_path / "state")
    response = client.get(path)
    assert response.status_code == 404
    assert b"Titel" not in response.data and b"title" not in response.data


# --- changes ---------------------------------------------------------------------------------------


@pytest.fixture
def watched(make_site: MakeSite, tmp_path: Path) -> Iterator[tuple[Flask, Path]]:
    config = site_with(make_site, {"politik/bilder/bild.png": png(2, 2)})
    app = create_app(config, clock=lambda: NOW, watch=True, notify=False, state_dir=tmp_path / "state")
    yield app, config.parent / "articles" / "politik" / "bilder" / "bild.png"
    app.extensions["feeds"].live.stop()


def test_a_picture_edited_added_and_removed_changes_the_enclosure_live(watched: tuple[Flask, Path]) -> None:
    app, picture = watched
    client = app.test_client()

    def lengths() -> set[str]:
        return {length for found in enclosures(client).values() for _, length, _ in found}

    assert lengths() == {str(len(png(2, 2)))}
    bigger = png(40, 30, (10, 200, 10))
    picture.write_bytes(bigger)  # edited in place
    wait_until(lambda: lengths() == {str(len(bigger))}, "the edited picture's length in every format")
    assert client.get("/media/politik/bilder/bild.png").data == bigger
    picture.unlink()
    wait_until(lambda: lengths() == set(), "the removed picture left out")
    site: Site = app.extensions["feeds"]
    assert any("no such file" in p.message for p in site.problems())
    replacement = picture.with_name("neu.png")
    replacement.write_bytes(png(5, 5))
    os.replace(replacement, picture)  # added back, as editors and rsync do: renamed into place
    wait_until(lambda: lengths() == {str(len(png(5, 5)))}, "the picture added back")
    wait_until(lambda: not any("bild.png" in p.message for p in site.problems()), "its problem gone")


def test_a_folder_of_pictures_moved_away_and_back_is_followed_live(watched: tuple[Flask, Path]) -> None:
    app, picture = watched
    client = app.test_client()
    folder = picture.parent
    folder.rename(folder.with_name("weg"))
    wait_until(lambda: enclosures(client)["rss"] == [], "the pictures of a folder moved away left out")
    folder.with_name("weg").rename(folder)
    expected = [(BASE + "media/politik/bilder/bild.png", str(len(png(2, 2))), "image/png")]
    wait_until(lambda: enclosures(client)["rss"] == expected, "the folder moved back")


def test_a_picture_changed_while_no_server_ran_is_seen_at_the_next_start(
    make_site: MakeSite, tmp_path: Path
) -> None:
    config = site_with(make_site, {"politik/bilder/bild.png": png(2, 2)})
    state = tmp_path / "state"
    first = open_site(config, clock=lambda: NOW, state_dir=state)
    assert b'length="%d"' % len(png(2, 2)) in first.feed("politik", "rss").body
    first.close()
    picture = config.parent / "articles" / "politik" / "bilder" / "bild.png"
    picture.write_bytes(png(9, 9))
    second = open_site(config, clock=lambda: NOW, state_dir=state)
    assert b'length="%d"' % len(png(9, 9)) in second.feed("politik", "rss").body
    second.close()
    picture.unlink()
    missing = open_site(config, clock=lambda: NOW, state_dir=state)
    assert b"<enclosure" not in missing.feed("politik", "rss").body
    missing.close()
    picture.write_bytes(png(3, 3))
    back = open_site(config, clock=lambda: NOW, state_dir=state)
    assert b'length="%d"' % len(png(3, 3)) in back.feed("politik", "rss").body
    back.close()


def test_a_replaced_picture_is_purged_like_a_changed_document(make_site: MakeSite, tmp_path: Path) -> None:
    config = site_with(make_site, {"politik/bilder/bild.png": png(2, 2)})
    site = open_site(config, clock=lambda: NOW, state_dir=tmp_path / "state")
    (before,) = picture_documents(site)
    assert before.url == BASE + "media/politik/bilder/bild.png"
    picture = config.parent / "articles" / "politik" / "bilder" / "bild.png"
    picture.write_bytes(png(2, 2, (1, 2, 3)))  # the same size: only the file's version tells
    (after,) = picture_documents(site)
    assert after.key != before.key
    site.close()


def test_a_picture_only_a_body_shows_is_purged_when_replaced(make_site: MakeSite, tmp_path: Path) -> None:
    """No row names it (only ``image:`` is indexed), so the worker remembers the pictures whose
    events it saw: caches in front are told of the new version like of any changed document."""
    body = "![Karte](bilder/karte.png)"
    config = make_site({"politik/karte.md": article(image="", body=body).replace('image: ""\n', "")})
    picture = config.parent / "articles" / "politik" / "bilder" / "karte.png"
    picture.parent.mkdir()
    picture.write_bytes(png(2, 2))
    app = create_app(config, clock=lambda: NOW, watch=True, notify=False, state_dir=tmp_path / "state")
    site: Site = app.extensions["feeds"]
    url = BASE + "media/politik/bilder/karte.png"
    try:
        assert url not in [e.url for e in picture_documents(site)]
        picture.write_bytes(png(2, 2, (9, 9, 9)))  # replaced in place, the same size
        wait_until(lambda: url in [e.url for e in picture_documents(site)], "the replaced picture known")
        (before,) = [e.key for e in picture_documents(site) if e.url == url]
        picture.write_bytes(png(2, 2, (1, 2, 3)))
        wait_until(
            lambda: [e.key for e in picture_documents(site) if e.url == url] != [before],
            "a new version of the picture for the purge",
        )
    finally:
        site.live.stop()


# --- the export ---------------------------------------------------------------------------------


def test_build_exports_the_pictures_the_feeds_reference(make_site: MakeSite, tmp_path: Path) -> None:
    config = site_with(
        make_site, {"politik/bilder/bild.png": png(4, 4), "politik/bilder/kaputt.png": b"<html>"}
    )
    out = tmp_path / "out"
    build(open_site(config, clock=lambda: NOW, state_dir=tmp_path / "state"), out)
    assert (out / "media" / "politik" / "bilder" / "bild.png").read_bytes() == png(4, 4)
    assert not (out / "media" / "politik" / "bilder" / "kaputt.png").exists()
    parsed = feedparser.parse((out / "feeds" / "politik.rss").read_bytes())
    (enclosure,) = parsed.entries[0].enclosures
    exported = out / urlsplit(enclosure.href).path.lstrip("/")
    assert exported.is_file() and str(exported.stat().st_size) == enclosure.length


def test_build_of_the_demo_carries_every_picture(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(open_site(DEMO_CONFIG, clock=lambda: NOW, state_dir=tmp_path / "state"), out)
    for rel in DEMO_PICTURES:
        assert (out / "media" / rel).read_bytes() == (REPO / "articles" / rel).read_bytes()


# --- a real browser --------------------------------------------------------------------------------


class DevTools:
    """Chromium driven over ``--remote-debugging-pipe`` (DevTools protocol, NUL-separated JSON
    on descriptors 3 and 4): no driver, no network port."""

    def __init__(self, profile: Path) -> None:
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()
        # Moved past 9, so that placing them on 3 and 4 cannot close one of them (bash: dash
        # takes single-digit descriptors only).
        ours = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome, from_chrome)]
        os.close(to_chrome)
        os.close(from_chrome)
        give, take = ours
        redirect = f'exec "$0" "$@" 3<&{give} 4>&{take} {give}<&- {take}>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", redirect, *browser.command(profile, "--remote-debugging-pipe", "about:blank")],
            pass_fds=ours,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in ours:
            os.close(fd)
        self._buffer = b""
        self._next = 0

    def call(self, method: str, session: str | None = None, **params: object) -> dict:
        """Send one command; its result (events read meanwhile are kept in ``events``)."""
        self._next += 1
        message: dict[str, object] = {"id": self._next, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            answer = self.receive()
            if answer.get("id") == self._next:
                assert "error" not in answer, answer
                return answer["result"]

    def receive(self) -> dict:
        deadline = time.monotonic() + PATIENCE
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            assert left > 0, "Chromium did not answer"
            ready, _, _ = select.select([self._read], [], [], left)
            if ready:
                chunk = os.read(self._read, 65536)
                assert chunk, "Chromium exited"
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def images(self, url: str) -> list[dict]:
        """Every <img> of the page at ``url`` once it has loaded: src, complete, naturalWidth."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session)
        self.call("Page.navigate", session, url=url)
        while True:  # the load event comes once every picture has loaded or failed
            event = self.receive()
            if event.get("method") == "Page.loadEventFired" and event.get("sessionId") == session:
                break
        found = self.call(
            "Runtime.evaluate",
            session,
            expression="JSON.stringify([...document.images].map(i => "
            "({src: i.currentSrc, complete: i.complete, width: i.naturalWidth})))",
            returnByValue=True,
        )
        self.call("Target.closeTarget", targetId=target)
        return json.loads(found["result"]["value"])

    def close(self) -> None:
        try:
            os.write(self._write, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        try:
            self.process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)


def test_a_real_browser_shows_every_demo_picture(start_server: StartServer, tmp_path: Path) -> None:
    """The demo, served by gunicorn on loopback and opened in headless Chromium: on the feed
    pages and the article pages every picture is loaded and decoded, none broken."""
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip("chromium is not installed")
    server = start_server(DEMO_CONFIG)
    browser = DevTools(tmp_path / "profile")
    try:
        pages = {
            "/feeds/sport": 1,
            "/feeds/klima": 1,
            "/articles/stadtlauf-beispielstadt-2025": 1,
            "/articles/glasfaser-ausbau-beispielkreis": 1,
        }
        for path, pictures in pages.items():
            images = browser.images(server.url(path))
            assert len(images) >= pictures, (path, images)
            broken = [i for i in images if not (i["complete"] and i["width"] > 0)]
            assert broken == [], (path, broken)
            assert all(i["src"].startswith(server.url("/media/")) for i in images), images
    finally:
        browser.close()
