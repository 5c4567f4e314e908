"""Article files into metadata: front matter (YAML) or the newsroom's plain export form.

``parse_meta`` is pure (bytes and facts in, metadata and problems out) so every odd input can be
tested without a file system; :mod:`feeds.sources` is the edge that finds and reads the files.
Each field has its own small reader that says what it expected; a bad file never stops the
others: it is left out or repaired, and reported by name and line.
"""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, time
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, urljoin
from zoneinfo import ZoneInfo

from .articles import (
    EPOCH,
    Article,
    Author,
    DateSource,
    Meta,
    SourceFile,
    Topic,
    article_id_for,
    body_html,
    complete,
    decode,
    summary_of,
    topic,
)
from .config import SiteConfig
from .errors import Problem, Severity
from .fields import did_you_mean, http_url, language_tag
from .links import permalink
from .markup import clean_text
from .pictures import MAX_PICTURES, body_references, described, is_url, media_url, resolve
from .slugs import slug
from .yamlfile import YAMLProblem, line_of, load_yaml, plain_front_matter

KEYS = (
    "id",
    "title",
    "date",
    "first_seen",
    "updated",
    "topics",
    "tags",
    "author",
    "summary",
    "language",
    "draft",
    "image",
    "image_alt",
    "link",
    "sources",
)
_FENCE = re.compile(r"^(---|\.\.\.)[ \t]*$")
_ID_SEGMENT = re.compile(r"^[^\s/\\?#%<>\"]+$")
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_FENCE_OPEN = re.compile(r"^---[ \t]*$")
_FIRST_SEEN_KEY = re.compile(r"^first_seen[ \t]*:")
_FENCE_LINE = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)  # _FENCE, found in the text
_SPACES = re.compile(r"\s+")


