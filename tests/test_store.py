"""index.py: the derived tables a change keeps up to date answer as a fresh build of the same files.

A cold start builds the index in bulk (:meth:`IndexDB.finish`); every later change settles the
ids it touches one by one (:meth:`IndexDB.put`). If the two ever disagreed, a feed would show
other entries after a restart than before it, or count archive pages it does not have.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from test_selection import NOW, SITE, art, feed

from feeds.articles import Meta, Stamp
from feeds.config import FeedSpec
from feeds.errors import Problem
from feeds.records import Record
from feeds.slugs import slug
from feeds.store import TAG, TOPIC, IndexStore, Reader, config_key, queries

SPECS = (
    feed("alle"),
    feed("a", topics=("a",)),
    feed("ab", topics=("a", "b")),
    feed("ohne-a", exclude_topics=("a",)),
    feed("getaggt", tags=("x",)),
    feed("kurz", limit=2),
)
FILES = [f"d/{n}.md" for n in "pqrstu"]


@st.composite
def records(draw: st.DrawFn) -> Record | None:
    """One file's state: gone, unreadable, or an article that may share its id with another."""
    kind = draw(st.sampled_from(["gone", "broken", "article", "article", "article"]))
    if kind == "gone":
        return None
    if kind == "broken":
        return Record(None, Stamp(1, draw(st.integers(0, 3))), (Problem("x", None, "kaputt"),))
    meta = art(
        draw(st.sampled_from(["eins", "zwei", "drei"])),
        NOW + timedelta(hours=draw(st.integers(-5, 2))),
        # Several spellings of one slug: the counts behind display names must add up too.
        topic=tuple(draw(st.lists(st.sampled_from(["a", "A", "b", "c", "C c"]), max_size=2, unique_by=slug))),
        tag=tuple(draw(st.lists(st.sampled_from(["x", "X", "y"]), max_size=1))),
        draft=draw(st.booleans()),
    )
    stamp = Stamp(draw(st.integers(1, 9)), 1)
    values = {f: getattr(meta, f) for f in Meta.__slots__ if f != "version"}
    return Record(Meta(**values, version=stamp), stamp)


def build(records: dict[str, Record]) -> IndexStore:
    """An index made in bulk, as a cold start makes it."""
    store = IndexStore(None)
    store.reset(config_key(SITE))
    store.insert(records.items())
    store.finish(lambda ids: {})
    return store


def answers(store: IndexStore) -> dict[str, object]:
    with store.read() as reader:
        return _answers(reader)


def _answers(index: Reader) -> dict[str, object]:
    """Everything a document or /healthz asks of the index."""
    found: dict[str, object] = {
        "topics": index.topics(NOW),
        "topic names": index.all_spellings(TOPIC),
        "tag names": index.all_spellings(TAG),
        "topic spellings": index.variants(TOPIC),
        "tag spellings": index.variants(TAG),
        "some names": index.spellings(TOPIC, ["a", "c", "none"]),
        "slugs": index.topic_slugs(),
        "count": index.count(),
        "articles": [(m.path, m.id) for m in index.articles()],
        "newest": index.newest(NOW),
        "release": index.next_release(NOW),
        "problems": [str(p) for p in index.problems()],
        "published": [(m.path, m.id) for m in index.published(NOW, None, 1000)[0]],
    }
    for spec in SPECS:
        found[spec.name] = [(m.path, m.id) for m in index.select(spec, NOW)]
        found[f"{spec.name} all"] = [(m.path, m.id) for m in index.select(spec, NOW, 0)]
        found[f"{spec.name} total"] = index.total(spec, NOW)
        whole = found[f"{spec.name} all"]
        for start, stop in ((0, 2), (1, 3), (2, 9)):
            window = [(m.path, m.id) for m in index.window(spec, NOW, start, stop)]
            assert window == whole[start:stop]  # type: ignore[index]
        versions = index.versions(spec, NOW)
        assert [v[0] for v in versions] == [i for _, i in whole]  # type: ignore[attr-defined]
    return found


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FILES), records()), min_size=1, max_size=25))
def test_changes_file_by_file_answer_as_a_build_of_the_result(
    changes: list[tuple[str, Record | None]],
) -> None:
    index = build({})
    final: dict[str, Record] = {}
    for rel, record in changes:
        index.apply({rel: record})
        old = final.get(rel)
        if record is None:
            final.pop(rel, None)
        elif record.meta is None and old is not None and old.meta is not None and record.retry:
            pass  # keeps its last good version
        else:
            final[rel] = record
    built = build(final)
    got, expected = answers(index), answers(built)
    assert {k: v for k, v in got.items() if k != "problems"} == {
        k: v for k, v in expected.items() if k != "problems"
    }
    assert [p for p in got["problems"] if "last good" not in p] == expected["problems"]  # type: ignore[union-attr]


