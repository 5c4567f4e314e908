"""feedparser's view of a document in any of the formats served (feedparser 6 reads no JSON Feed).

Tests that check every format of every feed read them through :func:`parse`: RSS and Atom go to
feedparser itself, JSON Feed is mapped onto the same keys, as feedparser's own JSON support in
its development branch does (``title``, ``id``, ``link``, ``summary``, ``content``, ``tags``,
``updated_parsed``, ``links`` with ``rel``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import feedparser
from feedparser import FeedParserDict


def is_json(body: bytes) -> bool:
    return body.lstrip().startswith(b"{")


def _date(value: str | None) -> Any:
    if not value:
        return None
    return datetime.fromisoformat(value).astimezone(UTC).utctimetuple()


def _item(item: dict[str, Any]) -> FeedParserDict:
    content = [FeedParserDict(value=item["content_html"], type="text/html")] if "content_html" in item else []
    return FeedParserDict(
        id=item["id"],
        title=item.get("title", ""),
        link=item.get("url", ""),
        summary=item.get("summary", ""),
        content=content,
        tags=[FeedParserDict(term=tag, label=tag) for tag in item.get("tags", [])],
        published=item.get("date_published"),
        published_parsed=_date(item.get("date_published")),
        updated=item.get("date_modified"),
        updated_parsed=_date(item.get("date_modified")),
        authors=[FeedParserDict(a) for a in item.get("authors", [])],
        enclosures=[
            FeedParserDict(href=a["url"], type=a.get("mime_type")) for a in item.get("attachments", [])
        ],
    )


def parse(body: bytes) -> FeedParserDict:
    if not is_json(body):
        return feedparser.parse(body)
    doc = json.loads(body)
    links = [FeedParserDict(rel="self", href=doc["feed_url"])] if "feed_url" in doc else []
    links += [FeedParserDict(rel="alternate", href=doc["home_page_url"])] if "home_page_url" in doc else []
    links += [FeedParserDict(rel="prev-archive", href=doc["next_url"])] if "next_url" in doc else []
    links += [FeedParserDict(rel="hub", href=hub["url"]) for hub in doc.get("hubs", [])]
    items = doc.get("items", [])
    updated = max((i["date_modified"] for i in items if "date_modified" in i), default=None)
    feed = FeedParserDict(
        title=doc.get("title", ""),
        subtitle=doc.get("description", ""),
        language=doc.get("language"),
        links=links,
        updated=updated,
        updated_parsed=_date(updated),
    )
    return FeedParserDict(bozo=False, feed=feed, entries=[_item(i) for i in items], version="json11")
