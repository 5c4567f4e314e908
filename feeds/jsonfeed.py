"""JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/): the same entries as RSS and Atom.

Some readers (and most scripts) would rather take JSON than XML, so every feed is offered in
this format too, from the same selected entries, with the same ids, dates, content rules and
size trimming as :mod:`feeds.render`; a subscriber who switches format sees no entry change.

feedgen has no JSON Feed writer, and none is needed: the document is a plain dict written by
:mod:`json` with a fixed key order and fixed separators, so equal inputs give equal bytes (the
ETag) on any machine. Nothing here reads the clock. This module must not import
:mod:`feeds.render`, which dispatches to it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .articles import Article, Author, entry_id
from .config import FeedSpec, SiteConfig
from .links import DocLinks

VERSION = "https://jsonfeed.org/version/1.1"

# RFC 6068 §2: what an addr-spec may keep unencoded in a mailto: URL; the rest is %-encoded.
_MAILTO_SAFE = "@!$'()*+,;:-._~"


def render_json(
    spec: FeedSpec,
    site: SiteConfig,
    entries: Sequence[Article],
    links: DocLinks,
    updated: datetime | None = None,
    full: int | None = None,
) -> bytes:
    """JSON Feed 1.1 bytes (UTF-8, one line, newline at the end); ``entries`` newest first.

    ``full``: how many of the newest entries carry their content, as in
    :func:`feeds.render.render_atom` (default all with ``content: full``, none with
    ``content: summary``); the others carry their summary as ``content_text``, since an item
    needs one of ``content_html``/``content_text``.

    ``updated`` is taken for the same signature as the XML renderers and not used: JSON Feed
    has no feed-level date, readers go by each item's ``date_modified``. Of ``links``, JSON Feed
    knows only the way to older entries (``next_url`` = ``prev_archive``); it has no link to
    newer pages nor to the current document, so archive pages carry neither.
    """
    shown = _full(spec, entries, full)
    site_authors = [{"name": site.author or site.title}]
    # Readers add the feed's authors to every item's byline: so they stand at the top only
    # when no item names its own, and otherwise each item without one carries them itself.
    own = any(article.authors for article in entries)
    document: dict[str, Any] = {
        "version": VERSION,  # the spec asks for it first
        "title": spec.title,
        "home_page_url": links.html_url,
        "feed_url": links.self_url,
        "description": spec.description or spec.title,
        "language": spec.language,
        # One square picture is all the config has: the spec wants a large icon (512 px) and a
        # favicon of at least 64 px, so the same one serves both.
        "icon": site.icon,
        "favicon": site.icon,
        "authors": None if own else site_authors,
        "next_url": links.prev_archive,
        # WebSub §5.1: subscribers send feed_url as hub.topic.
        "hubs": [{"type": "WebSub", "url": hub} for hub in links.hubs] or None,
        "items": [
            _item(site, article, i < shown, site_authors if own else None)
            for i, article in enumerate(entries)
        ],
    }
    text = json.dumps(_present(document), ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


def _full(spec: FeedSpec, entries: Sequence[Article], full: int | None) -> int:
    """How many entries (newest first) carry their whole content; the rule of ``render._full``."""
    if spec.content != "full":
        return 0
    return len(entries) if full is None else full


def _item(
    site: SiteConfig, article: Article, full: bool, fallback: list[dict[str, str]] | None
) -> dict[str, Any]:
    summary = article.summary or article.title  # plain text, as Atom's <summary> before escaping
    content_html = article.html if full and article.html.strip() else None
    image = article.image
    return {
        "id": entry_id(site, article),  # the Atom <id> and RSS <guid>: readers key on it
        # Where Atom's alternate link points; the spec calls it the permalink, and for us that
        # is the page the entry links to (``external_url`` would only repeat it).
        "url": article.url,
        "title": article.title,
        "content_html": content_html,
        "content_text": summary if content_html is None else None,
        "summary": summary,
        "image": image,
        "date_published": _date(article.published),
        "date_modified": _date(article.updated),
        "authors": [_author(a) for a in article.authors] or fallback,
        "tags": list(dict.fromkeys(t.name for t in article.topics + article.tags)) or None,
        "language": article.language,
        # The RSS <enclosure> / Atom rel="enclosure" of the same image.
        "attachments": [
            {
                "url": image,
                "mime_type": article.image_type,
                "title": article.image_alt,
                "size_in_bytes": article.image_length if article.image_length > 0 else None,
            }
        ]
        if image and article.image_type
        else None,
    }


def _author(author: Author) -> dict[str, str | None]:
    """An author object; JSON Feed 1.1 has ``name``, ``url`` and ``avatar``, but no email.

    The ``uri`` is the url. Without one, an email becomes a ``mailto:`` url, which the spec
    allows and readers such as reader turn back into an email; it is already public in the
    Atom and RSS documents. With both, the uri wins and the email is left out.
    """
    url = author.uri or (f"mailto:{quote(author.email, safe=_MAILTO_SAFE)}" if author.email else None)
    return {"name": author.name, "url": url}


def _date(moment: datetime) -> str:
    """RFC 3339 with an explicit offset (``2025-05-03T10:00:00+00:00``), as feedgen writes Atom."""
    return moment.astimezone(UTC).isoformat()


def _present(value: Any) -> Any:
    """``value`` without the keys whose value is None: JSON Feed readers expect absent, not null."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_present(v) for v in value]
    return value
