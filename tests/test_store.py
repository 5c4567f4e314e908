"""index.py: the derived tables a change keeps up to date answer as a fresh build of the same files.

A cold start builds the index in bulk (:meth:`IndexDB.finish`); every later change settles the
ids it touches one by one (:meth:`IndexDB.put`). If the two ever disagreed, a feed would show
other entries after a restart than before it, or count archive pages it does not have.
"""

from __future__ import annotations

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
