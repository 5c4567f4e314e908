"""Turn article bodies into safe, self-contained HTML and plain text.

Feed readers show entry HTML outside our site, so everything that leaves here is sanitized,
has absolute URLs and contains only characters XML 1.0 allows.
"""

from __future__ import annotations

import ctypes
import html
import re
from collections.abc import Callable
from functools import cache, lru_cache

import nh3
from cmarkgfm import _cmark
from cmarkgfm.cmark import (
    Options,
    core_extensions_ensure_registered,
    find_syntax_extension,
    markdown_to_html_with_extensions,
    parser_attach_syntax_extension,
    parser_feed,
    parser_finish,
    parser_free,
    parser_get_syntax_extensions,
)

# XML 1.0 forbids C0 controls except tab/LF/CR, and U+FFFE/U+FFFF; C1 controls are legal
# but never meaningful in UTF-8 text and some validators reject them.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff\ud800-\udfff]")
_CONTROL_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_ILLEGAL_UTF8 = re.compile(rb"\xc2[\x80-\x84\x86-\x9f]|\xef\xbf[\xbe\xbf]")  # C1, U+FFFE, U+FFFF
_CHAR_REFERENCE = re.compile(r"&#(x[0-9a-fA-F]{1,8}|X[0-9a-fA-F]{1,8}|[0-9]{1,10});")
_CLOSING = tuple(".!?:;…\"“”»«'’)")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*(:?-{2,}:?\s*)?)*\|?\s*$")
_SUBHEADING_MAX = 80
_SCHEMES = {"http", "https", "mailto"}
_BLOCK_EDGE = re.compile(
    r"</?(?:address|article|aside|blockquote|br|dd|div|dl|dt|figcaption|figure|footer|h[1-6]|header"
    r"|hr|li|main|nav|ol|p|pre|section|table|tbody|td|tfoot|th|thead|tr|ul)\b[^>]*>",
    re.IGNORECASE,
)


def clean_text(text: str, replacement: str = "") -> str:
    """Drop (or replace) characters that would make feedgen (and XML) refuse the document."""
    # Every character the pattern names is unprintable; a one-line title or name mostly is
    # printable, and telling so is many times cheaper than the search.
    return text if text.isprintable() else _ILLEGAL.sub(replacement, text)


def is_clean_utf8(data: bytes) -> bool:
    """Whether UTF-8 ``data``, however decoded (strict, or invalid bytes replaced), gives text
    :func:`clean_text` leaves as it is; False only means "look at the text".

    A forbidden character decodes only from its own encoding (control bytes from themselves,
    never from inside a sequence; nothing decodes to a surrogate), and dropping control bytes is
    a tenth of the cost of searching the decoded text of an article.
    """
    if len(data.translate(None, _CONTROL_BYTES)) != len(data):
        return False
    return (b"\xc2" not in data and b"\xef\xbf" not in data) or _ILLEGAL_UTF8.search(data) is None


def is_clean(text: str) -> bool:
    """True if ``text`` holds no character XML 1.0 forbids (what :func:`clean_text` removes)."""
    return text.isprintable() or _ILLEGAL.search(text) is None  # as clean_text tells


def _safe_reference(match: re.Match[str]) -> str:
    code = int(match[1][1:], 16) if match[1][0] in "xX" else int(match[1])
    legal = (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )
    return match[0] if legal and not 0x7F <= code <= 0x9F else "&#xFFFD;"


def markdown_to_html(source: str) -> str:
    """CommonMark with tables (GitHub's cmark); raw HTML is kept here and sanitized later."""
    # cmark turns "&#xFFFE;" into bytes that are not UTF-8 (and "&#1;" into a control
    # character): references to characters XML forbids become U+FFFD first.
    source = _CHAR_REFERENCE.sub(_safe_reference, source)
    freeing = _freeing()
    if freeing is None:
        html: str = markdown_to_html_with_extensions(source, options=_OPTIONS, extensions=["table"])
        return html
    return _cmark_html(source, *freeing)


_OPTIONS = Options.CMARK_OPT_UNSAFE
_Free = Callable[[int], None]


@cache
def _freeing() -> tuple[_Free, _Free] | None:
    """cmark's ``cmark_node_free`` and the C library's ``free``, which cmarkgfm's own wrapper
    never calls: it leaks every syntax tree and every HTML string (about 17 KB a body, GBs over
    a large archive; theacodes/cmarkgfm#53). None where they cannot be found."""
    try:
        node_free = ctypes.CDLL(_cmark.__file__).cmark_node_free
        free = ctypes.CDLL(None).free
    except (OSError, AttributeError):
        return None
    node_free.argtypes, node_free.restype = [ctypes.c_void_p], None
    free.argtypes, free.restype = [ctypes.c_void_p], None
    return node_free, free


def _address(pointer: object) -> int:
    return int(_cmark.ffi.cast("uintptr_t", pointer))


def _cmark_html(source: str, node_free: _Free, free: _Free) -> str:
    """What ``markdown_to_html_with_extensions(source, CMARK_OPT_UNSAFE, ["table"])`` gives,
    with the syntax tree and the rendered string freed."""
    core_extensions_ensure_registered()
    parser = _cmark.lib.cmark_parser_new(_OPTIONS)
    try:
        parser_attach_syntax_extension(parser, find_syntax_extension("table"))
        parser_feed(parser, source)
        root = parser_finish(parser)
        try:
            raw = _cmark.lib.cmark_render_html(root, _OPTIONS, parser_get_syntax_extensions(parser))
            try:
                return str(_cmark.ffi.string(raw).decode("utf-8"))
            finally:
                free(_address(raw))
        finally:
            node_free(_address(root))
    finally:
        parser_free(parser)


