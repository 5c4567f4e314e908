"""export.build: the static tree a plain web server serves, swapped in atomically."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import feedparser
import lxml.html
import pytest
from conftest import DEMO_CONFIG, NOW, MakeSite
from lxml import etree

from feeds.export import build
from feeds.site import FORMATS, Site, open_site

SECRETS = (b"DRAFT-SECRET", b"EMBARGO-SECRET")


def load(path) -> Site:
    return open_site(str(path), clock=lambda: NOW)


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def expected_files(site: Site) -> dict[str, bytes]:
    docs = {"index.html": site.index_page()}
    docs |= {f"feeds/{n}.{f}": site.feed(n, f) for n in site.specs for f in FORMATS}
    docs |= {f"articles/{a.id}.html": site.page(a.id) for a in site.published()}
    files = {rel: doc.body for rel, doc in docs.items()}
    files |= {f"{rel}.gz": doc.gzipped for rel, doc in docs.items()}
    return files


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "public" / "www"


def siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir())


def test_export_writes_every_document_and_its_gzip_twin(make_site: MakeSite, out: Path) -> None:
    site = load(make_site())
    count = build(site, out)
    files = snapshot(out)
    assert files == expected_files(site)
    assert count == len(files) // 2
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
            assert not feedparser.parse(body).bozo, (name, fmt)
            etree.fromstring(body)
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


def test_rebuild_replaces_the_old_export_completely(make_site: MakeSite, out: Path) -> None:
    old_site = load(make_site(name="alt"))
    build(old_site, out)
    (out / "stale.txt").write_text("from an old deploy")
    (out / "feeds" / "removed.rss").write_text("<rss/>")

    articles = {"politik/erster.md": "---\nid: erster\ntitle: Nur noch einer\ndate: 2025-06-01\n---\nText\n"}
    new_site = load(make_site(articles, name="neu"))
    build(new_site, out)

    assert snapshot(out) == expected_files(new_site)
    assert not (out / "stale.txt").exists()
    assert not (out / "articles" / "zweiter.html").exists()
    assert siblings(out) == ["www"]


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
    assert len(files) == 2 * (1 + 2 * len(site.specs) + len(site.published()))


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
