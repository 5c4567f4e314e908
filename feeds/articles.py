"""Read article files into immutable :class:`Article` values.

``parse_article`` is pure (bytes and facts in, an article and problems out) so every odd input
can be tested without a file system; ``sources.py`` is the thin edge that walks the folder.
A bad file never stops the others: it is left out or repaired, and reported by name.
"""

from __future__ import annotations

import difflib
import logging
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, urljoin, urlsplit
from zoneinfo import ZoneInfo

from .config import SiteConfig
from .errors import Problem, Severity
from .markup import clean_text, html_to_text, markdown_to_html, plain_to_html, sanitize, shorten
from .slugs import slug
from .yamlfile import YAMLProblem, line_of, load_yaml

log = logging.getLogger(__name__)

SUFFIXES = (".md", ".markdown", ".txt")
KEYS = (
    "id",
    "title",
    "date",
    "updated",
    "topics",
    "tags",
    "author",
    "summary",
    "language",
    "draft",
    "image",
    "link",
    "sources",
)
_FENCE = re.compile(r"^(---|\.\.\.)[ \t]*$")
_ID_SEGMENT = re.compile(r"^[^\s/\\?#%<>\"]+$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


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
    link to, ``permalink`` the article's own page. ``version`` (size, mtime) tells whether the
    file changed since this was read. The index keeps only these, so 100,000 articles fit in
    memory; bodies are rendered for the entries a document actually shows.
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
    sources: tuple[str, ...] = ()
    given_summary: str | None = None
    version: tuple[int, float] = (0, 0.0)
    body_start: int = 0  # where the body begins in the decoded text, to skip re-parsing

    @property
    def topic_slugs(self) -> frozenset[str]:
        return frozenset(t.slug for t in self.topics)

    @property
    def tag_slugs(self) -> frozenset[str]:
        return frozenset(t.slug for t in self.tags)

    def is_published(self, now: datetime) -> bool:
        return not self.draft and self.published <= now

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # The index cache holds 100,000 of these: rebuilding through the constructor is
        # several times faster than the generic state protocol of slotted dataclasses.
        return type(self), tuple(getattr(self, name) for name in _field_names(type(self)))


@lru_cache(maxsize=8)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, slots=True)
class Article(Meta):
    """A :class:`Meta` with its body: ``html`` sanitized with absolute URLs, ``summary`` plain text."""

    html: str = ""
    summary: str = ""


@dataclass(frozen=True)
class SourceFile:
    """What the edge read from disk: everything ``parse_article`` needs, nothing more."""

    path: str  # relative to the articles folder, POSIX separators
    data: bytes
    mtime: float
    image_sizes: Mapping[str, int] | None = None
    mtime_ns: int = 0


def article_id_for(path: str) -> str:
    return str(PurePosixPath(path).with_suffix(""))


def permalink(site: SiteConfig, article_id: str) -> str:
    return f"{site.url}articles/{quote(article_id, safe='/~.-_')}"  # site.url ends with "/"


def parse_article(source: SourceFile, site: SiteConfig) -> tuple[Article | None, list[Problem]]:
    """Parse one file; ``None`` means it is left out, and the problems say why."""
    meta, body, problems = parse_meta(source, site)
    return (complete(meta, body, site) if meta is not None else None), problems


def complete(meta: Meta, body: str, site: SiteConfig) -> Article:
    """Render the body of an article whose metadata is known (the costly half of parsing)."""
    is_plain = meta.path.endswith(".txt")
    html = sanitize(markdown_to_html(body) if not is_plain else plain_to_html(body), site.url)
    if meta.given_summary:
        summary = shorten(html_to_text(sanitize(meta.given_summary, site.url)), 600)
    else:
        text = html_to_text(html[:2400])  # the start is enough for 280 characters, mostly
        if len(text) < 300 and len(html) > 2400:
            text = html_to_text(html)
        summary = shorten(text, 280)
    values = {f.name: getattr(meta, f.name) for f in fields(Meta)}
    return Article(**values, html=html, summary=summary)


def decode(data: bytes, strict: bool = False) -> str:
    """The article text as every later step sees it: UTF-8, LF line ends, XML-legal."""
    text = data.decode("utf-8-sig", errors="strict" if strict else "replace")
    return clean_text(text.replace("\r\n", "\n").replace("\r", "\n"))


def read_body(source: SourceFile, meta: Meta) -> str | None:
    """The body of ``meta`` from a fresh read of its file, or None if the file has changed."""
    if (len(source.data), source.mtime) != meta.version:
        return None
    return decode(source.data)[meta.body_start :]


