"""selection.py: which articles each feed shows, as pure functions of articles, config, time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from feeds.articles import Article, Topic
from feeds.config import FeedSpec, SiteConfig
from feeds.selection import next_change, specs_for_topics
from feeds.slugs import slug
from feeds.store import IndexStore

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BASE = "https://news.example.org/"

SITE = SiteConfig(
    title="Testseite",
    url=BASE,
    description="Beschreibung",
    language="de",
    timezone="Europe/Berlin",
    author="Redaktion",
    articles_dir=Path("."),
    limit=30,
    max_age=120,
    content="summary",
)


def topics(*names: str) -> tuple[Topic, ...]:
    return tuple(Topic(slug(n), n) for n in names)


def art(
    id: str,
    published: datetime = NOW - timedelta(days=1),
    *,
    path: str | None = None,
    topic: tuple[str, ...] = (),
    tag: tuple[str, ...] = (),
    draft: bool = False,
) -> Article:
    return Article(
        id=id,
        path=path or f"x/{id}.md",
        title=id,
        published=published,
        updated=published,
        html="",
        summary="",
        url=f"{BASE}articles/{id}",
        permalink=f"{BASE}articles/{id}",
        topics=topics(*topic),
        tags=topics(*tag),
        draft=draft,
    )


# The index is where selection happens; these name what each test asks of it.
def ask(articles, question, site: SiteConfig = SITE):
    with IndexStore.of(site, articles).read() as reader:
        return question(reader)


def newest_first(articles) -> list[Article]:
    return published_at(articles, datetime.max.replace(tzinfo=UTC))


def published_at(articles, now: datetime) -> list[Article]:
    return ask(articles, lambda r: r.published(now, None, 10_000)[0])


def next_release(articles, now: datetime) -> datetime | None:
    return ask(articles, lambda r: r.next_release(now))


def topic_names(articles) -> dict[str, str]:
    return ask(articles, lambda r: r.topics(NOW))


def feed_specs(site: SiteConfig, articles) -> tuple[FeedSpec, ...]:
    return specs_for_topics(site, ask(articles, lambda r: r.topics(NOW), site))


def select(spec: FeedSpec, articles) -> list[Article]:
    return ask(articles, lambda r: r.select(spec, NOW))


def ids(articles) -> list[str]:
    return [a.id for a in articles]


def feed(name: str = "f", **kw) -> FeedSpec:
    return FeedSpec(name=name, title=name.title(), description="", **kw)


# --- time ----------------------------------------------------------------------------------


def test_newest_first_orders_by_date_then_id() -> None:
    t = NOW - timedelta(days=3)
    shuffled = [
        art("b", t),
        art("z", t - timedelta(hours=1)),
        art("c", t),
        art("a", t),
        art("n", t + timedelta(minutes=1)),
    ]
    assert ids(newest_first(shuffled)) == ["n", "a", "b", "c", "z"]
    assert ids(newest_first(reversed(shuffled))) == ["n", "a", "b", "c", "z"]


def test_newest_first_compares_instants_not_wall_times() -> None:
    berlin = datetime(2025, 5, 1, 13, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 11:00 UTC
    assert ids(newest_first([art("local", berlin), art("utc", datetime(2025, 5, 1, 12, 0, tzinfo=UTC))])) == [
        "utc",
        "local",
    ]


def test_published_at_hides_drafts_and_the_future() -> None:
    articles = [
        art("old", NOW - timedelta(days=2)),
        art("draft", NOW - timedelta(days=1), draft=True),
        art("future", NOW + timedelta(seconds=1)),
        art("exactly-now", NOW),
        art("future-draft", NOW + timedelta(days=1), draft=True),
    ]
    assert ids(published_at(articles, NOW)) == ["exactly-now", "old"]
    assert ids(published_at(articles, NOW + timedelta(seconds=1))) == ["future", "exactly-now", "old"]


def test_next_release_is_the_earliest_embargo_ignoring_drafts() -> None:
    articles = [
        art("past", NOW - timedelta(days=1)),
        art("later", NOW + timedelta(days=5)),
        art("draft-sooner", NOW + timedelta(hours=1), draft=True),
        art("sooner", NOW + timedelta(days=2)),
    ]
    assert next_release(articles, NOW) == NOW + timedelta(days=2)
    assert next_release(articles, NOW + timedelta(days=2)) == NOW + timedelta(days=5)
    assert next_release(articles, NOW + timedelta(days=5)) is None
    assert next_release([art("past")], NOW) is None
    assert next_release([], NOW) is None


# --- topics and feed specs -----------------------------------------------------------------


def test_topic_names_take_the_spelling_of_the_first_article_by_path() -> None:
    articles = [
        art("b", path="z/b.md", topic=("ukraine krieg", "Klima")),
        art("a", path="a/a.md", topic=("Ukraine-Krieg",)),
        art("c", path="m/c.md", topic=("KLIMA",)),
    ]
    assert topic_names(articles) == {"ukraine-krieg": "Ukraine-Krieg", "klima": "KLIMA"}
    assert topic_names(reversed(articles)) == topic_names(articles)


def test_feed_specs_list_operator_feeds_then_topic_feeds_by_slug() -> None:
    site = replace(SITE, feeds=(feed("zeta"), feed("alpha")))
    articles = [
        art("1", topic=("Wirtschaft",)),
        art("2", topic=("Klima", "Sport")),
        art("3", topic=("Ärger",)),
    ]
    specs = feed_specs(site, articles)
    assert [s.name for s in specs] == ["zeta", "alpha", "aerger", "klima", "sport", "wirtschaft"]
    assert [s.is_topic_feed for s in specs] == [False, False, True, True, True, True]
    klima = specs[3]
    assert klima.topics == ("klima",)
    assert "Klima" in klima.title
    assert (klima.limit, klima.max_age, klima.content, klima.language) == (30, 120, "summary", "de")


def test_an_operator_feed_named_like_a_topic_wins() -> None:
    mine = feed("klima", topics=("klima", "umwelt"), limit=3)
    site = replace(SITE, feeds=(mine,))
    specs = feed_specs(site, [art("1", topic=("Klima",)), art("2", topic=("Sport",))])
    assert [s.name for s in specs] == ["klima", "sport"]
    assert specs[0] is mine


def test_topic_feeds_false_gives_only_operator_feeds() -> None:
    site = replace(SITE, topic_feeds=False, feeds=(feed("alle"),))
    assert [s.name for s in feed_specs(site, [art("1", topic=("Klima",))])] == ["alle"]
    assert feed_specs(replace(site, feeds=()), [art("1", topic=("Klima",))]) == ()


# --- select --------------------------------------------------------------------------------


def _day(n: int) -> datetime:
    return NOW - timedelta(days=n)


VISIBLE = newest_first(
    [
        art("ukr", _day(1), topic=("Ukraine-Krieg",), tag=("Kursk",)),
        art("nk", _day(2), topic=("Nordkorea", "Technik")),
        art("klima", _day(3), topic=("Klima",), tag=("Hitze",)),
        art("tech", _day(4), topic=("Technik",), tag=("kursk",)),
        art("none", _day(5)),
    ]
)


@pytest.mark.parametrize(
    "spec, expected",
    [
        (feed(), ["ukr", "nk", "klima", "tech", "none"]),
        (feed(topics=("ukraine-krieg", "nordkorea")), ["ukr", "nk"]),
        (feed(exclude_topics=("technik",)), ["ukr", "klima", "none"]),
        (feed(topics=("nordkorea", "technik"), exclude_topics=("nordkorea",)), ["tech"]),
        (feed(tags=("kursk",)), ["ukr", "tech"]),
        (feed(topics=("technik",), tags=("kursk",)), ["tech"]),
        (feed(topics=("gibt-es-nicht",)), []),
    ],
    ids=["all", "topics-any-of", "exclude", "topics-and-exclude", "tags", "topics-and-tags", "none"],
)
def test_select_filters(spec: FeedSpec, expected: list[str]) -> None:
    assert ids(select(spec, VISIBLE)) == expected


@pytest.mark.parametrize(
    "limit, expected", [(1, ["ukr"]), (2, ["ukr", "nk"]), (50, ["ukr", "nk", "klima", "tech", "none"])]
)
def test_select_keeps_the_newest_up_to_the_limit(limit: int, expected: list[str]) -> None:
    assert ids(select(feed(limit=limit), VISIBLE)) == expected


def test_limit_counts_matching_articles_only() -> None:
    assert ids(select(feed(tags=("kursk",), limit=1), VISIBLE)) == ["ukr"]
    assert ids(select(feed(exclude_topics=("ukraine-krieg",), limit=2), VISIBLE)) == ["nk", "klima"]


# -- partner feeds: delay and window -------------------------------------------------------------


def _at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def test_a_delayed_feed_shows_what_was_out_that_long_ago() -> None:
    partner = FeedSpec(name="partner", title="P", description="", delay=30)
    articles = [art(f"a{i}", _at(-10 * i)) for i in range(6)]  # 0, 10 ... 50 minutes old
    shown = ask(articles, lambda r: [m.id for m in r.select(partner, NOW)])
    assert shown == ["a3", "a4", "a5"]
    at_the_instant = ask(articles, lambda r: [m.id for m in r.select(partner, _at(10))])
    assert at_the_instant == ["a2", "a3", "a4", "a5"]  # a2 is 30 minutes old at NOW + 10 min
    archived = replace(partner, limit=2)
    assert ask(articles, lambda r: r.total(archived, NOW)) == 3  # its archive holds only those
    assert ask(articles, lambda r: [m.id for m in r.window(archived, NOW, 2, 4)]) == ["a5"]
    assert [v[0] for v in ask(articles, lambda r: r.versions(archived, NOW))] == ["a3", "a4", "a5"]


def test_a_windowed_feed_shows_only_the_last_hours_and_has_no_archive() -> None:
    recent = FeedSpec(name="recent", title="R", description="", window=1, limit=2)
    articles = [art(f"a{i}", _at(-20 * i)) for i in range(6)]  # 0, 20 ... 100 minutes old
    assert ask(articles, lambda r: [m.id for m in r.select(recent, NOW, 0)]) == ["a0", "a1", "a2"]
    assert ask(articles, lambda r: [m.id for m in r.select(recent, NOW)]) == ["a0", "a1"]
    assert ask(articles, lambda r: (r.total(recent, NOW), r.versions(recent, NOW))) == (2, [])
    # a2 (40 minutes old) leaves at the instant it turns an hour old, not a moment before.
    assert [m.id for m in ask(articles, lambda r: r.select(recent, _at(20) - timedelta(seconds=1), 0))][
        -1
    ] == "a2"
    assert "a2" not in [m.id for m in ask(articles, lambda r: r.select(recent, _at(20), 0))]


def test_the_next_change_is_an_embargo_a_delay_or_a_window_ending() -> None:
    published = [_at(-90), _at(-50), _at(-5), _at(45)]  # one embargoed for 45 minutes

    def first_after(t: datetime) -> datetime | None:
        return min((p for p in published if p > t), default=None)

    plain = FeedSpec(name="alle", title="A", description="")
    assert next_change(NOW, [plain], first_after) == _at(45)  # the embargo
    delayed = replace(plain, name="p", delay=30)
    assert next_change(NOW, [plain, delayed], first_after) == _at(25)  # the -5 one, 30 min on
    windowed = replace(plain, name="w", window=1)
    assert next_change(NOW, [plain, windowed], first_after) == _at(10)  # the -50 one turns 60
    assert next_change(NOW, [plain], lambda t: None) is None
