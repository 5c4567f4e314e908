"""Articles as the rest of the program sees them: immutable types and their stable identity.

:mod:`feeds.parsing` turns a file's bytes into a :class:`Meta`; this module holds the types, the
ids and URLs derived from them, and :func:`complete`, which renders a body (the costly half).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any, NamedTuple

from .config import SiteConfig
from .links import id_path
from .markup import (
    clean_text,
    html_to_text,
    is_clean_utf8,
    markdown_to_html,
    plain_to_html,
    sanitize,
    shorten,
    text_start,
)
from .pictures import Picture, is_url, media_url, resolve

SUFFIXES = (".md", ".markdown", ".txt")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Stamp(NamedTuple):
    """One version of a file (size, mtime in ns): whether it changed since it was read."""

    size: int
    mtime_ns: int


NO_STAMP = Stamp(0, 0)


class DateSource(StrEnum):
    """Where an article's first-publication date comes from, which decides its entry id."""

    DATE = "date"  # front matter ``date``: the id carries that day (tag URI)
    FIRST_SEEN = "first_seen"  # front matter ``first_seen`` (written by ``check --stamp-dates``)
    SEEN = "seen"  # none in the file: the day the publisher first saw it, from the state folder


@dataclass(frozen=True, slots=True)
class Author:
    name: str
    email: str | None = None
    uri: str | None = None

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return Author, (self.name, self.email, self.uri)


@dataclass(frozen=True, slots=True)
class Topic:
    slug: str
    name: str

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return Topic, (self.slug, self.name)


@dataclass(frozen=True, slots=True)
class Meta:
    """What selection needs to know of an article, without its rendered body.

    All datetimes are timezone-aware UTC; ``updated >= published``. ``url`` is where entries
    link to, ``permalink`` the article's own page. ``version`` tells whether the file changed
    since this was read. An article whose ``dated_by`` is SEEN has ``published`` EPOCH until
    :func:`with_first_seen` gives it the remembered date. The index keeps only these, so
    100,000 articles fit in memory; bodies are rendered for the entries a document shows.
    """

    id: str
    path: str
    title: str
    published: datetime
    updated: datetime
    url: str
    permalink: str
    topics: tuple[Topic, ...] = ()
    tags: tuple[Topic, ...] = ()
    authors: tuple[Author, ...] = ()
    language: str | None = None
    draft: bool = False
    image: str | None = None
    image_type: str | None = None
    image_length: int = 0
    image_alt: str | None = None
    sources: tuple[str, ...] = ()
    given_summary: str | None = None
    version: Stamp = NO_STAMP
    digest: int = 0  # of the file's bytes: equal digests, equal article (mtimes say nothing)
    # Of what the body shows, for documents to tell whether they changed without rendering:
    # the body's text (its HTML is made from it and ``path``) and the summary it makes.
    body_digest: int = 0
    teaser: int = 0
    body_start: int = 0  # where the body begins in the decoded text, to skip re-parsing
    dated_by: DateSource = DateSource.DATE

    @property
    def topic_slugs(self) -> frozenset[str]:
        return frozenset(t.slug for t in self.topics)

    @property
    def tag_slugs(self) -> frozenset[str]:
        return frozenset(t.slug for t in self.tags)

    def is_published(self, now: datetime) -> bool:
        return not self.draft and self.published <= now


@dataclass(frozen=True, slots=True)
class Article(Meta):
    """A :class:`Meta` with its body: ``html`` sanitized with absolute URLs, ``summary`` plain text."""

    html: str = ""
    summary: str = ""


_NORMAL_PATH = re.compile(r"[^/]+(?:/[^/]+)*")  # relative, no empty segment, no trailing "/"


@dataclass(frozen=True)
class SourceFile:
    """What the edge read from disk: everything ``parse_meta`` needs, nothing more."""

    path: str  # relative to the articles folder, POSIX separators
    data: bytes
    stamp: Stamp = NO_STAMP
    # The pictures it names, by path under the articles folder, as looked at when it was read;
    # None: not looked at (a file parsed from memory).
    pictures: Mapping[str, Picture] | None = None


