"""``feeds check --stamp-dates`` writes into the newsroom's files: it must never lose a byte.

Concurrent writers are real second processes holding an O_APPEND descriptor; races with the
rewrite are injected at its ``pause`` points. No test sleeps for a fixed time: each waits on a
line from the other process or polls a condition (a lease break in /proc/locks) with a deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from feeds import stamping
from feeds.articles import DateSource, Meta, SourceFile, Stamp, entry_id
from feeds.cli import cli
from feeds.config import SiteConfig, load_config
from feeds.parsing import parse_meta
from feeds.site import open_site
from feeds.sources import read_source
from feeds.stamping import NotWritten, rewrite, stamp_file, stamped_article

from conftest import MakeSite

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="stamping needs Linux file leases")

PLAIN = b"Ohne Datum\nErster Absatz.\n"
SEEN = datetime(2025, 3, 4, 4, 6, 7, tzinfo=UTC)
WHEN = "2025-03-04T05:06:07+01:00"  # SEEN in the site's zone (Europe/Berlin)

# Opens the file for appending (as `exec 3>>file` does), writes argv[2], says "open", then
# writes whatever the test sends on stdin before closing: a writer still writing.
WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.write(fd, sys.argv[2].encode())
print("open", flush=True)
os.write(fd, sys.stdin.read().encode())
os.close(fd)
"""

Opened = Callable[[dict[str, str | bytes]], tuple[SiteConfig, dict[str, Meta]]]


@pytest.fixture
def opened(make_site: MakeSite, tmp_path: Path) -> Opened:
    """A site's config and its articles by path, with first-seen dates from a state folder."""

    def open_(articles: dict[str, str | bytes]) -> tuple[SiteConfig, dict[str, Meta]]:
        site = open_site(make_site(articles=articles), state_dir=tmp_path / "state")
        return site.config, {meta.path: meta for meta in site.all_articles()}

    return open_


def stamp_dates(runner: CliRunner, config: Path, state: Path) -> str:
    result = runner.invoke(
        cli, ["--config", str(config), "check", "--stamp-dates"], env={"FEEDS_STATE_DIR": str(state)}
    )
    return result.output


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """Every file under ``folder``: bytes, inode, mtime and mode."""
    found = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        found[str(path.relative_to(folder))] = (
            b"" if path.is_dir() or path.is_symlink() else path.read_bytes(),
            st.st_ino,
            st.st_mtime_ns,
            st.st_mode,
        )
    return found


@contextmanager
def writer(path: Path, first: str) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), first],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        yield process


def wait_for_lease_break(path: Path) -> None:
    """Until another program waits in open() for the lease on ``path`` (its inode, in /proc/locks)."""
    inode = re.compile(rf"BREAKING.*:{path.stat().st_ino} ")
    deadline = time.monotonic() + 30
    while not inode.search(Path("/proc/locks").read_text()):
        assert time.monotonic() < deadline, "the writer never reached open()"
        time.sleep(0.001)


def front_matter_of(data: bytes) -> str:
    return data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n").split("\n---\n")[0]


# --- 1. no writer loses a byte ------------------------------------------------------------------


def test_a_program_still_writing_the_file_loses_nothing(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path
) -> None:
    config = make_site(articles={"a/live.md": "Titel\n"})
    path = config.parent / "articles" / "a" / "live.md"
    with writer(path, "first ") as process:  # exec 3>>live.md; printf 'first ' >&3
        assert process.stdout is not None and process.stdout.readline() == "open\n"
        output = stamp_dates(runner, config, tmp_path / "state")
        process.communicate("second\n", timeout=30)  # printf 'second\n' >&3; exec 3>&-
    assert "a/live.md: first_seen not written: open for writing by another program" in output
    assert "wrote first_seen into 0 article(s)" in output
    assert path.read_bytes() == b"Titel\nfirst second\n"
    # Once the writer has closed it, the file is stamped with every byte it wrote.
    assert "wrote first_seen into 1 article(s)" in stamp_dates(runner, config, tmp_path / "state")
    data = path.read_bytes()
    assert data.startswith(b"---\nfirst_seen: ") and data.endswith(b"\n---\nTitel\nfirst second\n")


