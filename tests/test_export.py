"""export.build: the static tree a plain web server serves, swapped in atomically."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import anyfeed
import lxml.html
import pytest
from lxml import etree

import feeds.export
from feeds import create_app
from feeds.export import Survey, build, survey_ahead
from feeds.outfolder import (
    MANIFEST,
    MARKER,
    MARKER_BYTES,
    ExportRefused,
    read_manifest,
    read_mark,
    target_refusal,
)
from feeds.renames import exchange
from feeds.site import FORMATS, Site, open_site
from feeds.store import IndexStore, Reader

from conftest import DEMO_CONFIG, NOW, MakeSite

SECRETS = (b"DRAFT-SECRET", b"EMBARGO-SECRET")


def load(path) -> Site:
    return open_site(str(path), clock=lambda: NOW)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file a web server would serve from ``root``: the export's bookkeeping left out."""
    paths = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()]
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in paths}
    return {rel: data for rel, data in files.items() if rel not in (MANIFEST, MARKER)}


def crawl(site: Site) -> dict[str, bytes]:
    """Every document a reader, a browser or a crawler reaches from the index and robots.txt by
    following links (pages, feed links, archive links, JSON Feed next_url, sitemaps), keyed by
    URL path."""
    client = create_app(site.config_path, clock=lambda: NOW).test_client()
    base = site.config.url
    found: dict[str, bytes] = {}
    todo = ["/", "/robots.txt"]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        response = client.get(path)
        assert response.status_code == 200, path
        found[path] = response.data
        if response.mimetype == "text/html":
            links = lxml.html.fromstring(response.data).xpath("//a/@href | //link/@href | //img/@src")
        elif response.mimetype == "application/feed+json":
            doc = json.loads(response.data)
            links = [doc.get("next_url", "")] + [item["url"] for item in doc["items"]]
        elif response.mimetype.endswith(("xml", "opml")):
            root = etree.fromstring(response.data)
            links = root.xpath(
                "//@href | //@url | //@xmlUrl | //@htmlUrl"
                " | //*[local-name()='link' or local-name()='url' or local-name()='icon'"
                " or local-name()='logo' or local-name()='loc']/text()"
            )
        elif response.mimetype == "text/plain":  # robots.txt names the sitemaps
            text = response.get_data(as_text=True)
            named = [line.partition(":") for line in text.splitlines()]
            links = [value.strip() for key, _, value in named if key == "Sitemap"]
        else:  # a picture
            links = []
        for link in links:
            if link.startswith(base):
                link = "/" + link.removeprefix(base)
            if link == "/" or link.startswith(("/feeds", "/articles/", "/static/", "/media/", "/sitemap")):
                todo.append(link.partition("#")[0])  # our documents, not links in article text
    return found


def file_for(path: str) -> str:
    if path == "/":
        return "index.html"
    rel = path.lstrip("/")
    return f"{rel}.html" if rel.startswith("articles/") or rel.count("/") == 1 and "." not in rel else rel


def expected_files(site: Site) -> dict[str, bytes]:
    """What the export must hold: every crawled document, and beside it the gzip bytes the
    server sends for it (a web server with gzip_static serves those)."""
    client = create_app(site.config_path, clock=lambda: NOW).test_client()
    files: dict[str, bytes] = {}
    for path, body in crawl(site).items():
        files[file_for(path)] = body
        files[f"{file_for(path)}.gz"] = client.get(path, headers={"Accept-Encoding": "gzip"}).data
    return files
    return files


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "public" / "www"


def siblings(out: Path) -> list[str]:
    """What is beside the export but the export it replaced, kept as the next build's spare."""
    return sorted(p.name for p in out.parent.iterdir() if p.name != f".{out.name}.feeds-spare")


def test_export_writes_every_document_and_its_gzip_twin(make_site: MakeSite, out: Path) -> None:
    site = load(make_site())
    done = build(site, out)
    files = snapshot(out)
    assert files == expected_files(site)  # exactly what a reader or browser reaches by links
    assert done.documents == done.rendered == done.written == len(files) // 2
    assert {
        "index.html",
        "feeds/alle.rss",
        "feeds/alle.atom",
        "feeds/kurz.atom",
        "articles/erster.html",
        "articles/erster.html.gz",
    } <= files.keys()
    for rel, data in files.items():
        if rel.endswith(".gz"):
            assert gzip.decompress(data) == files[rel[:-3]], rel


def test_exported_documents_parse(make_site: MakeSite, out: Path) -> None:
    site = load(make_site())
    build(site, out)
    for name in site.specs:
        for fmt in FORMATS:
            body = (out / "feeds" / f"{name}.{fmt}").read_bytes()
            assert not anyfeed.parse(body).bozo, (name, fmt)
            json.loads(body) if fmt == "json" else etree.fromstring(body)
    links = lxml.html.fromstring((out / "index.html").read_bytes()).xpath("//link[@rel='alternate']/@href")
    assert "/feeds/alle.rss" in links and "/feeds/alle.atom" in links


def test_exported_files_carry_the_documents_dates(make_site: MakeSite, out: Path) -> None:
    site = load(make_site())
    build(site, out)
    for rel in ("feeds/alle.rss", "feeds/alle.rss.gz", "articles/zweiter.html"):
        doc = site.feed("alle", "rss") if rel.startswith("feeds") else site.page("zweiter")
        assert (out / rel).stat().st_mtime == doc.last_modified.timestamp(), rel


