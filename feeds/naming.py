"""One name per topic and per tag, however the articles spell it; one byline per article.

Articles write a topic their own way ("Ukraine-Krieg", "ukraine krieg"); the slug makes them one
topic, and readers would otherwise show one tag per spelling. Every document shows the topic's
display name instead: the ``topics:`` title when the operator wrote one, otherwise the spelling
most entries write (the index counts them), where the slug itself (a folder's name, a lowercase
tag) counts only when nobody writes another, and ties go to the first in code point order
(capitals first). Tags follow the same rule and have no titles. Several authors make one byline
("Anna Beispiel und Jonas Muster"), the same in every format and on the article's page. Pure
functions: the counts come from the index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from .articles import Meta, Topic, topic
from .config import SiteConfig

M = TypeVar("M", bound=Meta)
# The last name of a byline joins with the feed's (or the article's) word for "and".
_AND = {"de": "und", "en": "and", "fr": "et", "es": "y", "it": "e", "nl": "en", "pt": "e", "da": "og"}
_AND |= {"nb": "og", "nn": "og", "no": "og", "sv": "och", "pl": "i", "cs": "a", "fi": "ja", "uk": "і"}
Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Names:
    """Display names by slug of the topics and tags some documents show (hashable: a cache key)."""

    topics: Pairs = ()
    tags: Pairs = ()


def slugs(metas: Iterable[Meta]) -> tuple[set[str], set[str]]:
    """The topic and the tag slugs the entries carry."""
    topics: set[str] = set()
    tags: set[str] = set()
    for meta in metas:
        topics.update(t.slug for t in meta.topics)
        tags.update(t.slug for t in meta.tags)
    return topics, tags


def names(config: SiteConfig, topics: Mapping[str, str], tags: Mapping[str, str]) -> Names:
    """``topics``/``tags``: slug -> the most common spelling; a ``topics:`` title wins."""
    titled = {t.slug: t.title for t in config.topic_names}
    shown = {slug: titled.get(slug, name) for slug, name in topics.items()}
    return Names(tuple(sorted(shown.items())), tuple(sorted(tags.items())))


def display(meta: M, shown: Names) -> M:
    """``meta`` with every topic and tag under its display name (itself if nothing differs)."""
    topics = _renamed(meta.topics, dict(shown.topics))
    tags = _renamed(meta.tags, dict(shown.tags))
    if topics is None and tags is None:
        return meta
    return replace(meta, topics=topics or meta.topics, tags=tags or meta.tags)


def _renamed(own: tuple[Topic, ...], shown: Mapping[str, str]) -> tuple[Topic, ...] | None:
    if all(shown.get(t.slug, t.name) == t.name for t in own):
        return None
    return tuple(topic(t.slug, shown.get(t.slug, t.name)) for t in own)


def byline(names: Sequence[str], language: str | None) -> str:
    """The names as one byline: "A und B", "A, B and C"; the word for "and" by language."""
    if len(names) < 2:
        return "".join(names)
    word = _AND.get((language or "").split("-")[0].lower(), "&")
    return f"{', '.join(names[:-1])} {word} {names[-1]}"