def test_a_program_opening_the_file_while_it_is_stamped_writes_into_it(opened: Opened) -> None:
    config, metas = opened({"a/live.md": "Titel\nfirst\n"})
    path = config.articles_dir / "a" / "live.md"
    started: list[subprocess.Popen[str]] = []

    def race(stage: str) -> None:
        if stage == "replacing":  # the stamped copy is ready; now a program opens the file
            process = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(path), "during\n"], stdin=subprocess.DEVNULL, text=True
            )
            started.append(process)
            wait_for_lease_break(path)

    try:
        with pytest.raises(NotWritten, match="opened for writing by another program while being stamped"):
            stamp_file(config, metas["a/live.md"], race)
    finally:
        for process in started:
            assert process.wait(timeout=30) == 0
    assert path.read_bytes() == b"Titel\nfirst\nduring\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["live.md"]  # no copy left behind
    # Written before and after: both end up in the stamped file.
    with writer(path, "before\n") as process:
        process.communicate("", timeout=30)
    config, metas = opened({})
    stamp_file(config, metas["a/live.md"])
    with writer(path, "after\n") as process:
        process.communicate("", timeout=30)
    data = path.read_bytes()
    assert data.startswith(b"---\nfirst_seen: ")
    assert data.endswith(b"\n---\nTitel\nfirst\nduring\nbefore\nafter\n")


def test_two_programs_opening_the_file_around_the_swap_both_keep_their_bytes(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, metas = opened({"a/live.md": "Titel\n"})
    path = config.articles_dir / "a" / "live.md"
    started: list[subprocess.Popen[str]] = []

    def start(text: str) -> None:
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(path), text], stdin=subprocess.DEVNULL)
        started.append(process)
        wait_for_lease_break(path)  # of whichever file has the name now

    def race_after_swap(*args: object) -> str | None:
        start("zwei\n")  # opens the stamped copy, which has just taken the name
        return real_race(*args)

    real_race = stamping._race
    monkeypatch.setattr(stamping, "_race", race_after_swap)
    try:
        with pytest.raises(NotWritten, match=r"stamped copy kept as a/\.feeds-stamp-"):
            stamp_file(config, metas["a/live.md"], lambda stage: stage == "replacing" and start("eins\n"))
    finally:
        for process in started:
            assert process.wait(timeout=30) == 0
    assert path.read_bytes() == b"Titel\neins\n"
    (kept,) = (p for p in path.parent.iterdir() if p.name.startswith(".feeds-stamp-"))
    assert kept.read_bytes().startswith(b"---\nfirst_seen: ")
    assert kept.read_bytes().endswith(b"\n---\nTitel\nzwei\n")


def test_a_version_renamed_into_place_while_stamping_is_kept(opened: Opened) -> None:
    config, metas = opened({"a/x.md": PLAIN})
    path = config.articles_dir / "a" / "x.md"
    theirs = config.articles_dir / "a" / ".x.md.swp"

    def save(stage: str) -> None:
        if stage == "replacing":  # an editor saves: write a copy, rename it over the file
            theirs.write_bytes(PLAIN + b"Neu.\n")
            theirs.rename(path)

    with pytest.raises(NotWritten, match="replaced by another program while being stamped"):
        stamp_file(config, metas["a/x.md"], save)
    assert path.read_bytes() == PLAIN + b"Neu.\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.md"]


# --- 2. nothing outside the article is written ---------------------------------------------------


@pytest.mark.parametrize("stage", ["read", "replacing"])
def test_a_folder_swapped_for_a_symlink_never_leads_the_write_outside(
    opened: Opened, tmp_path: Path, stage: str
) -> None:
    config, metas = opened({"a/ohne.txt": PLAIN})
    folder = config.articles_dir / "a"
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy2(folder / "ohne.txt", outside / "ohne.txt")  # same bytes, size and mtime
    moved = tmp_path / "moved"
    before = snapshot(outside)

    def swap(at: str) -> None:
        if at == stage:
            folder.rename(moved)
            folder.symlink_to(outside)

    with pytest.raises(NotWritten, match="'a' on its path is a symbolic link"):
        stamp_file(config, metas["a/ohne.txt"], swap)
    assert snapshot(outside) == before
    assert sorted(p.name for p in moved.iterdir()) == ["ohne.txt"]
    assert (moved / "ohne.txt").read_bytes() == PLAIN