def content_digest(data: bytes) -> int:
    """56 bits of BLAKE2b: a file's identity across workers and restarts (fits SQLite's integer)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=7).digest(), "big")


def parse_article(source: SourceFile, site: SiteConfig) -> tuple[Article | None, list[Problem]]:
    """Parse one file; ``None`` means it is left out, and the problems say why."""
    meta, body, problems = parse_meta(source, site)
    return (complete(meta, body, site) if meta is not None else None), problems


def stamped(data: bytes, when: str) -> bytes:
    """The file's bytes with ``first_seen: <when>`` in its front matter (added if it has none).

    Everything else stays byte for byte: BOM, line ends, the body. Used by
    ``feeds check --stamp-dates`` so the date a dateless article was first seen survives
    copies and other machines, without changing its entry id. Lines are found the way
    :func:`parse_meta` finds them (``\\n``, ``\\r\\n`` and a lone ``\\r`` all end a line; characters
    XML forbids, such as a leading form feed, do not count), so the front matter the parser sees
    is the one that gets the key. A ``first_seen:`` line already there (one that cannot be read
    as a date) is replaced rather than repeated: a second key would make the YAML invalid.
    The caller must still parse the result: this is a text edit, not a YAML writer.
    """
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    lines: list[bytes] = _LINE.findall(data, len(bom))
    ends = [line[len(line.rstrip(b"\r\n")) :] for line in lines]
    newline = next((end for end in ends if end), b"\n")
    if not (lines and ends[0] and _FENCE_OPEN.match(_seen_as(lines[0]))):
        line = b"first_seen: " + when.encode() + newline
        return bom + b"---" + newline + line + b"---" + newline + data[len(bom) :]
    close = next((i for i in range(1, len(lines)) if _FENCE.match(_seen_as(lines[i]))), len(lines))
    given = [i for i in range(1, close) if _FIRST_SEEN_KEY.match(_seen_as(lines[i]))]
    if len(given) == 1:  # replace it, keeping its line end
        at, after = given[0], given[0] + 1
    else:  # none (or a duplicate the parser refused anyway): the first line after the fence
        at, after = 1, 1
    line = b"first_seen: " + when.encode() + (ends[at] if after > at else ends[0])
    return bom + b"".join(lines[:at]) + line + b"".join(lines[after:])


def _seen_as(line: bytes) -> str:
    """One line as the parser sees it: decoded, without its line end and forbidden characters."""
    return clean_text(line.rstrip(b"\r\n").decode("utf-8", "replace"))


class _Front:
    """The front matter of one file, and the problems found while reading its fields."""

    def __init__(self, path: str, values: Mapping[Any, Any]) -> None:
        self.path = path
        self.values = values
        self.problems: list[Problem] = []

    def report(self, message: str, key: str | None = None, severity: Severity = Severity.ERROR) -> None:
        line = line_of(self.values, key) if key is not None else None
        self.problems.append(Problem(self.path, line, message, severity))

    def given(self, key: str) -> Any:
        return self.values.get(key)

    def typed(self, key: str, kind: type | tuple[type, ...], expected: str) -> Any:
        """The value of ``key`` if it has the expected type; otherwise warn and ignore it."""
        value = self.values.get(key)
        if value is None:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.report(f"{key}: expected {expected}, got {value!r}; ignored", key, Severity.WARNING)
            return None
        return value


def parse_meta(
    source: SourceFile, site: SiteConfig, teaser: bool = True
) -> tuple[Meta | None, str, list[Problem]]:
    """Everything but the body's HTML: cheap enough to run over a whole archive.

    ``teaser``: also the digest of the summary, which takes rendering the body (nearly as much
    again as the rest); a cold start leaves it 0, unknown, and documents showing only the
    summary are then rendered to tell whether they changed (see :mod:`feeds.inventory`).
    """
    early: list[Problem] = []
    text = _decode_checked(source, early)
    if text is None:
        return None, "", early
    split = _split_front_matter(source.path, text, early)
    if split is None:
        return None, "", early
    front = _Front(source.path, split[0])
    front.problems = early
    body = split[1]
    _warn_unknown_keys(front)
    title, body = _title(front, body, is_plain=source.path.endswith(".txt"))
    if not title:
        front.report("no title: neither a 'title' in front matter nor a first line; left out")
        return None, "", front.problems
    published, dated_by = _published(front, site.tz)
    article_id = _article_id(front, source.path)
    page = permalink(site, article_id)
    link = _link(front)
    image, image_type, image_length = _image(front, site, source)
    if not source.path.endswith(".txt"):
        _body_pictures(front, source, text, len(text) - len(body))
    meta = Meta(
        id=article_id,
        path=source.path,
        title=title,
        published=published,
        updated=_updated(front, site.tz, published),
        url=link or page,
        permalink=page,
        topics=_topics(front.typed("topics", (str, list), "a list of topic names"))
        or _folder_topic(source.path),
        tags=_topics(front.typed("tags", (str, list), "a list of tags")),
        authors=_article_authors(front, site),
        language=_language(front),
        draft=_draft(front),
        image=image,
        image_type=image_type,
        image_length=image_length,
        image_alt=_image_alt(front) if image else None,
        sources=_sources(front),
        given_summary=_given_summary(front),
        version=source.stamp,
        digest=_digest(source),
        body_digest=content_digest(body.encode()),
        body_start=len(text) - len(body),
        dated_by=dated_by,
    )
    if teaser:
        meta = replace(meta, teaser=_teaser(meta.path, meta.given_summary, body, site))
    return meta, body, front.problems


def _decode_checked(source: SourceFile, problems: list[Problem]) -> str | None:
    """The file's text, or None (reported) when it cannot be an article at all."""
    if not source.data.strip():
        problems.append(Problem(source.path, None, "empty file, left out"))
        return None
    if b"\x00" in source.data:
        message = "binary file (contains NUL bytes), left out; articles must be UTF-8 text"
        problems.append(Problem(source.path, None, message))
        return None
    try:
        return decode(source.data, strict=True)
    except UnicodeDecodeError as exc:
        line = source.data[: exc.start].count(b"\n") + 1
        message = f"not valid UTF-8 (byte {exc.start}); bad bytes replaced with U+FFFD"
        problems.append(Problem(source.path, line, message))
        return decode(source.data)