def plain_to_html(source: str) -> str:
    """Render the newsroom's plain export: one paragraph a line, subheadings, pipe tables."""
    lines = [line.strip() for line in source.split("\n")]
    lines = [line for line in lines if line]
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "|" in line and i + 1 < len(lines) and _TABLE_SEPARATOR.match(lines[i + 1]):
            j = i + 2
            while j < len(lines) and "|" in lines[j] and not _TABLE_SEPARATOR.match(lines[j]):
                j += 1
            out.append(_table(lines[i], lines[i + 2 : j]))
            i = j
            continue
        if _is_subheading(line) and i + 1 < len(lines):
            out.append(f"<h2>{html.escape(line, quote=False)}</h2>")
        else:
            out.append(f"<p>{html.escape(line, quote=False)}</p>")
        i += 1
    return "\n".join(out) + ("\n" if out else "")


def _is_subheading(line: str) -> bool:
    return len(line) <= _SUBHEADING_MAX and not line.endswith(_CLOSING) and "|" not in line


def _cells(row: str) -> list[str]:
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|"):
        row = row[:-1]
    return [cell.strip() for cell in row.split("|")]


def _table(header: str, rows: list[str]) -> str:
    head = _cells(header)
    width = len(head)
    body = [(_cells(r) + [""] * width)[:width] for r in rows]

    def tr(cells: list[str], tag: str) -> str:
        return "<tr>" + "".join(f"<{tag}>{html.escape(c, quote=False)}</{tag}>" for c in cells) + "</tr>"

    parts = ["<table>", "<thead>", tr(head, "th"), "</thead>"]
    if body:
        parts += ["<tbody>", *(tr(r, "td") for r in body), "</tbody>"]
    parts.append("</table>")
    return "\n".join(parts)


@lru_cache(maxsize=8)
def _cleaner(base_url: str) -> nh3.Cleaner:
    return nh3.Cleaner(
        url_schemes=_SCHEMES,
        url_relative=("rewrite_with_base", base_url),
        clean_content_tags={"script", "style"},
        link_rel="noopener noreferrer",
    )


@lru_cache(maxsize=1)
def _text_cleaner() -> nh3.Cleaner:
    """No tags at all: only text is left. Built once; ``nh3.clean`` builds one per call."""
    return nh3.Cleaner(tags=set(), clean_content_tags={"script", "style"})


def sanitize(fragment: str, base_url: str, image_src: Callable[[str], str | None] | None = None) -> str:
    """Remove scripts, handlers and unsafe URLs; resolve relative links against the site.

    ``image_src`` decides where each ``<img src>`` points instead (None: the attribute goes).
    It must return an absolute http(s) URL or the value it was given when that is absolute:
    ammonia checks the scheme before the filter runs, not after. Only fragments with an image
    pay for the filter (a call into Python per attribute).
    """
    if image_src is None or "<img" not in fragment.lower():
        return clean_text(_cleaner(base_url).clean(fragment))

    def attribute(element: str, name: str, value: str) -> str | None:
        return image_src(value) if element == "img" and name == "src" else value

    cleaner = nh3.Cleaner(
        url_schemes=_SCHEMES,
        url_relative=("rewrite_with_base", base_url),
        clean_content_tags={"script", "style"},
        link_rel="noopener noreferrer",
        attribute_filter=attribute,
    )
    return clean_text(cleaner.clean(fragment))


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment, whitespace collapsed (for summaries and titles)."""
    return collapse_space(_text(fragment))


def text_start(fragment: str, length: int) -> str:
    """``html_to_text(fragment)[:length]``, collapsing only as much of the text as that takes.

    A derived summary keeps the first 280 characters of a text ten times as long. The
    collapsed start of any prefix of a text is a prefix of the whole text collapsed (words
    are joined the same way; only a word cut at the end may be short), so once a prefix
    yields ``length`` characters, the rest cannot change them.
    """
    text = _text(fragment)
    end = 2 * length
    while True:
        start = collapse_space(text[:end])
        if len(start) >= length or end >= len(text):
            return start[:length]
        end *= 2


def _text(fragment: str) -> str:
    # Stripping tags would glue "<p>a</p><p>b</p>" into "ab": space the blocks apart first.
    spaced = _BLOCK_EDGE.sub(" ", fragment)
    return html.unescape(_text_cleaner().clean(spaced))


def collapse_space(text: str) -> str:
    """Every run of whitespace one space, none at either end.

    ``str.split()`` splits at exactly the characters ``re``'s ``\\s`` matches in a str pattern
    (both ask ``str.isspace``), so this equals ``re.sub(r"\\s+", " ", text).strip()``, at a
    tenth of its cost on article-length text: a regex substitution per word was the largest
    share of rendering a summary.
    """
    return " ".join(text.split())


def shorten(text: str, limit: int = 280) -> str:
    """Cut at a word boundary so a derived summary never ends mid-word."""
    text = collapse_space(text)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:-–—")
    return cut + " …"