def test_a_symlinked_article_is_stamped_at_its_target_inside_the_folder(opened: Opened) -> None:
    config, metas = opened({"_shared/x.md": PLAIN})
    articles = config.articles_dir
    (articles / "a").mkdir()
    (articles / "a" / "rel.md").symlink_to("../_shared/x.md")
    (articles / "b").mkdir()
    (articles / "b" / "abs.md").symlink_to(articles / "_shared" / "y.md")
    (articles / "_shared" / "y.md").write_bytes(PLAIN)
    config, metas = opened({})
    stamp_file(config, metas["a/rel.md"])
    stamp_file(config, metas["b/abs.md"])
    assert (articles / "a" / "rel.md").is_symlink() and (articles / "b" / "abs.md").is_symlink()
    for name in ("x.md", "y.md"):
        assert (articles / "_shared" / name).read_bytes().startswith(b"---\nfirst_seen: ")


def test_a_symlink_out_of_the_folder_is_not_followed(opened: Opened, tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_bytes(PLAIN)
    config, metas = opened({"a/x.md": PLAIN})
    meta = metas["a/x.md"]
    (config.articles_dir / "a" / "x.md").unlink()
    (config.articles_dir / "a" / "x.md").symlink_to(outside)
    os.utime(outside, ns=(meta.version.mtime_ns, meta.version.mtime_ns))
    with pytest.raises(NotWritten, match="outside the articles folder"):
        stamp_file(config, meta)
    assert outside.read_bytes() == PLAIN


# --- 3. no article gets worse ----------------------------------------------------------------------

REPAIRED = {
    "CR line ends": b"---\rtitle: Mit CR\rtopics: [klima, umwelt]\r---\rText.\r",
    "a leading form feed": b"\f---\ntitle: Mit Seitenvorschub\ntopics: [klima, umwelt]\n---\nText.\n",
    "an unreadable first_seen": (
        b"---\ntitle: Kaputt\nfirst_seen: not a date\ntopics: [klima, umwelt]\n---\nText.\n"
    ),
    "BOM and CRLF": b"\xef\xbb\xbf---\r\ntitle: Mit BOM\r\ntopics: [klima, umwelt]\r\n---\r\nText.\r\n",
}


def test_stamping_keeps_title_topics_and_id_of_every_line_end_and_odd_start(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path
) -> None:
    config = make_site(articles={f"a/{i}.md": data for i, data in enumerate(REPAIRED.values())})
    site = open_site(config, state_dir=tmp_path / "state")
    before = {m.path: (m.title, m.topic_slugs, entry_id(site.config, m)) for m in site.all_articles()}
    output = stamp_dates(runner, config, tmp_path / "state")
    assert f"wrote first_seen into {len(REPAIRED)} article(s)" in output, output
    assert "first_seen not written" not in output and "0 errors, 0 warnings" in output, output
    site = open_site(config, state_dir=tmp_path / "another-machine")
    after = {m.path: (m.title, m.topic_slugs, entry_id(site.config, m)) for m in site.all_articles()}
    assert after == before
    assert {m.dated_by for m in site.all_articles()} == {DateSource.FIRST_SEEN}
    for path in (config.parent / "articles" / "a").iterdir():
        assert front_matter_of(path.read_bytes()).count("first_seen:") == 1, path
    feed = feedparser.parse(runner.invoke(cli, ["--config", str(config), "get", "/feeds/klima.atom"]).output)
    assert sorted(e.title for e in feed.entries) == sorted(t for t, _, _ in before.values())


@pytest.mark.parametrize(
    "data",
    [
        b"---\ntitle: T\nfirst_seen:\n  - eins\n---\nText.\n",  # a list, over two lines
        b'---\ntitle: T\n"first_seen": kaputt\n---\nText.\n',  # a quoted key
    ],
)
def test_a_file_that_stamping_would_break_is_left_alone_and_named(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path, data: bytes
) -> None:
    config = make_site(articles={"a/x.md": data})
    output = stamp_dates(runner, config, tmp_path / "state")
    assert re.search(r"a/x\.md: first_seen not written: adding 'first_seen: \S+' would", output), output
    assert (config.parent / "articles" / "a" / "x.md").read_bytes() == data


@pytest.fixture(scope="module")
def site_config(tmp_path_factory: pytest.TempPathFactory) -> SiteConfig:
    root = tmp_path_factory.mktemp("site")
    (root / "articles").mkdir()
    (root / "config.yaml").write_text(
        "site: {title: T, url: 'https://news.example.org', language: de, timezone: Europe/Berlin}\n"
        "articles: articles\nfeeds: {alle: {title: Alle}}\n",
        encoding="utf-8",
    )
    return load_config(root / "config.yaml")


FIELDS = [
    ["title: Im Feld"],
    ["title: 'Zitat: ja'"],
    ["title: >", "  gefaltet", "  über zwei Zeilen"],
    ["topics: [klima, Umwelt]"],
    ["topics:", "  - klima", "  - umwelt"],
    ["tags: eins"],
    ["author: {name: Ada, email: ada@example.org}"],
    ["summary: Kurz."],
    ["summary: |", "  Zeile eins", "", "  Zeile zwei"],
    ["draft: false"],
    ["id: eigene-id"],
    ["language: de"],
    ["updated: 2025-01-02"],
    ["updated: 1960-01-01"],
    ["first_seen: not a date"],
    ["first_seen:"],
    ["first_seen: 2025-13-45"],
    ["first_seen : ~"],
    ["date: gestern"],
    ["unbekannt: 1"],
    ["image: /bild.png", "image_alt: Ein Bild"],
    ["link: https://example.org/x"],
    ["sources: [https://a.example]"],
    ["# ein Kommentar"],
    [""],
]
BODIES = [
    "Titel",
    "# Titel",
    "Ünïcode — Titel",
    "---",
    "...",
    "",
    "Text.",
    "- Punkt",
    "first_seen: x",
    "\tcode",
]


@st.composite
def articles(draw: st.DrawFn) -> tuple[str, bytes]:
    """Articles in the shapes newsrooms send: any line end, BOM, odd first bytes, front matter or not."""
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines: list[str] = []
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(range(len(FIELDS))), unique=True, max_size=5))
        closing = draw(st.sampled_from(["---", "...", "--- "]))
        lines += [draw(st.sampled_from(["---", "---  "])), *(ln for k in keys for ln in FIELDS[k]), closing]
    lines += draw(st.lists(st.sampled_from(BODIES), min_size=1, max_size=5))
    start = draw(st.sampled_from(["", "\f", "\x0b", "\x1b", "\x7f", " ", "\t", eol, "\ufeff"]))
    text = start + eol.join(lines) + draw(st.sampled_from([eol, "", eol + eol]))
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return "a/x" + draw(st.sampled_from([".md", ".txt"])), bom + text.encode("utf-8")


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.filter_too_much],
)
@given(article=articles())
@example(article=("a/x.md", REPAIRED["CR line ends"]))
@example(article=("a/x.md", REPAIRED["a leading form feed"]))
@example(article=("a/x.md", REPAIRED["an unreadable first_seen"]))
def test_stamping_never_makes_an_article_worse(site_config: SiteConfig, article: tuple[str, bytes]) -> None:
    path, data = article
    source = SourceFile(path, data, Stamp(len(data), 1))
    meta, body, problems = parse_meta(source, site_config)
    if meta is None or meta.dated_by is not DateSource.SEEN:
        return  # not an article that gets stamped
    try:
        stamped = stamped_article(site_config, source, SEEN)
    except NotWritten as exc:
        assert str(exc), "a skipped file is always explained"
        return
    after, body_after, problems_after = parse_meta(SourceFile(path, stamped), site_config)
    assert after is not None, problems_after
    assert after.published == SEEN and after.dated_by is DateSource.FIRST_SEEN
    assert after.updated == max(meta.updated, SEEN)
    same = ("id", "title", "url", "topics", "tags", "authors", "language", "draft", "image", "sources")
    assert [getattr(after, k) for k in same] == [getattr(meta, k) for k in same]
    assert (after.given_summary, after.image_alt, body_after) == (meta.given_summary, meta.image_alt, body)
    assert entry_id(site_config, after) == entry_id(site_config, meta)
    assert not [p for p in problems_after if "first_seen" in p.message or "no date" in p.message]
    assert front_matter_of(stamped).count(f"first_seen: {WHEN}") == 1
    assert_only_first_seen_added(data, stamped)


LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
KEY = re.compile(rb"^first_seen[ \t]*:")


def assert_only_first_seen_added(old: bytes, new: bytes) -> None:
    """``new`` is ``old`` with one ``first_seen:`` line (and fences) added, or one such line replaced."""
    bom = b"\xef\xbb\xbf"
    assert old.startswith(bom) == new.startswith(bom)
    before, after = LINE.findall(old.removeprefix(bom)), LINE.findall(new.removeprefix(bom))
    assert _only_first_seen_added(before, after, replacing=False) or _only_first_seen_added(
        before, after, replacing=True
    ), (old, new)


def _only_first_seen_added(before: list[bytes], after: list[bytes], replacing: bool) -> bool:
    kept, added = 0, []
    for line in after:
        if kept < len(before) and line == before[kept]:
            kept += 1
        elif replacing and kept < len(before) and KEY.match(before[kept]) and KEY.match(line):
            added.append(line)
            kept += 1
        else:
            added.append(line)
    return (
        kept == len(before)
        and len([line for line in added if KEY.match(line)]) == 1
        and all(KEY.match(line) or line.rstrip(b"\r\n") == b"---" for line in added)
    )


# --- 4. files that must stay as they are ------------------------------------------------------------


@pytest.mark.parametrize(
    ("chmod", "reason"),
    [
        ({"a/x.md": 0o444}, "a/x.md: first_seen not written: read-only (mode 0444)"),
        ({"a": 0o555}, "a/x.md: first_seen not written: its folder is read-only (mode 0555)"),
    ],
)
def test_read_only_files_and_folders_stay_unchanged_even_for_root(
    runner: CliRunner, make_site: MakeSite, tmp_path: Path, chmod: dict[str, int], reason: str
) -> None:
    config = make_site(articles={"a/x.md": PLAIN})
    articles = config.parent / "articles"
    for rel, mode in chmod.items():
        os.chmod(articles / rel, mode)
    before = snapshot(articles)
    try:
        output = stamp_dates(runner, config, tmp_path / "state")
    finally:
        os.chmod(articles / "a", 0o755)
    assert reason in output, output
    assert "wrote first_seen into 0 article(s)" in output
    after = snapshot(articles)
    before["a"], after["a"] = before["a"][:3], after["a"][:3]  # the test made it writable again
    assert after == before


