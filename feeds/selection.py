"""Decide which articles each feed shows, as pure functions of articles, config and time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from .articles import Meta
from .config import FeedSpec, SiteConfig


def newest_first(articles: Iterable[Meta]) -> list[Meta]:
    """Newest publication first; the id breaks ties so the order never depends on disk order."""
    return sorted(articles, key=lambda a: (-a.published.timestamp(), a.id))


def published_at(articles: Iterable[Meta], now: datetime) -> list[Meta]:
    """Metas readers may see at ``now`` (no drafts, no embargo), newest first."""
    return newest_first(a for a in articles if a.is_published(now))


def next_release(articles: Iterable[Meta], now: datetime) -> datetime | None:
    """When the next embargo lifts, so the published set can be recomputed at that moment."""
    future = [a.published for a in articles if not a.draft and a.published > now]
    return min(future) if future else None


def topic_names(articles: Iterable[Meta]) -> dict[str, str]:
    """Slug -> display name, taking the spelling of the first article (by path) that uses it."""
    names: dict[str, str] = {}
    for article in sorted(articles, key=lambda a: a.path):
        for topic in article.topics:
            names.setdefault(topic.slug, topic.name)
    return names


def feed_specs(site: SiteConfig, articles: Iterable[Meta]) -> tuple[FeedSpec, ...]:
    """Operator feeds first, then one feed per topic of ``articles``."""
    return specs_for_topics(site, topic_names(articles) if site.topic_feeds else {})


def specs_for_topics(site: SiteConfig, topics: dict[str, str]) -> tuple[FeedSpec, ...]:
    """Operator feeds first, then one feed per topic (slug -> name); an operator feed owns its name."""
    specs = list(site.feeds)
    if site.topic_feeds:
        taken = {spec.name for spec in specs}
        for topic_slug, name in sorted(topics.items()):
            if topic_slug in taken:
                continue
            specs.append(
                FeedSpec(
                    name=topic_slug,
                    title=f"{site.title}: {name}",
                    description=site.description or f"{site.title}: {name}",
                    topics=(topic_slug,),
                    limit=site.limit,
                    max_age=site.max_age,
                    content=site.content,
                    language=site.language,
                    is_topic_feed=True,
                )
            )
    return tuple(specs)


def matches(spec: FeedSpec, article: Meta) -> bool:
    topics = article.topic_slugs
    if spec.topics and topics.isdisjoint(spec.topics):
        return False
    if spec.exclude_topics and not topics.isdisjoint(spec.exclude_topics):
        return False
    return not spec.tags or not article.tag_slugs.isdisjoint(spec.tags)


def select(spec: FeedSpec, visible: Sequence[Meta]) -> list[Meta]:
    """The entries of one feed; ``visible`` must already be published and newest first."""
    chosen: list[Meta] = []
    for article in visible:
        if matches(spec, article):
            chosen.append(article)
            if len(chosen) >= spec.limit:
                break
    return chosen