def test_a_whole_history_is_walked_in_batches_in_feed_order() -> None:
    """Archive pages walk a feed's whole history; batches must neither skip nor repeat an entry
    where several share a date."""
    same = NOW - timedelta(days=1)
    articles = [art(f"n{i:03d}", same - timedelta(hours=i // 3), topic=("a",)) for i in range(50)]
    store = IndexStore.of(SITE, articles)
    before, queries.BATCH = queries.BATCH, 4
    try:
        spec = FeedSpec(name="a", title="A", description="", topics=("a",))
        with store.read() as reader:
            walked = [m.id for m in reader.select(spec, NOW, 0)]
        everything = [m.id for m in store.batches(lambda r, after: r.published(NOW, after, 4))]
    finally:
        queries.BATCH = before
    expected = [m.id for m in sorted(articles, key=lambda m: (-m.published.timestamp(), m.id))]
    assert walked == expected and everything == expected


# --- what a row holds, and which code made it ---------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(records())
def test_every_field_of_a_record_comes_back_from_its_row(record: Record | None) -> None:
    """A field added to Meta or Record but not stored would come back changed: this fails first."""
    from feeds.store.rows import Decoder, encode
    from feeds.store.schema import NAMES

    if record is None:
        return
    rel = record.meta.path if record.meta is not None else "d/p.md"
    row = dict(zip(NAMES, encode(rel, record), strict=True))
    assert Decoder().record(row) == record


def test_the_format_version_follows_the_tables_the_fields_and_the_code(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The layout (can this code read the rows at all) follows the tables and the row code; the
    format (are the rows what this code would write) follows the parsing code too."""
    from feeds.store import schema

    def fresh() -> tuple[int, str]:
        schema.layout.cache_clear()
        schema.fingerprint.cache_clear()
        return schema.format_version(), schema.layout()

    before, layout = fresh()
    try:
        monkeypatch.setattr(schema, "COLUMNS", (*schema.COLUMNS, ("extra", "text")))
        assert fresh()[0] != before and fresh()[1] != layout
        monkeypatch.undo()
        monkeypatch.setattr(schema, "CODE", (*schema.CODE[:-1], "store/queries.py"))
        assert fresh()[0] != before and fresh()[1] == layout  # parsing: readable, not the same rows
        monkeypatch.undo()
        monkeypatch.setattr(schema, "LAYOUT_CODE", (*schema.LAYOUT_CODE[:-1], "store/queries.py"))
        assert fresh()[0] != before and fresh()[1] != layout  # how derived rows are written
    finally:
        monkeypatch.undo()
        fresh()
    assert fresh() == (before, layout)


def test_an_index_made_by_other_code_is_never_trusted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from feeds.store import schema

    store = IndexStore(tmp_path / "index.sqlite")
    store.reset(config_key(SITE))
    store.finish(lambda ids: {})
    assert store.ready(config_key(SITE))
    with sqlite3.connect(tmp_path / "index.sqlite") as db:  # as code with another format leaves it
        db.execute(f"PRAGMA user_version = {schema.format_version() ^ 1}")
    assert not IndexStore(tmp_path / "index.sqlite").ready(config_key(SITE))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["https://news.example.org/", "http://bücher.example:8080/x?"]))
def test_every_url_front_matter_accepts_is_accepted_back_from_a_row(tail: str, head: str) -> None:
    """The row check is a regular expression (rows are decoded by the hundred): it must never
    refuse a URL that the front matter's check produced, or the article would drop out."""
    from feeds.fields import http_url
    from feeds.store.rows import _check_url

    try:
        url = http_url(head + tail)
    except (TypeError, ValueError):
        return
    _check_url("url", url)


# --- archive pages far down a feed -----------------------------------------------------------------


def _entry(n: int, hours: int, topics: tuple[str, ...] = ()) -> tuple[str, Record]:
    """File ``n`` published ``hours`` from NOW (later than NOW: not yet visible)."""
    meta = art(f"e{n:03d}", NOW + timedelta(hours=hours), topic=topics)
    stamp = Stamp(n + 1, hours)
    values = {f: getattr(meta, f) for f in Meta.__slots__ if f != "version"}
    return meta.path, Record(Meta(**values, version=stamp), stamp)


ARCHIVED = (feed("alle"), feed("a", topics=("a",)))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-6, 2), st.booleans()), min_size=1, max_size=40),
    st.lists(
        st.one_of(
            st.tuples(st.just("page"), st.integers(0, 40), st.integers(1, 5), st.integers(-2, 2)),
            st.tuples(st.just("put"), st.integers(0, 45), st.integers(-6, 2), st.just(0)),
            st.tuples(st.just("drop"), st.integers(0, 45), st.just(0), st.just(0)),
        ),
        max_size=40,
    ),
)
def test_archive_pages_found_from_pages_read_before_are_those_counted_from_the_newest(
    dates: list[tuple[int, bool]], steps: list[tuple[str, int, int, int]]
) -> None:
    """Each page's start is stepped to from a page read before while the index and the entries
    visible are the same (entries sharing a date, changes, the clock making entries visible in
    between): every page must be the entries of the whole feed from its start."""
    files = dict(_entry(n, hours, ("a",) if in_a else ()) for n, (hours, in_a) in enumerate(dates))
    index = build(files)
    for step, n, value, hours in steps:
        if step == "put":
            index.apply(dict([_entry(n, value, ("a",) if n % 2 else ())]))
            continue
        if step == "drop":
            index.apply({f"x/e{n:03d}.md": None})
            continue
        now = NOW + timedelta(hours=hours)
        with index.read() as reader:
            for spec in ARCHIVED:
                whole = [m.id for m in reader.select(spec, now, 0)]
                for start in (n, n + value, max(n - value, 0)):  # on down the feed, then back up
                    page = [m.id for m in reader.window(spec, now, start, start + value)]
                    assert page == whole[start : start + value], (spec.name, start, value, hours)


