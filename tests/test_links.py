"""Addresses: the shortcut for joining plain paths to the site's URL answers as urljoin does."""

from __future__ import annotations

from urllib.parse import urljoin

from hypothesis import example, given
from hypothesis import strategies as st

from feeds.links import join

_SEGMENT = st.text(alphabet="aZ0._~%-:;?#@ ", min_size=0, max_size=6)
_BASE_PATH = st.lists(_SEGMENT, max_size=4).map("/".join)


@st.composite
def bases(draw: st.DrawFn) -> str:
    """Site URLs as operators write them, and some they should not (dot and empty segments,
    a query, a fragment, no "/" at the end, another scheme)."""
    scheme = draw(st.sampled_from(["https", "http", "ftp", "feed"]))
    host = draw(st.sampled_from(["example.org", "EXAMPLE.org:8080", "user@host", "[::1]"]))
    tail = draw(st.sampled_from(["", "/", "?q=1", "#top", ";p", "/?q/"]))
    return f"{scheme}://{host}/{draw(_BASE_PATH)}{tail}"


@given(bases(), st.lists(_SEGMENT, min_size=1, max_size=5).map("/".join))
@example("https://example.org/news/", "artikel/2024/a.b")
@example("https://example.org/news/", "./a")
@example("https://example.org/news/", "a/../b")
@example("https://example.org/news/", "a//b")
@example("https://example.org/a//b/", "c")
@example("https://example.org/a/./b/", "c")
@example("https://example.org/news", "a")
@example("https://example.org/news/?q=1", "a")
@example("https://example.org/news/", "javascript:alert(1)")
@example("https://example.org/news/", "/root")
@example("https://example.org/news/", "a/")
def test_join_answers_as_urljoin(base: str, path: str) -> None:
    assert join(base, path) == urljoin(base, path)