def _split_front_matter(
    path: str, text: str, problems: list[Problem]
) -> tuple[Mapping[Any, Any], str] | None:
    """(front matter, body); an empty mapping when there is none; None when it is unusable.

    Lines end with LF alone (:func:`~feeds.articles.decode`); only the front matter's lines are
    looked at, the body is a slice.
    """
    first_end = text.find("\n")
    first = text if first_end < 0 else text[:first_end]
    if not (first.startswith("---") and _FENCE.match(first)):
        return {}, text
    close = _FENCE_LINE.search(text, first_end + 1) if first_end >= 0 else None
    if close is None:
        problems.append(
            Problem(path, 1, "front matter opened with '---' on line 1 is never closed; left out")
        )
        return None
    try:
        # Articles have no use for anchors; refusing aliases keeps a 500-byte alias bomb from
        # costing minutes of CPU.
        front = text[first_end + 1 : close.start() - 1]  # "" when the fence closes on line 2
        plain = plain_front_matter(front, first_line=2)
        values = plain if plain is not None else load_yaml(front, first_line=2, aliases=False) or {}
    except YAMLProblem as exc:
        problems.append(Problem(path, exc.line, f"front matter: {exc.message}; left out"))
        return None
    if not isinstance(values, Mapping):
        message = "front matter must be a mapping of keys (title: ..., date: ...); left out"
        problems.append(Problem(path, 2, message))
        return None
    if plain is None:  # YAML escapes such as "\x07" bring back what clean_text removed
        _clean_strings(values)
    return values, text[close.end() + 1 :]


def _warn_unknown_keys(front: _Front) -> None:
    for key in front.values:
        if key not in KEYS:
            message = f"unknown front matter key {key!r} ignored{did_you_mean(str(key), KEYS)}"
            front.report(message, key, Severity.WARNING)


def _title(front: _Front, body: str, is_plain: bool) -> tuple[str, str]:
    """The title and what remains of the body (a title taken from the first line leaves it)."""
    title = _one_line(front.typed("title", (str, int, float, date), "a string"))
    if title:
        return title, body
    first, _, rest = body.lstrip("\n").partition("\n")
    return _one_line(first if is_plain else first.lstrip("#").strip()), rest


def _published(front: _Front, tz: ZoneInfo) -> tuple[datetime, DateSource]:
    for key, source in (("date", DateSource.DATE), ("first_seen", DateSource.FIRST_SEEN)):
        value = front.given(key)
        if value is None:
            continue
        moment = _when(value, tz)
        if moment is not None:
            return moment, source
        front.report(
            f"{key}: cannot read {value!r} as a date between the years 1001 and 9998; "
            "dated when first seen instead",
            key,
        )
    if front.given("date") is None:
        front.report(
            "no date: dated when first seen, remembered in the state folder "
            "(run 'feeds check --stamp-dates' to write it into the file)",
            severity=Severity.WARNING,
        )
    return EPOCH, DateSource.SEEN


def _updated(front: _Front, tz: ZoneInfo, published: datetime) -> datetime:
    value = front.given("updated")
    updated = _when(value, tz)
    if updated is None and value is not None:
        front.report(f"updated: cannot read {value!r} as a date; ignored", "updated")
    return max(updated or published, published)


def _article_id(front: _Front, path: str) -> str:
    default = clean_text(article_id_for(path))  # folder names may hold anything
    given = front.typed("id", (str, int), "a string")
    if given is None:
        return default
    if _valid_id(str(given)):
        return str(given).strip()
    front.report(
        f"id: {given!r} is not usable in a URL (no spaces, '..', '?', '#' or '%'); using the file path",
        "id",
    )
    return default


def _folder_topic(path: str) -> tuple[Topic, ...]:
    parts = PurePosixPath(path).parts
    return _topics([parts[0]]) if len(parts) > 1 else ()


