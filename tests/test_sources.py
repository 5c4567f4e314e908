"""The file-system edge: only regular files inside the articles folder are read, never blocking.

Article stores arrive by rsync -a and git, which carry symlinks; anyone who can write into the
folder can plant a named pipe or a huge file. Each case is tried as an attacker would: through
the index, the feeds, the pages, ``feeds check`` and the export.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from feeds import create_app
from feeds.cli import cli
from feeds.sources import Listed, Refused, prefetch, read_source, scan

from conftest import NOW, MakeSite
from support.waiting import PATIENCE

SECRET = "TOP-SECRET-OUTSIDE-THE-FOLDER"
GOOD = "---\ntitle: Gut\ndate: 2025-01-01\n---\nText.\n"


def finishes(action: Callable[[], Any], seconds: float = PATIENCE) -> Any:
    """Run ``action`` in a thread; fail (instead of hanging the suite) if it blocks."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, action()))
        except BaseException as exc:  # re-raised in the test's own thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked: a read waited on something that is not a regular file"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "passwd.md"
    path.parent.mkdir()
    path.write_text(f"---\ntitle: {SECRET}\ndate: 2025-01-01\n---\n{SECRET} body\n", encoding="utf-8")
    return path


def everything_served(config: Path) -> str:
    client = create_app(config, clock=lambda: NOW, watch=False).test_client()
    paths = ["/", "/feeds/alle.rss", "/feeds/alle.atom", "/articles/politik/leak", "/articles/leak"]
    return "".join(client.get(p).get_data(as_text=True) for p in paths)


def test_scan_lists_files_without_opening_and_says_what_it_refuses(tmp_path: Path, secret: Path) -> None:
    root = tmp_path / "articles"
    (root / "a").mkdir(parents=True)
    (root / "a" / "gut.md").write_text(GOOD)
    (root / "a" / "innen.md").symlink_to(root / "a" / "gut.md")
    (root / "a" / "leak.md").symlink_to(secret)
    (root / "a" / "kaputt.md").symlink_to(root / "nirgends.md")
    (root / "a" / "dev.md").symlink_to("/dev/zero")
    os.mkfifo(root / "a" / "pipe.md")
    (root / "linked").symlink_to(secret.parent, target_is_directory=True)
    found = {listed.rel: listed.refusal for listed in scan(root)}
    assert found["a/gut.md"] is None and found["a/innen.md"] is None
    assert "outside" in (found["a/leak.md"] or "")
    assert "outside" in (found["a/dev.md"] or "")
    assert "broken" in (found["a/kaputt.md"] or "")
    assert "named pipe" in (found["a/pipe.md"] or "")
    assert not any(rel.startswith("linked/") for rel in found), "a symlinked folder was followed"


def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.md")  # opening it for reading would wait for a writer for ever
    with pytest.raises(Refused, match="named pipe"):
        finishes(lambda: read_source(tmp_path, "pipe.md", 1 << 20))


def test_prefetching_never_blocks_nor_opens_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """A cold start asks the kernel for the files ahead of its parsing: a pipe (opening it
    would wait for a writer), a device, a socket, a missing or unreadable name are skipped."""
    os.mkfifo(tmp_path / "pipe.md")
    (tmp_path / "zero.md").symlink_to("/dev/zero")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.md"))
    (tmp_path / "gut.md").write_text(GOOD)
    names = ["pipe.md", "zero.md", "sock.md", "fehlt.md", "../" * 40 + "etc/shadow", "gut.md"]
    try:
        finishes(lambda: prefetch(tmp_path, names), seconds=10)
    finally:
        server.close()
    assert read_source(tmp_path, "gut.md", 1 << 20).data.decode() == GOOD


def test_a_socket_and_a_device_are_refused(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.md"))
    (tmp_path / "zero.md").symlink_to("/dev/zero")  # reading it would never end
    try:
        with pytest.raises(Refused, match="socket"):
            read_source(tmp_path, "sock.md", 1 << 20)
        with pytest.raises(Refused):
            finishes(lambda: read_source(tmp_path, "zero.md", 1 << 20))
    finally:
        server.close()


def test_a_symlink_out_of_the_folder_is_refused_even_through_a_symlinked_folder(
    tmp_path: Path, secret: Path
) -> None:
    root = tmp_path / "articles"
    root.mkdir()
    (root / "leak.md").symlink_to(secret)
    (root / "ordner").symlink_to(secret.parent, target_is_directory=True)
    for rel in ("leak.md", "ordner/passwd.md"):
        with pytest.raises(Refused, match="outside"):
            read_source(root, rel, 1 << 20)


def test_a_sibling_folder_named_like_the_root_is_outside_it(tmp_path: Path) -> None:
    """``articles-alt/x.md`` starts with the text of ``articles``: it is still outside."""
    root = tmp_path / "articles"
    (root).mkdir()
    (tmp_path / "articles-alt").mkdir()
    (tmp_path / "articles-alt" / "x.md").write_text("Draußen\n")
    (root / "x.md").symlink_to(tmp_path / "articles-alt" / "x.md")
    with pytest.raises(Refused, match="outside"):
        read_source(root, "x.md", 1 << 20)


def test_through_a_release_symlink_only_the_current_release_is_inside(tmp_path: Path) -> None:
    """``articles -> releases/r1``: its files are read; a link from it into another release is
    outside, and after the switch to r2 the same holds the other way round."""
    for release in ("r1", "r2"):
        (tmp_path / "releases" / release).mkdir(parents=True)
        (tmp_path / "releases" / release / "own.md").write_text(f"Aus {release}\n")
    (tmp_path / "releases" / "r1" / "other.md").symlink_to(tmp_path / "releases" / "r2" / "own.md")
    (tmp_path / "releases" / "r2" / "other.md").symlink_to(tmp_path / "releases" / "r1" / "own.md")
    root = tmp_path / "articles"
    root.symlink_to(Path("releases") / "r1")
    assert read_source(root, "own.md", 1 << 20).data == b"Aus r1\n"
    with pytest.raises(Refused, match="outside"):
        read_source(root, "other.md", 1 << 20)
    (tmp_path / "next").symlink_to(Path("releases") / "r2")
    os.replace(tmp_path / "next", root)
    assert read_source(root, "own.md", 1 << 20).data == b"Aus r2\n"
    with pytest.raises(Refused, match="outside"):
        read_source(root, "other.md", 1 << 20)


def test_a_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "gross.md").write_bytes(b"T\n" + b"x" * 5000)
    with pytest.raises(Refused, match="max_article_bytes"):
        read_source(tmp_path, "gross.md", 4096)
    assert read_source(tmp_path, "gross.md", 8192).stamp.size == 5002