def parse_meta(source: SourceFile, site: SiteConfig) -> tuple[Meta | None, str, list[Problem]]:
    """Everything but the body's HTML: cheap enough to run over a whole archive."""
    problems: list[Problem] = []

    def report(message: str, line: int | None = None, severity: Severity = Severity.ERROR) -> None:
        problems.append(Problem(source.path, line, message, severity))

    if not source.data.strip():
        report("empty file, left out")
        return None, "", problems
    if b"\x00" in source.data:
        report("binary file (contains NUL bytes), left out; articles must be UTF-8 text")
        return None, "", problems
    try:
        text = decode(source.data, strict=True)
    except UnicodeDecodeError as exc:
        line = source.data[: exc.start].count(b"\n") + 1
        report(f"not valid UTF-8 (byte {exc.start}); bad bytes replaced with U+FFFD", line)
        text = decode(source.data)

    meta: Any = {}
    body = text
    lines = text.split("\n")
    if lines and _FENCE.match(lines[0]) and lines[0].startswith("---"):
        end = next((i for i in range(1, len(lines)) if _FENCE.match(lines[i])), None)
        if end is None:
            report("front matter opened with '---' on line 1 is never closed; left out", 1)
            return None, "", problems
        try:
            meta = load_yaml("\n".join(lines[1:end]), first_line=2) or {}
        except YAMLProblem as exc:
            report(f"front matter: {exc.message}; left out", exc.line)
            return None, "", problems
        if not isinstance(meta, Mapping):
            report("front matter must be a mapping of keys (title: ..., date: ...); left out", 2)
            return None, "", problems
        _clean_strings(meta)  # YAML escapes such as "\x07" bring back what clean_text removed
        body = "\n".join(lines[end + 1 :])

    for key in meta:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            report(f"unknown front matter key {key!r} ignored{hint}", line_of(meta, key), Severity.WARNING)

    def field(key: str, kind: type | tuple[type, ...], expected: str) -> Any:
        value = meta.get(key)
        if value is None:
            return None
        is_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
        if is_bool or not isinstance(value, kind):
            report(
                f"{key}: expected {expected}, got {value!r}; ignored", line_of(meta, key), Severity.WARNING
            )
            return None
        return value

    is_plain = source.path.endswith(".txt")
    title = _one_line(field("title", (str, int, float, date), "a string"))
    if not title:
        first, _, rest = body.lstrip("\n").partition("\n")
        title = _one_line(first.lstrip("#").strip() if not is_plain else first)
        body = rest
    if not title:
        report("no title: neither a 'title' in front matter nor a first line; left out")
        return None, "", problems

    tz = site.tz
    published = _when(meta.get("date"), tz)
    if published is None:
        if "date" in meta and meta["date"] is not None:
            report(
                f"date: cannot read {meta['date']!r} as a date between the years 1001 and 9998; "
                "using the file time",
                line_of(meta, "date"),
            )
        else:
            report(
                "no date: using the file's modification time (add 'date:' so the date survives a copy)",
                None,
                Severity.WARNING,
            )
        published = datetime.fromtimestamp(int(source.mtime), UTC)
    updated = _when(meta.get("updated"), tz)
    if updated is None and meta.get("updated") is not None:
        report(f"updated: cannot read {meta['updated']!r} as a date; ignored", line_of(meta, "updated"))
    updated = max(updated or published, published)

    article_id = clean_text(article_id_for(source.path))  # folder names may hold anything
    given_id = field("id", (str, int), "a string")
    if given_id is not None:
        if _valid_id(str(given_id)):
            article_id = str(given_id).strip()
        else:
            report(
                f"id: {given_id!r} is not usable in a URL (no spaces, '..', '?', '#' or '%'); "
                "using the file path",
                line_of(meta, "id"),
            )

    given_summary = field("summary", str, "a string")

    topics = _topics(field("topics", (str, list), "a list of topic names"))
    if not topics:
        parts = PurePosixPath(source.path).parts
        topics = _topics([parts[0]]) if len(parts) > 1 else ()
    tags = _topics(field("tags", (str, list), "a list of tags"))

    authors = _authors(meta.get("author"))
    if authors is None:
        report(
            "author: expected a name, {name, email, uri}, or a list of those; ignored",
            line_of(meta, "author"),
            Severity.WARNING,
        )
        authors = ()
    if not authors and site.author:
        authors = (_site_author(site.author),)

    language = field("language", str, "a language tag such as de")
    if language is not None and not _LANGUAGE.match(language):
        report(
            f"language: {language!r} is not a language tag such as de or en-US; ignored",
            line_of(meta, "language"),
            Severity.WARNING,
        )
        language = None

    link = field("link", str, "an absolute URL")
    if link is not None:
        given, link = link, _web_url(site, link)
        if link is None or not given.strip().lower().startswith(("http://", "https://")):
            report(
                f"link: {given!r} is not an absolute http(s) URL; ignored",
                line_of(meta, "link"),
                Severity.WARNING,
            )
            link = None

    image = field("image", str, "an image path or URL")
    image_url = _web_url(site, image) if image else None
    if image and image_url is None:
        report(
            f"image: {image!r} is neither a path nor an http(s) URL; ignored",
            line_of(meta, "image"),
            Severity.WARNING,
        )
        image = None
    sizes = source.image_sizes or {}

    draft = meta.get("draft", False)
    if not isinstance(draft, bool):
        report(f"draft: expected true or false, got {draft!r}; treated as a draft", line_of(meta, "draft"))
        draft = True

    sources_field = field("sources", (str, list), "a list of sources")
    sources = tuple(_one_line(s) for s in _as_list(sources_field) if _one_line(s))

    page = permalink(site, article_id)
    meta = Meta(
        id=article_id,
        path=source.path,
        title=title,
        published=published,
        updated=updated,
        url=link or page,
        permalink=page,
        topics=topics,
        tags=tags,
        authors=authors,
        language=language,
        draft=draft,
        image=image_url,
        image_type=(mimetypes.guess_type(image_url)[0] or "application/octet-stream") if image_url else None,
        image_length=sizes.get(image.strip(), 0) if image else 0,
        sources=sources,
        given_summary=given_summary.strip() if given_summary and given_summary.strip() else None,
        version=(len(source.data), source.mtime),
        body_start=len(text) - len(body),
    )
    return meta, body, problems


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _clean_strings(item)
    elif isinstance(value, list):
        value[:] = [_clean_strings(item) for item in value]
    return value