def test_exported_tree_is_readable_by_a_web_server(make_site: MakeSite, out: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask; the private temp folder must not leak into it
    try:
        build(load(make_site()), out)
    finally:
        os.umask(old_umask)
    for path in [out, *out.rglob("*")]:
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH, path
        if path.is_dir():
            assert mode & stat.S_IXOTH, path


def test_same_site_exports_identical_bytes(make_site: MakeSite, tmp_path: Path) -> None:
    path = make_site()
    build(load(path), tmp_path / "a")
    build(load(path), tmp_path / "b")
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_rebuild_drops_the_old_export_and_keeps_what_it_did_not_write(make_site: MakeSite, out: Path) -> None:
    build(load(make_site(name="alt")), out)
    (out / "humans.txt").write_text("User-agent: *\n")
    (out / "feeds" / "hand-made.rss").write_text("<rss/>")
    (out / "images" / "empty").mkdir(parents=True)
    (out / "images" / "logo.png").write_bytes(b"PNG")
    (out / "images").chmod(0o750)

    articles = {"politik/erster.md": "---\nid: erster\ntitle: Nur noch einer\ndate: 2025-06-01\n---\nText\n"}
    new_site = load(make_site(articles, name="neu"))
    build(new_site, out)

    foreign = {"humans.txt": b"User-agent: *\n", "feeds/hand-made.rss": b"<rss/>", "images/logo.png": b"PNG"}
    assert snapshot(out) == expected_files(new_site) | foreign
    assert (out / "images" / "empty").is_dir()
    assert stat.S_IMODE((out / "images").stat().st_mode) == 0o750
    assert not (out / "articles" / "zweiter.html").exists()  # the old export's own file is gone
    assert siblings(out) == ["www"]


def test_rebuild_never_carries_a_symlink_and_keeps_the_original_aside(
    make_site: MakeSite, out: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A web server that follows symlinks would serve /etc/passwd from the export."""
    site = load(make_site())
    build(site, out)
    secret = tmp_path / "secret.txt"
    secret.write_text("the server's secret")
    (out / "passwd.txt").symlink_to("/etc/passwd")
    (out / "static").mkdir(exist_ok=True)
    (out / "static" / "secret.txt").symlink_to(secret)
    (out / "etc").symlink_to("/etc", target_is_directory=True)
    (out / "humans.txt").write_text("User-agent: *\n")
    links = {"etc": "/etc", "passwd.txt": "/etc/passwd", "static/secret.txt": str(secret)}

    with caplog.at_level(logging.INFO, "feeds"):
        build(site, out)

    assert [p for p in out.rglob("*") if p.is_symlink()] == []
    assert snapshot(out) == expected_files(site) | {"humans.txt": b"User-agent: *\n"}
    kept = out.parent / f".www.feeds-old-{os.getpid()}-kept"
    assert siblings(out) == sorted([kept.name, "www"])
    found = {p.relative_to(kept).as_posix(): os.readlink(p) for p in kept.rglob("*") if p.is_symlink()}
    assert found == links  # the operator's own symlinks, untouched
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*")) == sorted([*links, "static"])
    assert secret.read_text() == "the server's secret"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"left 3 symlink(s) out of the new export of {out} (etc, passwd.txt, ")
    assert f"kept in {kept}" in warnings[0]

    caplog.clear()
    build(site, out)  # nothing left to leave out: nothing more is set aside or said
    assert siblings(out) == sorted([kept.name, "www"])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_forced_build_into_a_folder_with_symlinks_leaves_them_out(make_site: MakeSite, out: Path) -> None:
    out.mkdir(parents=True)
    (out / "passwd.txt").symlink_to("/etc/passwd")
    (out / "humans.txt").write_text("keep me")
    site = load(make_site())
    build(site, out, force=True)
    assert not os.path.lexists(out / "passwd.txt")
    assert snapshot(out) == expected_files(site) | {"humans.txt": b"keep me"}
    kept = out.parent / f".www.feeds-old-{os.getpid()}-kept"
    assert [p.name for p in kept.iterdir()] == ["passwd.txt"]
    assert os.readlink(kept / "passwd.txt") == "/etc/passwd"


def test_export_lists_what_it_wrote_in_its_manifest(make_site: MakeSite, out: Path) -> None:
    site = load(make_site())
    build(site, out)
    manifest = json.loads((out / MANIFEST).read_text())  # one JSON document, one record a line
    assert manifest.keys() == {"generator", "version", "mark", "documents"}
    assert (manifest["generator"], manifest["version"]) == ("feeds", 3)
    assert manifest["mark"]["journal"] and manifest["mark"]["seq"] >= 0  # where in the index it stands
    listed = [record[0] for record in manifest["documents"]]
    assert sorted([*listed, *(f"{rel}.gz" for rel in listed)]) == sorted(expected_files(site))
    assert (out / MARKER).read_bytes() == MARKER_BYTES


def test_export_holds_no_drafts_or_embargoed(out: Path) -> None:
    site = load(DEMO_CONFIG)
    hidden = [a for a in site.all_articles() if not a.is_published(NOW)]
    assert hidden, "the demo should hold a draft and an embargoed article"
    build(site, out)
    files = snapshot(out)
    for rel, data in files.items():
        text = gzip.decompress(data) if rel.endswith(".gz") else data
        for secret in SECRETS:
            assert secret not in text, f"{secret.decode()} in {rel}"
    for article in hidden:
        assert f"articles/{article.id}.html" not in files
    assert files == expected_files(site)


@pytest.mark.parametrize("fail_after", [0, 1, 7])
def test_failed_export_leaves_the_previous_one_intact(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch, fail_after: int
) -> None:
    build(load(make_site(name="alt")), out)
    before = snapshot(out)

    new_site = load(make_site({"x/neu.md": "---\ntitle: Neu\ndate: 2025-07-01\n---\nNeu\n"}, name="neu"))
    real_write = Path.write_bytes
    calls = []

    def flaky(self: Path, data: bytes) -> int:
        calls.append(self)
        if len(calls) > fail_after:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", flaky)
    with pytest.raises(OSError):
        build(new_site, out)
    monkeypatch.undo()

    assert len(calls) == fail_after + 1
    assert snapshot(out) == before
    assert siblings(out) == ["www"]


def test_failed_first_export_leaves_nothing_behind(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = load(make_site())

    def broken(self: Path, data: bytes) -> int:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(OSError):
        build(site, out)
    monkeypatch.undo()
    assert siblings(out) == []


def test_export_into_a_new_nested_folder(make_site: MakeSite, tmp_path: Path) -> None:
    site = load(make_site())
    target = tmp_path / "deep" / "er" / "www"
    build(site, target)
    assert snapshot(target) == expected_files(site)


# --- which folders a build may replace -----------------------------------------------------------

SITE = Path("/srv/news")
CONFIG = (SITE / "config.yaml",)
ARTICLES = SITE / "articles"
STATE = (SITE / ".feeds",)


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        (SITE, "contains the config file /srv/news/config.yaml"),
        (Path("/srv"), "contains the config file"),
        (Path("/"), "contains the config file"),
        (SITE / "config.yaml", "is the config file"),
        (ARTICLES, "is the articles folder"),
        (ARTICLES / "politik", "lies inside the articles folder /srv/news/articles"),
        (SITE / ".feeds", "is the state folder"),
        (SITE / ".feeds" / "www", "lies inside the state folder"),
    ],
)
def test_target_that_would_destroy_the_site_is_refused(out: Path, reason: str) -> None:
    refusal = target_refusal(out, config=CONFIG, articles=ARTICLES, state=STATE)
    assert refusal is not None and reason in refusal


def test_target_that_contains_an_articles_folder_elsewhere_is_refused() -> None:
    refusal = target_refusal(Path("/data"), config=CONFIG, articles=Path("/data/articles"))
    assert refusal == "it contains the articles folder /data/articles"


@pytest.mark.parametrize("out", [SITE / "public", Path("/var/www/news"), SITE / "articles-export"])
def test_target_of_its_own_is_accepted(out: Path) -> None:
    assert target_refusal(out, config=CONFIG, articles=ARTICLES, state=STATE) is None


def test_refusal_comes_before_anything_is_written(make_site: MakeSite) -> None:
    path = make_site()
    site = open_site(str(path), clock=lambda: NOW, state_dir=path.parent / "state")
    other = open_site(str(path), clock=lambda: NOW, state_dir=path.parent / "other-state")
    before = snapshot(path.parent)
    assert any(rel.startswith("state/") for rel in before)
    with pytest.raises(ExportRefused, match="contains the config file"):
        build(site, path.parent)
    with pytest.raises(ExportRefused, match="is the articles folder"):
        build(site, path.parent / "articles")
    with pytest.raises(ExportRefused, match="is the state folder"):
        build(site, path.parent / "state")
    with pytest.raises(ExportRefused, match="is the state folder"):
        build(other, path.parent / "other-state")
    assert snapshot(path.parent) == before
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "articles",
        "config.yaml",
        "other-state",
        "state",
    ]


def test_target_that_is_a_file_is_refused(make_site: MakeSite, out: Path) -> None:
    out.parent.mkdir(parents=True)
    out.write_text("not a folder")
    with pytest.raises(ExportRefused, match="exists and is not a folder"):
        build(load(make_site()), out)
    assert out.read_text() == "not a folder"


# --- the manifest ------------------------------------------------------------------------------

GOOD = {"generator": "feeds", "version": 1, "files": ["index.html", "feeds/a.rss"]}


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"\xff\xfe",
        b"",
        json.dumps(["index.html"]).encode(),
        json.dumps({**GOOD, "generator": "other"}).encode(),
        json.dumps({**GOOD, "version": "1"}).encode(),
        json.dumps({**GOOD, "version": True}).encode(),
        json.dumps({**GOOD, "version": 2}).encode(),
        json.dumps({**GOOD, "extra": 1}).encode(),
        json.dumps({"generator": "feeds", "version": 1}).encode(),
        json.dumps({**GOOD, "files": "index.html"}).encode(),
        json.dumps({**GOOD, "files": ["../x"]}).encode(),
        json.dumps({**GOOD, "files": ["feeds/../../x"]}).encode(),
        json.dumps({**GOOD, "files": ["/etc/passwd"]}).encode(),
        json.dumps({**GOOD, "files": ["a//b"]}).encode(),
        json.dumps({**GOOD, "files": ["./a"]}).encode(),
        json.dumps({**GOOD, "files": [""]}).encode(),
        json.dumps({**GOOD, "files": ["a\\\\..\\\\..\\\\x"]}).encode(),
        json.dumps({**GOOD, "files": [5]}).encode(),
        json.dumps({**GOOD, "files": ["a", "a"]}).encode(),
        json.dumps({**GOOD, "files": [MARKER]}).encode(),
    ],
)
def test_manifest_that_is_not_exactly_ours_is_not_trusted(tmp_path: Path, content: bytes) -> None:
    (tmp_path / MANIFEST).write_bytes(content)
    assert read_manifest(tmp_path) is None


def test_manifest_of_ours_is_read(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps(GOOD))
    manifest = read_manifest(tmp_path)
    assert manifest is not None  # an export of version 1 is still an export of ours
    assert all(rel in manifest for rel in ("index.html", "feeds/a.rss", MANIFEST, MARKER))
    assert not any(rel in manifest for rel in ("index.htm", "feeds/a.rss.gz", "humans.txt"))


def test_manifest_behind_a_symlink_or_a_pipe_is_not_trusted(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(GOOD))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / MANIFEST).symlink_to(elsewhere)
    assert read_manifest(tmp_path / "a") is None
    (tmp_path / "b").mkdir()
    os.mkfifo(tmp_path / "b" / MANIFEST)  # opening it for reading would block the build
    assert read_manifest(tmp_path / "b") is None


# --- what is not ours survives -----------------------------------------------------------------


def test_foreign_folder_is_refused_unless_forced(make_site: MakeSite, out: Path) -> None:
    (out / "static").mkdir(parents=True)
    (out / "humans.txt").write_text("keep me")
    (out / "static" / "style.css").write_text("body {}")
    site = load(make_site())
    with pytest.raises(ExportRefused, match="not an export of feeds.*--force"):
        build(site, out)
    assert sorted(p.name for p in out.iterdir()) == ["humans.txt", "static"]

    build(site, out, force=True)
    extra = {"humans.txt": b"keep me", "static/style.css": b"body {}"}
    assert snapshot(out) == expected_files(site) | extra
    build(site, out)  # now it is an export: no --force needed, and still nothing lost
    assert snapshot(out) == expected_files(site) | extra


@pytest.mark.parametrize("clash", ["index.html", "feeds/alle.rss.gz", MANIFEST, MARKER, "feeds"])
def test_foreign_file_where_the_export_writes_is_refused_even_forced(
    make_site: MakeSite, out: Path, clash: str
) -> None:
    (out / clash).parent.mkdir(parents=True, exist_ok=True)
    (out / clash).write_text("hand-made")
    with pytest.raises(ExportRefused, match=clash.replace(".", r"\.")):
        build(load(make_site()), out, force=True)
    assert (out / clash).read_text() == "hand-made"
    assert [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()] == [clash]
    assert siblings(out) == ["www"]


def test_foreign_file_that_cannot_be_linked_stops_the_build_before_the_swap(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(load(make_site(name="alt")), out)
    (out / "humans.txt").write_text("keep me")
    before = snapshot(out)

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    with pytest.raises(ExportRefused, match=f"{out / 'humans.txt'} is not ours and cannot be kept"):
        build(load(make_site({"x/neu.md": "Neu\nText\n"}, name="neu")), out)
    assert snapshot(out) == before
    assert siblings(out) == ["www"]


def test_failed_swap_puts_the_old_export_back(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the file system cannot swap two folders in one step, the build renames twice; a
    failure of the second rename puts the old export back."""
    build(load(make_site(name="alt")), out)
    (out / "humans.txt").write_text("keep me")
    before = snapshot(out)
    real_replace = os.replace
    calls: list[object] = []

    def new_one_fails(src: str, dst: str) -> None:
        calls.append(dst)
        if Path(dst) == out and ".feeds-tmp-" in str(src):
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(feeds.export, "exchange", lambda a, b: False)
    monkeypatch.setattr(os, "replace", new_one_fails)
    with pytest.raises(OSError):
        build(load(make_site({"x/neu.md": "Neu\nText\n"}, name="neu")), out)
    monkeypatch.undo()
    assert calls.count(out) >= 2  # in (failed), back
    assert snapshot(out) == before
    assert siblings(out) == ["www"]


def test_failed_exchange_leaves_the_old_export_in_place(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(load(make_site(name="alt")), out)
    (out / "humans.txt").write_text("keep me")
    before, numbers = snapshot(out), inodes(out)

    def fails(a: Path, b: Path) -> bool:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(feeds.export, "exchange", fails)
    with pytest.raises(OSError):
        build(load(make_site({"x/neu.md": "Neu\nText\n"}, name="neu")), out)
    monkeypatch.undo()
    assert snapshot(out) == before and inodes(out) == numbers
    assert siblings(out) == ["www"]


def test_exchange_swaps_two_folders_in_one_step(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("b")
    if not exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this file system cannot exchange two names (the build then renames twice)")
    assert (tmp_path / "a" / "x").read_text() == "b" and (tmp_path / "b" / "x").read_text() == "a"


# --- leftovers of killed builds ------------------------------------------------------------------


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    process = subprocess.Popen(["sleep", "60"])
    yield process.pid
    process.kill()
    process.wait()


def work_folder(out: Path, kind: str, pid: int, marker: bytes | None = MARKER_BYTES) -> Path:
    folder = out.parent / f".{out.name}.feeds-{kind}-{pid}"
    (folder / "feeds").mkdir(parents=True)
    (folder / "feeds" / "alle.rss").write_text("half-written")
    if marker is not None:
        (folder / MARKER).write_bytes(marker)
    return folder


def test_leftover_of_a_dead_build_is_removed(make_site: MakeSite, out: Path, dead_pid: int) -> None:
    out.parent.mkdir(parents=True)
    work_folder(out, "tmp", dead_pid)
    build(load(make_site()), out)
    assert siblings(out) == ["www"]


def test_folders_without_our_marker_or_of_a_live_build_are_left_alone(
    make_site: MakeSite, out: Path, dead_pid: int, live_pid: int
) -> None:
    out.parent.mkdir(parents=True)
    untouched = [
        work_folder(out, "tmp", dead_pid, marker=None),
        work_folder(out, "old", dead_pid + 100000, marker=b"something else\n"),
        work_folder(out, "tmp", live_pid),
        work_folder(out.parent / "other", "tmp", dead_pid),  # a leftover of another target
    ]
    build(load(make_site()), out)
    for folder in untouched:
        assert (folder / "feeds" / "alle.rss").read_text() == "half-written", folder


def test_old_tree_of_a_build_killed_between_its_renames_is_put_back(
    make_site: MakeSite, out: Path, dead_pid: int
) -> None:
    site = load(make_site())
    build(site, out)
    (out / "humans.txt").write_text("keep me")
    out.rename(out.parent / f".www.feeds-old-{dead_pid}")  # as if killed right after the first rename
    work_folder(out, "tmp", dead_pid)

    build(site, out)
    assert snapshot(out) == expected_files(site) | {"humans.txt": b"keep me"}
    assert siblings(out) == ["www"]


def test_old_tree_keeps_what_changed_during_the_build(make_site: MakeSite, out: Path, dead_pid: int) -> None:
    site = load(make_site())
    build(site, out)
    old = out.parent / f".www.feeds-old-{dead_pid}"
    os.link(out / "index.html", old.parent / "keep")  # stands in for a copy swapped in
    old.mkdir()
    (old / MARKER).write_bytes(MARKER_BYTES)
    (old / MANIFEST).write_text(json.dumps({"generator": "feeds", "version": 1, "files": ["index.html"]}))
    (old / "index.html").write_text("ours: the manifest says so")
    (old / "late.txt").write_text("arrived while the build ran")
    os.link(out / "feeds" / "alle.rss", old / "alle-copy")  # not at the same path in out: kept

    build(site, out)
    kept = out.parent / f".www.feeds-old-{dead_pid}-kept"
    assert sorted(p.name for p in kept.iterdir()) == ["alle-copy", "late.txt"]
    assert (kept / "late.txt").read_text() == "arrived while the build ran"
    assert siblings(out) == sorted(["keep", kept.name, "www"])


def test_old_file_that_cannot_be_removed_does_not_fail_the_build(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    build(load(make_site(name="alt")), out)
    real_unlink = Path.unlink

    def stuck(self: Path, missing_ok: bool = False) -> None:
        if self.name == "index.html" and ".feeds-old-" in str(self):
            raise PermissionError(13, "Permission denied")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", stuck)
    new_site = load(make_site({"x/neu.md": "Neu\nText\n"}, name="neu"))
    assert build(new_site, out).documents == len(export_files_of(new_site))
    assert snapshot(out) == expected_files(new_site)
    kept = out.parent / f".www.feeds-old-{os.getpid()}-kept"
    assert [p.name for p in kept.iterdir()] == ["index.html"]
    assert f"kept {kept}" in caplog.text


def export_files_of(site: Site) -> list[str]:
    return [rel for rel in expected_files(site) if not rel.endswith(".gz")]


NginxExport = Callable[[Path], int]


@pytest.fixture
def nginx_export(tmp_path: Path) -> Iterator[NginxExport]:
    """nginx with deploy/nginx-static.conf (only listen and root replaced) over an export; the port."""
    from support import harness

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is required in CI (scripts/install-system-packages.sh installs it)")
        pytest.skip("nginx is not installed (scripts/install-system-packages.sh installs it)")
    processes: list[subprocess.Popen[bytes]] = []

    def start(out: Path) -> int:
        port = harness.free_port()
        server_block = (harness.REPO / "deploy" / "nginx-static.conf").read_text()
        server_block = server_block.replace("listen 80;", f"listen 127.0.0.1:{port};")
        server_block = server_block.replace("root /srv/news/out;", f"root {out};")
        work = tmp_path / f"nginx-{port}"
        work.mkdir()
        temps = "".join(
            f"{name}_temp_path {work}/{name};\n"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (work / "nginx.conf").write_text(
            ("user root;\n" if os.getuid() == 0 else "")  # workers as root can read the private tmp_path
            + f"daemon off; pid {work}/nginx.pid; error_log {work}/error.log warn;\n"
            f"events {{ worker_connections 64; }}\nhttp {{ access_log off; {temps}\n{server_block}\n}}\n"
        )
        process = subprocess.Popen(
            [nginx, "-c", str(work / "nginx.conf"), "-p", str(work)], stderr=subprocess.DEVNULL
        )
        processes.append(process)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (work / "error.log").read_text()
            try:
                harness.fetch(port, "/")
                return port
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def test_nginx_with_the_shipped_config_serves_the_export_as_the_app_serves_the_site(
    make_site: MakeSite, tmp_path: Path, nginx_export: NginxExport
) -> None:
    """Every document a reader reaches from the index: same bytes, same media type."""
    from support import harness

    config = make_site(config={"feeds": {"kurz": {"limit": 1}}, "site": {"icon": "/static/i.png"}})
    (config.parent / "static").mkdir()
    (config.parent / "static" / "i.png").write_bytes(b"\x89PNG\r\n\x1a\nicon")
    site = load(config)
    out = tmp_path / "out"
    build(site, out)
    port = nginx_export(out)
    client = create_app(config, clock=lambda: NOW).test_client()
    crawled = crawl(site)
    assert any("/archive/" in p for p in crawled) and "/feeds.opml" in crawled and "/static/i.png" in crawled
    for path, body in crawled.items():
        reply = harness.fetch(port, path)
        assert reply.status == 200, path
        assert reply.body == body, path
        served = client.get(path)
        assert reply.headers["content-type"].split(";")[0] == served.mimetype, path
        assert reply.headers.get("x-content-type-options") == served.headers.get("X-Content-Type-Options")
        if path.startswith(("/static/", "/media/")):  # nginx names other lifetimes once for all documents
            assert reply.headers["cache-control"] == served.headers["Cache-Control"], path
        zipped = harness.fetch(port, path, {"Accept-Encoding": "gzip"})
        assert gzip.decompress(zipped.body) == body, path


def test_nginx_with_the_shipped_config_follows_no_symlink_in_the_export(
    make_site: MakeSite, tmp_path: Path, nginx_export: NginxExport
) -> None:
    """Symlinks planted in a live export (by hand, or by an older feeds that carried them)."""
    from support import harness

    site = load(make_site())
    out = tmp_path / "out"
    build(site, out)
    (out / "passwd.txt").symlink_to("/etc/passwd")
    (out / "etc").symlink_to("/etc", target_is_directory=True)
    (out / "static").mkdir()
    (out / "static" / "passwd.txt").symlink_to("/etc/passwd")
    (out / "feeds" / "leak.html").symlink_to("/etc/passwd")  # /feeds/leak -> leak.html
    port = nginx_export(out)
    assert b"root:" in Path("/etc/passwd").read_bytes()
    for path in ("/passwd.txt", "/etc/passwd", "/static/passwd.txt", "/feeds/leak"):
        reply = harness.fetch(port, path)
        assert reply.status in (403, 404), (path, reply.status)
        assert b"root:" not in reply.body, path
    assert harness.fetch(port, "/feeds/alle.rss").status == 200  # the export itself is served
    (tmp_path / "srv").symlink_to(tmp_path, target_is_directory=True)
    linked = nginx_export(tmp_path / "srv" / "out")  # a symlink on the way to the root is fine
    assert harness.fetch(linked, "/feeds/alle.rss").status == 200
    assert harness.fetch(linked, "/passwd.txt").status == 403


# --- rebuilds: only what changed is rendered and written ------------------------------------------


def many_articles(count: int, edited: int | None = None) -> dict[str, str | bytes]:
    """``count`` articles in two topics (archive pages at a limit of 2); ``edited``: retitled."""
    return {
        f"{'politik' if i % 2 else 'klima'}/a{i:02d}.md": (
            f"---\nid: a{i:02d}\ntitle: Artikel {i}{' (korrigiert)' if i == edited else ''}\n"
            f"date: 2025-05-{i + 1:02d}T08:00:00+02:00\ntopics: [{'Politik' if i % 2 else 'Klima'}]\n---\n"
            f"Text {i}.\n"
        )
        for i in range(count)
    }


ARCHIVED = {"defaults": {"limit": 2}}


def inodes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_ino
        for p in root.rglob("*")
        if p.is_file() and p.name not in (MANIFEST, MARKER)
    }


def test_rebuild_of_an_unchanged_site_renders_only_the_few_and_writes_nothing(
    make_site: MakeSite, out: Path
) -> None:
    path = make_site(many_articles(9), config=ARCHIVED)
    first = build(load(path), out)
    before = inodes(out)
    assert first.written == first.rendered == first.documents
    assert any("/archive/" in rel for rel in before)

    again = build(load(path), out)
    assert (again.documents, again.written, again.reused) == (first.documents, 0, first.documents)
    assert again.rendered == 5  # the index, OPML, robots.txt, the sitemap and the news sitemap
    assert inodes(out) == before  # every file is the one the first build wrote
    assert snapshot(out) == expected_files(load(path))
    assert siblings(out) == ["www"]


def test_rebuild_after_one_edit_writes_only_the_documents_whose_bytes_changed(
    make_site: MakeSite, out: Path
) -> None:
    path = make_site(many_articles(9), config=ARCHIVED)
    build(load(path), out)
    before = snapshot(out)
    numbers = inodes(out)

    edited = load(
        make_site(many_articles(9, edited=0), config=ARCHIVED)
    )  # the oldest, on the first archive page
    done = build(edited, out)
    after = snapshot(out)
    assert after == expected_files(edited)
    changed = {rel for rel in after if after[rel] != before.get(rel)}
    assert "articles/a00.html" in changed and "feeds/klima/archive/1.atom" in changed
    assert "articles/a01.html" not in changed and "feeds/politik/archive/1.atom" not in changed
    assert done.written * 2 == len(changed)  # a document and its twin
    kept = {rel for rel in after if rel not in changed}
    assert {rel: n for rel, n in inodes(out).items() if rel in kept} == {rel: numbers[rel] for rel in kept}
    assert done.rendered < done.documents // 2


def test_rebuild_after_a_config_change_renders_every_page_again(make_site: MakeSite, out: Path) -> None:
    path = make_site(many_articles(5), config=ARCHIVED)
    build(load(path), out)
    before = snapshot(out)
    retitled = load(make_site(many_articles(5), config={**ARCHIVED, "site": {"title": "Neuer Titel"}}))
    done = build(retitled, out)
    assert snapshot(out) == expected_files(retitled)
    assert done.rendered == done.documents
    assert all(snapshot(out)[rel] != before[rel] for rel in before if rel.startswith("articles/"))


def test_rebuild_rewrites_a_file_changed_by_hand_rather_than_trusting_it(
    make_site: MakeSite, out: Path
) -> None:
    path = make_site(many_articles(5), config=ARCHIVED)
    build(load(path), out)
    page, twin, archive = (
        out / "articles/a01.html",
        out / "articles/a02.html.gz",
        out / "feeds/alle/archive/1.rss",
    )
    page.write_bytes(page.read_bytes().replace(b"Artikel 1", b"Artikel X"))  # same size, same inode
    with twin.open("r+b") as handle:
        handle.truncate(10)
    archive.unlink()
    archive.write_bytes(b"<rss/>")  # another file in its place

    done = build(load(path), out)
    assert snapshot(out) == expected_files(load(path))
    assert done.written == 3


def test_full_rebuild_writes_every_document(make_site: MakeSite, out: Path) -> None:
    path = make_site(many_articles(5), config=ARCHIVED)
    first = build(load(path), out)
    before = inodes(out)
    done = build(load(path), out, full=True)
    assert done.written == done.rendered == first.documents
    assert all(inodes(out)[rel] != number for rel, number in before.items())
    assert snapshot(out) == expected_files(load(path))


def test_export_with_a_version_1_manifest_is_rebuilt(make_site: MakeSite, out: Path) -> None:
    site = load(make_site(many_articles(5), config=ARCHIVED))
    build(site, out)
    files = sorted(rel for rel in inodes(out))
    (out / MANIFEST).write_text(json.dumps({"generator": "feeds", "version": 1, "files": files}))
    (out / "humans.txt").write_text("keep me")
    (out / "articles" / "gone.html").write_text("an old export's page")
    files.append("articles/gone.html")
    (out / MANIFEST).write_text(json.dumps({"generator": "feeds", "version": 1, "files": files}))

    done = build(site, out)
    assert done.written == done.documents  # nothing to reuse: a version 1 manifest has no stamps
    assert snapshot(out) == expected_files(site) | {"humans.txt": b"keep me"}
    assert json.loads((out / MANIFEST).read_text())["version"] == 3


def test_keys_are_not_recorded_while_another_process_writes_the_index(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page rendered after the index's rows changed may show a newer state than its key
    describes."""
    path = make_site(many_articles(5), config=ARCHIVED)
    versions = iter(range(1_000_000))
    changes = iter(range(1_000_000))
    monkeypatch.setattr(IndexStore, "data_version", lambda self: next(versions))
    monkeypatch.setattr(Reader, "journal_last", lambda self: next(changes))
    build(load(path), out)
    records = json.loads((out / MANIFEST).read_text())["documents"]
    assert records and all(key == "" for _, key, *_ in records)
    monkeypatch.undo()
    done = build(load(path), out)  # renders them all again, then links the same bytes
    assert done.rendered == done.documents and done.written == 0
    assert build(load(path), out).rendered == 5


def test_keys_are_recorded_while_other_processes_only_open_the_site(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process opening the site notes in the index that it compared the files (the file
    moves, no row does): a server's worker starting during a long build does, and the keys stay."""
    path = make_site(many_articles(5), config=ARCHIVED)
    site = load(path)
    versions = iter(range(1_000_000))
    monkeypatch.setattr(IndexStore, "data_version", lambda self: next(versions))
    build(site, out)
    records = json.loads((out / MANIFEST).read_text())["documents"]
    pages = [key for rel, key, *_ in records if rel.startswith("articles/")]
    assert len(pages) == 5 and all(pages)
    monkeypatch.undo()
    assert build(load(path), out).rendered == 5  # the rest linked by their keys


@pytest.mark.parametrize("fail_after", [0, 3])
def test_rebuild_that_fails_while_linking_leaves_the_previous_export(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch, fail_after: int
) -> None:
    path = make_site(many_articles(5), config=ARCHIVED)
    build(load(path), out)
    before = snapshot(out)
    numbers = inodes(out)
    real_link, calls = os.link, []

    def flaky(*args: object, **kwargs: object) -> None:
        calls.append(args)
        if len(calls) > fail_after:
            raise OSError(28, "No space left on device")
        real_link(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", flaky)
    with pytest.raises(OSError):
        build(load(make_site(many_articles(5, edited=1), config=ARCHIVED, name="neu")), out)
    monkeypatch.undo()
    assert snapshot(out) == before and inodes(out) == numbers
    assert siblings(out) == ["www"]
    assert build(load(path), out).written == 0  # the old export is still whole, and still ours


# --- the manifest, version 2 -------------------------------------------------------------------

RECORD = ["index.html", "", "0" * 32, 1_700_000_000_000_000_000, 10, 1, 5, 2]


def manifest_of(*records: object) -> bytes:
    header = b'{"generator": "feeds", "version": 2, "documents": [\n'
    return (
        header + b",\n".join(json.dumps(r).encode() for r in records) + (b"\n" if records else b"") + b"]}\n"
    )


def test_manifest_version_2_of_ours_is_read(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_bytes(manifest_of(RECORD, ["articles/a/b.html", "f" * 32, *RECORD[2:]]))
    manifest = read_manifest(tmp_path)
    assert manifest is not None and manifest.documents == 2
    for rel in ("index.html", "index.html.gz", "articles/a/b.html", "articles/a/b.html.gz", MANIFEST, MARKER):
        assert rel in manifest
    assert "articles/a" not in manifest and "humans.txt" not in manifest
    (tmp_path / MANIFEST).write_bytes(manifest_of())
    assert read_manifest(tmp_path) is not None


@pytest.mark.parametrize(
    "content",
    [
        manifest_of(RECORD)[:-1],  # truncated
        manifest_of(RECORD)[:-4],
        manifest_of(RECORD, RECORD[:1])[: -len(b"]}\n")],
        manifest_of(RECORD) + b"\n",  # anything after the end
        manifest_of(RECORD).replace(b"\n]}", b",\n]}"),  # a comma before the end
        manifest_of(RECORD, RECORD).replace(b",\n", b"\n"),  # none between records
        manifest_of(RECORD, RECORD),  # a path twice
        manifest_of(RECORD, ["index.html.gz", *RECORD[1:]]),  # a path that is another's twin
        manifest_of(["../x", *RECORD[1:]]),
        manifest_of(["feeds/../../x", *RECORD[1:]]),
        manifest_of(["/etc/passwd", *RECORD[1:]]),
        manifest_of(["a//b", *RECORD[1:]]),
        manifest_of([MANIFEST, *RECORD[1:]]),
        manifest_of([5, *RECORD[1:]]),
        manifest_of(RECORD[:-1]),
        manifest_of([*RECORD, 1]),
        manifest_of({"rel": "index.html"}),
        manifest_of([*RECORD[:1], "not hex", *RECORD[2:]]),
        manifest_of([*RECORD[:2], "0" * 31, *RECORD[3:]]),
        manifest_of([*RECORD[:3], -1, *RECORD[4:]]),
        manifest_of([*RECORD[:3], 1 << 64, *RECORD[4:]]),
        manifest_of([*RECORD[:3], 1.5, *RECORD[4:]]),
        manifest_of([*RECORD[:3], True, *RECORD[4:]]),
        manifest_of([*RECORD[:3], "1", *RECORD[4:]]),
        manifest_of(["x" * 20_000, *RECORD[1:]]),  # a line longer than any record
        manifest_of(RECORD).replace(b'"index.html"', b'"\xff"'),
        manifest_of(RECORD).replace(b'"version": 2', b'"version": 3'),
        manifest_of(RECORD).replace(b"\n", b"\r\n"),
    ],
)
def test_manifest_version_2_that_is_not_exactly_ours_is_not_trusted(tmp_path: Path, content: bytes) -> None:
    (tmp_path / MANIFEST).write_bytes(content)
    assert read_manifest(tmp_path) is None


def test_huge_manifest_is_read_within_bounds(tmp_path: Path) -> None:
    """A planted manifest of a billion blank lines, or one endless line, is refused after one line."""
    with (tmp_path / MANIFEST).open("wb") as handle:
        handle.write(manifest_of()[:-3])
        handle.write(b"[" * 10_000_000)
    started = time.monotonic()
    assert read_manifest(tmp_path) is None
    assert time.monotonic() - started < 5


def test_manifest_claiming_other_files_reuses_nothing_it_cannot_prove(make_site: MakeSite, out: Path) -> None:
    """Keys and stamps written by hand only make a file reused when the file found is the one
    described; anything else is rendered."""
    site = load(make_site(many_articles(5), config=ARCHIVED))
    build(site, out)
    records = json.loads((out / MANIFEST).read_text())["documents"]
    forged = [
        [rel, "a" * 32, etag, mtime, size + 1, ino, gz, gz_ino]
        for rel, _, etag, mtime, size, ino, gz, gz_ino in records
    ]
    (out / MANIFEST).write_bytes(manifest_of(*forged))
    (out / "articles" / "a01.html").write_bytes(b"<p>planted</p>")
    done = build(site, out)
    assert done.reused == 0 and done.written == done.documents
    assert snapshot(out) == expected_files(site)


# --- the spare: a rebuild that renders and writes only what changed ---------------------------------


def spare_of(out: Path) -> Path:
    return out.parent / f".{out.name}.feeds-spare"


def load_kept(path: Path) -> Site:
    """The site with its state folder, as ``feeds build`` opens it: the index (and its journal)
    outlives the process."""
    return open_site(str(path), clock=lambda: NOW, state_dir=path.parent / ".feeds")


def edits(folder: Path) -> list[tuple[str, Callable[[], None]]]:
    """Changes a newsroom makes between two builds, in order."""

    def write(rel: str, text: str) -> Callable[[], None]:
        return lambda: (folder / rel).write_text(text)

    def touch(rel: str) -> Callable[[], None]:
        return lambda: os.utime(folder / rel, ns=(time.time_ns(), time.time_ns()))

    retitled = many_articles(9, edited=0)["klima/a00.md"]
    body = many_articles(9)["politik/a07.md"].replace("Text 7.", "Text 7, mit einem Satz mehr.")
    new = "---\nid: a09\ntitle: Ganz neu\ndate: 2025-05-20T08:00:00+02:00\ntopics: [Klima]\n---\nNeu.\n"
    return [
        ("the oldest retitled", write("klima/a00.md", retitled)),
        ("the newest's body edited", write("politik/a07.md", body)),
        ("an article deleted", lambda: (folder / "klima/a04.md").unlink()),
        ("an article added", write("klima/a09.md", new)),
        ("a file touched, not changed", touch("politik/a03.md")),
        ("the same title written again", write("klima/a00.md", retitled)),
        ("nothing changed", lambda: None),
    ]


def test_rebuilds_update_the_spare_and_write_only_what_changed(make_site: MakeSite, out: Path) -> None:
    """From the third build on, the export replaced last time is brought up to date from the
    index's journal and swapped in: every export is still exactly the site, the export it
    replaces keeps its bytes (no file shared with it is ever written into), and only the
    documents whose bytes changed are written."""
    path = make_site(many_articles(9), config=ARCHIVED)
    build(load_kept(path), out)
    build(load_kept(path), out)
    assert spare_of(out).is_dir()
    for what, change in edits(path.parent / "articles"):
        before = snapshot(out)
        change()
        site = load_kept(path)
        done = build(site, out)
        after = snapshot(out)
        assert after == expected_files(site), what
        assert snapshot(spare_of(out)) == before, what  # the replaced export, as it was served
        changed = {rel for rel in after if after[rel] != before.get(rel)}
        assert done.written * 2 == len(changed), what
        if "article" not in what:  # no entry came or went, so no archive page shifted
            assert done.rendered < done.documents // 2, what
        assert done.documents * 2 == len(after), what
        assert siblings(out) == ["www"], what
    assert (done.rendered, done.written) == (5, 0)  # nothing changed: the few rendered anyway


def test_spare_is_updated_in_place_not_linked_again(make_site: MakeSite, out: Path) -> None:
    path = make_site(many_articles(9), config=ARCHIVED)
    for _ in range(3):
        build(load_kept(path), out)
    spare = inodes(spare_of(out))
    numbers = inodes(out)
    assert spare == numbers  # the two exports share every file
    (path.parent / "articles" / "klima/a02.md").write_text(many_articles(9, edited=2)["klima/a02.md"])
    build(load_kept(path), out)
    # The new export is the spare's folder: same files but the changed ones.
    kept = {rel for rel, n in inodes(out).items() if numbers.get(rel) == n}
    assert "articles/a02.html" not in kept and "articles/a01.html" in kept
    assert len(kept) > len(numbers) * 3 // 4


def test_file_edited_by_hand_in_the_export_is_rewritten_on_every_build(
    make_site: MakeSite, out: Path
) -> None:
    path = make_site(many_articles(5), config=ARCHIVED)
    for _ in range(2):
        build(load_kept(path), out)
    page = out / "articles/a01.html"
    page.write_bytes(page.read_bytes().replace(b"Artikel 1", b"Artikel X"))  # in place: the spare's too
    build(load_kept(path), out)
    assert snapshot(out) == expected_files(load_kept(path))


def test_foreign_file_survives_updates_and_stays_gone_once_deleted(make_site: MakeSite, out: Path) -> None:
    path = make_site(many_articles(5), config=ARCHIVED)
    for _ in range(2):
        build(load_kept(path), out)
    (out / "humans.txt").write_text("keep me")
    build(load_kept(path), out)
    assert (out / "humans.txt").read_text() == "keep me"
    assert not (spare_of(out) / "humans.txt").exists()  # the spare holds nothing but ours
    (out / "humans.txt").unlink()
    build(load_kept(path), out)
    build(load_kept(path), out)
    assert snapshot(out) == expected_files(load_kept(path))


def test_forged_mark_makes_a_build_look_at_every_document(make_site: MakeSite, out: Path) -> None:
    path = make_site(many_articles(5), config=ARCHIVED)
    for _ in range(2):
        build(load_kept(path), out)
    (path.parent / "articles" / "klima/a02.md").write_text(many_articles(5, edited=2)["klima/a02.md"])
    for forged in ({"seq": 10**6}, {"seq": -1}, {"journal": 5}, {"now": "gestern"}):
        mark = read_mark(out)
        assert mark is not None
        head, rest = (out / MANIFEST).read_text().split("\n", 1)
        shown = json.dumps(mark, ensure_ascii=False, sort_keys=True)
        assert shown in head  # the mark is forged, not left as it was
        (out / MANIFEST).write_text(head.replace(shown, json.dumps({**mark, **forged})) + "\n" + rest)
        done = build(load_kept(path), out)
        assert snapshot(out) == expected_files(load_kept(path))
    assert done.rendered >= 5


def test_update_that_fails_leaves_the_export_and_the_next_build_is_whole(
    make_site: MakeSite, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_site(many_articles(9), config=ARCHIVED)
    for _ in range(2):
        build(load_kept(path), out)
    before, numbers = snapshot(out), inodes(out)
    (path.parent / "articles" / "klima/a02.md").write_text(many_articles(9, edited=2)["klima/a02.md"])
    site = load_kept(path)
    real = site.document
    calls: list[object] = []

    def fails(*args: object, **kwargs: object) -> object:
        calls.append(args)
        if len(calls) == 8:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(site, "document", fails)
    with pytest.raises(OSError):
        build(site, out)
    monkeypatch.undo()
    assert snapshot(out) == before and inodes(out) == numbers
    assert siblings(out) == ["www"] and not spare_of(out).exists()
    build(load_kept(path), out)
    assert snapshot(out) == expected_files(load_kept(path))


def test_folder_named_like_the_spare_that_is_not_ours_is_left_alone(
    make_site: MakeSite, out: Path, tmp_path: Path
) -> None:
    path = make_site(many_articles(5), config=ARCHIVED)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not from feeds")
    out.parent.mkdir(parents=True)
    for planted in ("folder", "symlink"):
        spare = spare_of(out)
        if planted == "folder":
            spare.mkdir()
            (spare / "notes.txt").write_text("not from feeds")
        else:
            spare.symlink_to(elsewhere, target_is_directory=True)
        for _ in range(3):
            build(load_kept(path), out)
            assert snapshot(out) == expected_files(load_kept(path))
        assert os.path.islink(spare) == (planted == "symlink")
        assert sorted(p.name for p in spare.iterdir()) == (
            ["notes.txt"] if planted == "folder" else ["keep.txt"]
        )
        if planted == "folder":
            shutil.rmtree(spare)
        else:
            spare.unlink()
    assert (elsewhere / "keep.txt").read_text() == "not from feeds"


def manifest_v3(mark: object, *records: object) -> bytes:
    header = (
        b'{"generator": "feeds", "version": 3, "mark": ' + json.dumps(mark).encode() + b', "documents": [\n'
    )
    return manifest_of(*records).replace(b'{"generator": "feeds", "version": 2, "documents": [\n', header)


@pytest.mark.parametrize(
    "content",
    [
        manifest_v3([1, 2], RECORD),  # a mark that is not an object
        manifest_v3({}, RECORD)[:-1],  # truncated
        manifest_v3({}, RECORD).replace(b', "documents"', b',"documents"'),
        manifest_v3({"x": "y" * 100}, RECORD).replace(b'"y', b'"\xff'),
        manifest_v3({}, [*RECORD[:3], 1 << 63, *RECORD[4:]]),  # 19 digits, one past the largest
        manifest_v3({}, [*RECORD[:3], 10**19, *RECORD[4:]]),
        manifest_v3({}, ["a\\\\..\\\\x", *RECORD[1:]]),
        manifest_v3({}, ["..", *RECORD[1:]]),
        manifest_v3({}, RECORD, RECORD),
    ],
)
def test_manifest_version_3_that_is_not_exactly_ours_is_not_trusted(tmp_path: Path, content: bytes) -> None:
    (tmp_path / MANIFEST).write_bytes(content)
    assert read_manifest(tmp_path) is None


def test_manifest_version_3_is_read_with_its_mark(tmp_path: Path) -> None:
    odd = ['articles/ein "Zitat" über\u2028Zeilen.html', *RECORD[1:]]
    (tmp_path / MANIFEST).write_bytes(manifest_v3({"seq": 7}, RECORD, odd))
    manifest = read_manifest(tmp_path)
    assert manifest is not None and manifest.mark == {"seq": 7} and manifest.documents == 2
    assert 'articles/ein "Zitat" über\u2028Zeilen.html' in manifest


def test_huge_mark_is_read_within_bounds(tmp_path: Path) -> None:
    with (tmp_path / MANIFEST).open("wb") as handle:
        handle.write(b'{"generator": "feeds", "version": 3, "mark": {"x": "')
        handle.write(b"y" * (40 << 20))  # one endless line
    started = time.monotonic()
    assert read_manifest(tmp_path) is None
    assert time.monotonic() - started < 5


def test_survey_made_ahead_is_taken_only_while_the_export_is_the_one_surveyed(
    make_site: MakeSite, out: Path
) -> None:
    """``feeds build`` surveys the export in another process while it opens the site; a build
    that swapped the export meanwhile makes that survey stale, and it is not used."""
    path = make_site(many_articles(9), config=ARCHIVED)
    for _ in range(2):
        build(load_kept(path), out)
    stale: Future[Survey | None] = Future()
    stale.set_result(survey_ahead(out))
    assert stale.result() is not None
    build(load_kept(path), out)  # another build swaps the export in the meantime
    (path.parent / "articles" / "klima/a02.md").write_text(many_articles(9, edited=2)["klima/a02.md"])
    site = load_kept(path)
    done = build(site, out, ahead=stale)
    assert snapshot(out) == expected_files(site)
    assert 0 < done.written < done.documents // 4
    fresh: Future[Survey | None] = Future()
    fresh.set_result(survey_ahead(out))
    (path.parent / "articles" / "politik/a03.md").write_text(many_articles(9, edited=3)["politik/a03.md"])
    site = load_kept(path)
    done = build(site, out, ahead=fresh)
    assert snapshot(out) == expected_files(site)
    assert 0 < done.written < done.documents // 4