def test_the_pages_of_a_long_archive_are_found_from_their_neighbours_not_counted_from_the_top() -> None:
    """A crawler or a static export reads every page in turn: after the first, each page's start
    is a page's length from the one before (SQLite's OFFSET steps through every entry it skips:
    164 ms for the oldest page of a million)."""
    index = build(dict(_entry(n, -(n // 3) - 1) for n in range(600)))
    spec, per_page = ARCHIVED[0], 20
    offsets: list[int] = []
    with index.read() as reader:
        whole = [m.id for m in reader.select(spec, NOW, 0)]
        reader._db.set_trace_callback(  # type: ignore[attr-defined]
            lambda sql: offsets.extend(int(o) for o in re.findall(r"OFFSET (\d+)", sql))
        )
        for start in range(580, -1, -per_page):  # the oldest page first, as an export writes them
            assert [m.id for m in reader.window(spec, NOW, start, start + per_page)] == whole[
                start : start + per_page
            ]
        reader._db.set_trace_callback(None)  # type: ignore[attr-defined]
    assert offsets[0] == 579  # the first: counted from the newest
    assert max(offsets[1:]) < per_page  # then a page from the last one found


def test_entries_the_clock_makes_visible_move_every_page_down() -> None:
    """Entries dated ahead appear at the top when their time comes, without any change to the
    index: a page's start found before then is no longer where that page begins."""
    index = build(dict([_entry(n, -n - 1) for n in range(40)] + [_entry(40 + n, 1) for n in range(5)]))
    spec, later = ARCHIVED[0], NOW + timedelta(hours=2)
    with index.read() as reader:
        before = [m.id for m in reader.select(spec, NOW, 0)]
        assert [m.id for m in reader.window(spec, NOW, 30, 35)] == before[30:35]
        after = [m.id for m in reader.select(spec, later, 0)]
        assert len(after) == len(before) + 5
        assert [m.id for m in reader.window(spec, later, 31, 36)] == after[31:36]


def _steps(reader: Reader, ask: Callable[[], object]) -> int:
    """SQLite's work for ``ask``, in hundreds of its virtual machine's instructions."""
    done = 0

    def tick() -> int:
        nonlocal done
        done += 1
        return 0

    reader._db.set_progress_handler(tick, 100)  # type: ignore[attr-defined]
    try:
        ask()
    finally:
        reader._db.set_progress_handler(None, 0)  # type: ignore[attr-defined]
    return done


def test_a_walk_resumed_far_down_a_feed_costs_what_it_costs_near_the_top() -> None:
    """Walks resume after the last entry they read (sitemaps, the export's list of pages, archive
    pages): given the clock's bound and the resumed entry's, SQLite began the index range at the
    newest entry and stepped through everything above the place it resumed, every batch."""
    index = build(dict(_entry(n, -(n // 3) - 1, ("a",)) for n in range(3000)))
    with index.read() as reader:
        whole = reader.published(NOW, None, 3000)[0]
        key = [(int(m.published.timestamp()), m.id) for m in whole]
        near = _steps(reader, lambda: reader.published(NOW, key[9], 10))
        far = _steps(reader, lambda: reader.published(NOW, key[2900], 10))
        assert reader.published(NOW, key[2900], 10)[0] == whole[2901:2911]
        assert far < 2 * near + 5, (near, far)
        spec = ARCHIVED[1]  # a topic's feed: walked in the per-topic table
        reader.window(spec, NOW, 2900, 2910)  # the first time, counted down from the newest
        near = _steps(reader, lambda: reader.window(spec, NOW, 10, 20))
        far = _steps(reader, lambda: reader.window(spec, NOW, 2900, 2910))
        assert [m.id for m in reader.window(spec, NOW, 2900, 2910)] == [m.id for m in whole[2900:2910]]
        assert far < 2 * near + 5, (near, far)
