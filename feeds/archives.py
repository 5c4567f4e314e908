"""RFC 5005 archived feeds: which entries each archive page of a feed holds.

A reader that subscribes late, or was offline, walks ``prev-archive`` from the subscription
document and must meet every entry exactly once, while caches keep full pages for a day. So
pages are counted from the oldest entry: publishing only ever adds to the newest page, and a
full page keeps its entries (and its bytes) until history itself is rewritten (an old article
edited, deleted or back-dated).
"""

from __future__ import annotations

ARCHIVE_MAX_AGE = 24 * 60 * 60  # full archive pages change only when history is rewritten


def archive_pages(total: int, per_page: int) -> int:
    """How many archive pages a feed of ``total`` entries has (RFC 5005 archived feeds).

    The subscription document holds the newest ``per_page`` entries; everything older is cut
    into pages of ``per_page`` counted from the oldest, so a new article only ever changes the
    newest archive page, and every entry is in exactly one document.
    """
    return -(-max(0, total - per_page) // per_page)


def archive_slice(total: int, per_page: int, page: int) -> slice:
    """Where archive page ``page`` (1: the oldest) lies in the newest-first list of entries."""
    older = total - per_page
    return slice(total - min(page * per_page, older), total - (page - 1) * per_page)