def _article_authors(front: _Front, site: SiteConfig) -> tuple[Author, ...]:
    authors = _authors(front.given("author"))
    if authors is None:
        front.report(
            "author: expected a name, {name, email, uri}, or a list of those; ignored",
            "author",
            Severity.WARNING,
        )
        authors = ()
    if not authors and site.author:
        authors = (_site_author(site.author),)
    return authors


def _language(front: _Front) -> str | None:
    value = front.typed("language", str, "a language tag such as de")
    if value is None:
        return None
    try:
        return language_tag(value)
    except (TypeError, ValueError):
        message = f"language: {value!r} is not a language tag such as de or en-US; ignored"
        front.report(message, "language", Severity.WARNING)
        return None


def _link(front: _Front) -> str | None:
    given = front.typed("link", str, "an absolute URL")
    if given is None:
        return None
    link = _absolute_url(given)
    if link is None:
        message = f"link: {given!r} is not an absolute http(s) URL; ignored"
        front.report(message, "link", Severity.WARNING)
        return None
    return link


def _image(front: _Front, site: SiteConfig, source: SourceFile) -> tuple[str | None, str | None, int]:
    """The image's absolute URL, media type and length.

    A picture beside the articles is published only as the file it is (its size, the type its
    bytes announce); one that is missing or refused is reported and left out, never published
    as a broken link. An absolute URL is taken as it is (its length is not known).
    """
    given = front.typed("image", str, "an image path or URL")
    if not given:
        return None, None, 0
    if is_url(given):
        url = _web_url(site, given)
        if url is None:
            message = f"image: {given!r} is neither a path nor an http(s) URL; ignored"
            front.report(message, "image", Severity.WARNING)
            return None, None, 0
        return url, mimetypes.guess_type(url)[0] or "application/octet-stream", 0
    local = resolve(source.path, given)
    if local.refusal is not None:
        front.report(f"image: {given.strip()!r} {local.refusal}; left out", "image")
        return None, None, 0
    url = media_url(site, local.rel)
    if source.pictures is None:  # parsed from memory: nothing to look at
        return url, mimetypes.guess_type(url)[0] or "application/octet-stream", 0
    picture = source.pictures.get(local.rel)
    problem = described(local.rel, picture)
    if picture is None or problem is not None:
        front.report(f"image: {problem}; left out of the feeds and the page", "image")
        return None, None, 0
    return url, picture.media_type, picture.size


def _body_pictures(front: _Front, source: SourceFile, text: str, start: int) -> None:
    """Warn of every body picture that leads out of the folder or has no file to show.

    A picture out of the folder loses its ``src`` when the body is rendered; one whose file is
    missing keeps it (it shows once the file is there) and is reported here, with its line.
    """
    if source.pictures is None:
        return
    body = text[start:]
    for reference, offset in itertools.islice(body_references(body), MAX_PICTURES):
        local = resolve(source.path, reference)
        problem = f"{reference!r} {local.refusal}; left out" if local.refusal is not None else None
        if problem is None and source.pictures.get(local.rel) is not None:
            problem = described(local.rel, source.pictures[local.rel])
        if problem is not None:
            line = text.count("\n", 0, start + offset) + 1
            front.problems.append(Problem(source.path, line, f"picture {problem}", Severity.WARNING))


def _digest(source: SourceFile) -> int:
    """The file's digest, and with pictures beside the articles also their sizes and types:
    documents showing the article change with either (their caches and purges compare this)."""
    if not source.pictures:
        return content_digest(source.data)
    facts = repr(sorted((rel, p.size, p.media_type) for rel, p in source.pictures.items()))
    return content_digest(source.data + b"\0" + facts.encode())


def teaser(meta: Meta, body: str, site: SiteConfig) -> int:
    """The digest of the summary documents show of the article whose ``meta`` and ``body`` a
    parse without it gave (see :func:`parse_meta`)."""
    return _teaser(meta.path, meta.given_summary, body, site)


