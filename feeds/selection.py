"""Which feeds exist and which articles a feed takes: pure functions the index applies."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta

from .articles import Meta
from .config import FeedSpec, SiteConfig


def specs_for_topics(site: SiteConfig, topics: dict[str, str]) -> tuple[FeedSpec, ...]:
    """Operator feeds first, then one feed per topic (slug -> name); an operator feed owns its name."""
    specs = list(site.feeds)
    if site.topic_feeds:
        taken = {spec.name for spec in specs}
        named = {t.slug: t for t in site.topic_names}
        for topic_slug, name in sorted(topics.items()):
            if topic_slug in taken:
                continue
            shown = named.get(topic_slug)
            title = shown.title if shown else f"{site.title}: {name}"
            specs.append(
                FeedSpec(
                    name=topic_slug,
                    title=title,
                    description=(shown and shown.description) or site.description or title,
                    topics=(topic_slug,),
                    limit=site.limit,
                    max_age=site.max_age,
                    max_bytes=site.max_bytes,
                    stale_while_revalidate=site.stale_while_revalidate,
                    stale_if_error=site.stale_if_error,
                    content=site.content,
                    language=site.language,
                    is_topic_feed=True,
                )
            )
    return tuple(specs)


def matches(spec: FeedSpec, article: Meta) -> bool:
    return matches_slugs(spec, article.topic_slugs, article.tag_slugs)


def matches_slugs(spec: FeedSpec, topics: AbstractSet[str], tags: AbstractSet[str]) -> bool:
    """Whether an entry with these topic and tag slugs belongs in the feed."""
    if spec.topics and topics.isdisjoint(spec.topics):
        return False
    if spec.exclude_topics and not topics.isdisjoint(spec.exclude_topics):
        return False
    return not spec.tags or not tags.isdisjoint(spec.tags)


def next_change(
    now: datetime, specs: Iterable[FeedSpec], first_after: Callable[[datetime], datetime | None]
) -> datetime | None:
    """The next instant a feed's entries change with no file changing: an embargo ends, an
    entry comes out of a feed's ``delay`` or leaves its ``window``.

    ``first_after(t)``: the first publication after ``t``. A feed delayed by d shows at ``now``
    what was out at ``now - d``, so its next entry comes at ``first_after(now - d) + d``; one
    with a window of w loses its oldest entry at ``first_after(now - w) + w``.
    """
    offsets = {timedelta(0)} | {s.behind for s in specs} | {s.span for s in specs if s.span}
    moments = [t + offset for offset in offsets if (t := first_after(now - offset)) is not None]
    return min(moments, default=None)