_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"


def _web_url(site: SiteConfig, value: str) -> str | None:
    """An absolute http(s) URL with spaces and other unsafe characters percent-encoded."""
    try:
        url = urljoin(site.url, quote(clean_text(value).strip(), safe=_URL_SAFE))
        parts = urlsplit(url)
    except ValueError:  # "https://[x" is no URL at all
        return None
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def _web_url_or_none(value: Any) -> str | None:
    """An author's absolute http(s) URI, percent-encoded; relative ones have no base here."""
    if not isinstance(value, str) or not value.strip().lower().startswith(("http://", "https://")):
        return None
    url = quote(clean_text(value).strip(), safe=_URL_SAFE)
    try:
        return url if urlsplit(url).netloc else None
    except ValueError:
        return None


@lru_cache(maxsize=64)
def _site_author(name: str) -> Author:
    return Author(name)


def _one_line(value: Any) -> str:
    if value is None:
        return ""
    return re.sub(r"\s+", " ", clean_text(str(value))).strip()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=65536)
def _topic(topic_slug: str, name: str) -> Topic:
    """One shared instance per spelling: 100,000 articles name a few hundred topics."""
    return Topic(topic_slug, name)


def _topics(value: Any) -> tuple[Topic, ...]:
    seen: dict[str, Topic] = {}
    for item in _as_list(value):
        # A name made only of forbidden characters (a folder called "\x08") still names a
        # topic: shown as U+FFFD, with a stable hashed slug.
        name = _one_line(item) or _one_line(clean_text(str(item or ""), "\ufffd"))
        if name:
            seen.setdefault(slug(name), _topic(slug(name), name))
    return tuple(seen.values())


def _authors(value: Any) -> tuple[Author, ...] | None:
    result = []
    for item in _as_list(value):
        if isinstance(item, str) and item.strip():
            result.append(Author(_one_line(item)))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str) and item["name"].strip():
            email, uri = item.get("email"), item.get("uri")
            result.append(
                Author(
                    _one_line(item["name"]),
                    email.strip() if isinstance(email, str) and "@" in email else None,
                    _web_url_or_none(uri),
                )
            )
        else:
            return None
    return tuple(result)


def _when(value: Any, tz: ZoneInfo) -> datetime | None:
    """Naive times are in the site's zone; plain dates are midnight there."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            try:
                value = date.fromisoformat(value.strip())
            except ValueError:
                return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=tz)
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0, 0), tzinfo=tz)
    else:
        return None
    try:
        moment = moment.astimezone(UTC).replace(microsecond=0)
    except (OverflowError, ValueError):  # 0001-01-01 in a zone east of UTC
        return None
    # RSS wants four-digit years (RFC 822 as amended); nothing a newsroom publishes is older.
    return moment if 1000 < moment.year < 9999 else None


def _valid_id(value: str) -> bool:
    parts = value.strip().split("/")
    return bool(value.strip()) and all(p not in ("", ".", "..") and _ID_SEGMENT.match(p) for p in parts)