def _teaser(path: str, given: str | None, body: str, site: SiteConfig) -> int:
    """The digest of the summary documents show of the article: of the one given, or of the
    start of the body, which takes rendering it (a summary-only feed changes with its summary,
    not with every edit of the body)."""
    html = "" if given else body_html(path, body, site)
    return content_digest(summary_of(given, html, site).encode())


def _image_alt(front: _Front) -> str | None:
    """What the image shows, for people who cannot see it; also its caption in Media RSS."""
    given = front.typed("image_alt", str, "a short text describing the image")
    return _one_line(given) or None if given else None


def _draft(front: _Front) -> bool:
    value = front.values.get("draft", False)
    if isinstance(value, bool):
        return value
    front.report(f"draft: expected true or false, got {value!r}; treated as a draft", "draft")
    return True


def _sources(front: _Front) -> tuple[str, ...]:
    given = front.typed("sources", (str, list), "a list of sources")
    return tuple(_one_line(s) for s in _as_list(given) if _one_line(s))


def _given_summary(front: _Front) -> str | None:
    given = front.typed("summary", str, "a string")
    return given.strip() if given and given.strip() else None


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _clean_strings(item)
    elif isinstance(value, list):
        value[:] = [_clean_strings(item) for item in value]
    return value


_URL_SAFE = ":/?#[]@!$&()*+,;=%~-._"  # "'" is encoded: it would end an HTML attribute


def _web_url(site: SiteConfig, value: str) -> str | None:
    """``value`` resolved against the site, unsafe characters percent-encoded, then checked.

    Authors write image paths with spaces and umlauts; they are encoded rather than refused,
    and the result must pass the same URL check as ``site.url``.
    """
    try:
        return http_url(urljoin(site.url, quote(clean_text(value).strip(), safe=_URL_SAFE)))
    except (TypeError, ValueError):  # "https://[x" is no URL at all
        return None


def _absolute_url(value: Any) -> str | None:
    """An absolute http(s) URL written in front matter (a relative one is refused)."""
    if not isinstance(value, str) or not value.strip().lower().startswith(("http://", "https://")):
        return None
    try:
        return http_url(quote(clean_text(value).strip(), safe=_URL_SAFE))
    except (TypeError, ValueError):
        return None


@lru_cache(maxsize=64)
def _site_author(name: str) -> Author:
    return Author(name)


def _one_line(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and value.isprintable() and "  " not in value:
        return value.strip()  # printable text holds no whitespace but the space
    return _SPACES.sub(" ", clean_text(str(value))).strip()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _topics(value: Any) -> tuple[Topic, ...]:
    seen: dict[str, Topic] = {}
    for item in _as_list(value):
        named = _named_topic(item) if isinstance(item, str) and len(item) <= _NAME_KEPT else _topic_of(item)
        if named is not None:
            seen.setdefault(named.slug, named)
    return tuple(seen.values())


def _topic_of(item: Any) -> Topic | None:
    # A name made only of forbidden characters (a folder called "\x08") still names a
    # topic: shown as U+FFFD, with a stable hashed slug.
    name = _one_line(item) or _one_line(clean_text(str(item or ""), "\ufffd"))
    return topic(slug(name), name) if name else None


# An archive names a few hundred topics and tags, each spelt the same way thousands of times.
_named_topic = lru_cache(maxsize=4096)(_topic_of)
_NAME_KEPT = 200


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
                    _absolute_url(uri),
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
        moment = moment.astimezone(UTC)
        if moment.microsecond:
            moment = moment.replace(microsecond=0)
    except (OverflowError, ValueError):  # 0001-01-01 in a zone east of UTC
        return None
    # RSS wants four-digit years (RFC 822 as amended); nothing a newsroom publishes is older.
    return moment if 1000 < moment.year < 9999 else None


def _valid_id(value: str) -> bool:
    parts = value.strip().split("/")
    return bool(value.strip()) and all(p not in ("", ".", "..") and _ID_SEGMENT.match(p) for p in parts)