@pytest.mark.parametrize("seen", [0, 100, 4999, 5002, 5003, 9000])
def test_a_file_that_changed_size_since_it_was_looked_at_is_read_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen: int
) -> None:
    """Read by the size fstat gave, as an article being written may have grown or shrunk since."""
    data = b"T\n" + bytes(range(256)) * 19 + b"x" * 136
    (tmp_path / "wachsend.md").write_bytes(data)
    real_fstat = os.fstat

    def fstat(fd: int) -> Any:
        st = real_fstat(fd)
        return os.stat_result((*st[:6], seen, *st[7:]))

    monkeypatch.setattr("feeds.sources.os.fstat", fstat)
    assert read_source(tmp_path, "wachsend.md", 8192).data == data
    with pytest.raises(Refused, match="max_article_bytes"):
        read_source(tmp_path, "wachsend.md", 4096)


def test_an_article_of_several_megabytes_is_read_whole(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"Ende"
    (tmp_path / "lang.md").write_bytes(data)
    assert read_source(tmp_path, "lang.md", 4 << 20).data == data


def test_outside_symlinks_and_pipes_are_never_published(make_site: MakeSite, secret: Path) -> None:
    config = make_site()
    articles = config.parent / "articles"
    (articles / "politik" / "leak.md").symlink_to(secret)
    (articles / "leak.md").symlink_to(secret)
    os.mkfifo(articles / "politik" / "pipe.md")
    served = finishes(lambda: everything_served(config))
    assert "Erster Artikel" in served
    assert SECRET not in served


def test_check_reports_what_it_left_out_and_does_not_hang(make_site: MakeSite, secret: Path) -> None:
    config = make_site()
    articles = config.parent / "articles"
    (articles / "politik" / "leak.md").symlink_to(secret)
    os.mkfifo(articles / "politik" / "pipe.md")
    (articles / "politik" / "riesig.md").write_bytes(b"---\ntitle: Riesig\n---\n" + b"x" * (3 << 20))
    result = finishes(lambda: CliRunner().invoke(cli, ["--config", str(config), "check"]))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.startswith("politik/leak.md: error:") and "outside" in line for line in lines), lines
    assert any(line.startswith("politik/pipe.md: error:") and "named pipe" in line for line in lines), lines
    assert any(line.startswith("politik/riesig.md: error:") and "max_article_bytes" in line for line in lines)
    assert SECRET not in result.output


def test_the_export_holds_no_outside_file(make_site: MakeSite, secret: Path, tmp_path: Path) -> None:
    config = make_site()
    (config.parent / "articles" / "politik" / "leak.md").symlink_to(secret)
    os.mkfifo(config.parent / "articles" / "politik" / "pipe.md")
    out = tmp_path / "out"
    result = finishes(lambda: CliRunner().invoke(cli, ["--config", str(config), "build", str(out)]))
    assert result.exit_code == 0, result.output
    exported = [p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".gz")]
    assert exported and not any(SECRET.encode() in p.read_bytes() for p in exported)  # pictures too


def test_symlinks_inside_the_folder_are_read(make_site: MakeSite) -> None:
    config = make_site()
    articles = config.parent / "articles"
    (articles / "extra").mkdir()
    (articles / "extra" / "alias.md").symlink_to(articles / "politik" / "erster.md")
    listed = {item.rel: item.refusal for item in scan(articles)}
    assert listed["extra/alias.md"] is None
    assert (
        read_source(articles, "extra/alias.md", 1 << 20).data
        == (articles / "politik" / "erster.md").read_bytes()
    )


def test_listing_is_sorted_and_skips_hidden_and_underscore_names(tmp_path: Path) -> None:
    for rel in ("b.md", "a.txt", ".x.md", "_y.md", "_d/z.md", ".git/h.md", "c/d.markdown", "c/e.rst"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(GOOD)
    assert list(scan(tmp_path)) == [Listed("a.txt"), Listed("b.md"), Listed("c/d.markdown")]
    assert list(scan(tmp_path, "c")) == [Listed("c/d.markdown")]