def test_a_file_with_other_hard_links_is_left_alone(opened: Opened) -> None:
    config, metas = opened({"a/x.md": PLAIN})
    os.link(config.articles_dir / "a" / "x.md", config.articles_dir / "_copy.md")
    with pytest.raises(NotWritten, match="2 hard links"):
        stamp_file(config, metas["a/x.md"])
    assert (config.articles_dir / "_copy.md").read_bytes() == PLAIN
    assert (config.articles_dir / "a" / "x.md").read_bytes() == PLAIN


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can stamp another user's file")
def test_root_stamping_keeps_the_owner_group_and_mode(opened: Opened) -> None:
    config, metas = opened({"a/x.md": PLAIN})
    path = config.articles_dir / "a" / "x.md"
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o640)
    config, metas = opened({})
    stamp_file(config, metas["a/x.md"])
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o640)
    assert path.read_bytes().startswith(b"---\nfirst_seen: ")


def test_rewrite_refuses_a_file_that_moved_on(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(b"one")
    os.chmod(path, 0o640)
    read = read_source(tmp_path, "a.md", 100)
    path.write_bytes(b"two!")  # someone else wrote in between
    with pytest.raises(NotWritten):
        rewrite(tmp_path, "a.md", read.stamp, lambda _old: b"mine")
    assert path.read_bytes() == b"two!"
    fresh = read_source(tmp_path, "a.md", 100)
    rewrite(tmp_path, "a.md", fresh.stamp, lambda _old: b"mine")
    assert path.read_bytes() == b"mine" and (path.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.md"]  # no temp file left
    assert Stamp(4, 0) != fresh.stamp