def article_id_for(path: str) -> str:
    """The path without its suffix, as ``PurePosixPath(path).with_suffix("")`` spells it; a path
    that needs no normalizing is cut as a string (building the object was a twentieth of
    parsing an article)."""
    if _NORMAL_PATH.fullmatch(path) and "/./" not in f"/{path}/":
        cut = path.rfind("/") + 1
        dot = path.rfind(".", cut)
        return path[:dot] if cut < dot < len(path) - 1 else path
    return str(PurePosixPath(path).with_suffix(""))


def entry_id(site: SiteConfig, meta: Meta) -> str:
    """The id readers key entries on: it must never change, whatever happens to the file.

    Dated articles get a tag URI (RFC 4151) with the host and their first day, as published
    since the first release. Articles without ``date`` get a name-based UUID (RFC 9562 v5) of
    host and id: nothing about when or where the file was copied can change it, and writing the
    date into the file later (``first_seen``) keeps it.
    """
    if meta.dated_by is DateSource.DATE:
        day = meta.published.astimezone(site.tz).date().isoformat()
        return f"tag:{site.host},{day}:{id_path(meta.id)}"
    return f"urn:uuid:{uuid.uuid5(_host_namespace(site.host), meta.id)}"


@lru_cache(maxsize=16)
def _host_namespace(host: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_DNS, host)


def with_first_seen(meta: Meta, seen: datetime) -> Meta:
    """``meta`` of an article without a date in its file, dated when it was first seen."""
    return replace(meta, published=seen, updated=max(meta.updated, seen))


def complete(meta: Meta, body: str, site: SiteConfig) -> Article:
    """Render the body of an article whose metadata is known (the costly half of parsing)."""
    html = body_html(meta.path, body, site)
    values = {f.name: getattr(meta, f.name) for f in fields(Meta)}
    return Article(**values, html=html, summary=summary_of(meta.given_summary, html, site))


def body_html(path: str, body: str, site: SiteConfig) -> str:
    """The sanitized HTML of the body of the article at ``path``: a function of these alone."""
    is_plain = path.endswith(".txt")
    return sanitize(
        markdown_to_html(body) if not is_plain else plain_to_html(body),
        site.url,
        None if is_plain else lambda src: picture_src(site, path, src),
    )


def summary_of(given: str | None, html: str, site: SiteConfig) -> str:
    """The plain-text summary: the one ``given`` in front matter, else the start of the body."""
    if given:
        return shorten(html_to_text(sanitize(given, site.url)), 600)
    # The start is enough for 280 characters, mostly; and 300 of them are enough to shorten.
    text = text_start(html[:2400], 300)
    if len(text) < 300 and len(html) > 2400:
        text = text_start(html, 300)
    return shorten(text, 280)


def picture_src(site: SiteConfig, article: str, src: str) -> str | None:
    """Where an ``<img src>`` of the article at ``article`` points: a picture beside the article
    at its ``/media/`` URL, an absolute URL as it is, and nothing for a path out of the folder.

    Whether the file exists is not asked here (``feeds check`` reports it): the body is a
    function of the article's bytes alone, and a picture added later shows without a new render.
    """
    if is_url(src):
        return src
    local = resolve(article, src)
    return media_url(site, local.rel) if local.refusal is None else None


def decode(data: bytes, strict: bool = False) -> str:
    """The article text as every later step sees it: UTF-8, LF line ends, XML-legal."""
    text = data.decode("utf-8-sig", errors="strict" if strict else "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if is_clean_utf8(data) else clean_text(text)


def read_body(source: SourceFile, meta: Meta) -> str | None:
    """The body of ``meta`` from a fresh read of its file, or None if the file has changed."""
    if source.stamp != meta.version:
        return None
    return decode(source.data)[meta.body_start :]


@lru_cache(maxsize=65536)
def topic(topic_slug: str, name: str) -> Topic:
    """One shared instance per spelling: 100,000 articles name a few hundred topics."""
    return Topic(topic_slug, name)
