"""A rendered document: the bytes to send in both encodings, with their validators."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from datetime import datetime

HTML = "text/html; charset=utf-8"


class _Compressed:
    """A document's gzip bytes, made on first use and shared by its dated copies.

    Compressing a 150 KB feed takes longer than a fifth of rendering it, and a document
    replaced by the next change before any client asked for gzip never needs it.
    """

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: bytes | None = None

    def of(self, body: bytes) -> bytes:
        if self.data is None:  # two threads at once both compress: the same bytes either way
            # mtime=0 keeps the gzip header free of the clock: same bytes on every machine.
            self.data = gzip.compress(body, compresslevel=6, mtime=0)
        return self.data


@dataclass(frozen=True)
class Document:
    """Bytes ready to send, in both encodings (gzip made on first use), with their validators.

    ``etag`` is the unquoted strong tag of the identity bytes; the gzip bytes are served as
    ``<etag>-gzip`` so the two representations never share a strong tag (RFC 9110 8.8.3).
    ``complete`` is False when an entry had to be left out because its file is being written:
    such a document is sent once, uncacheable, and never kept. ``note`` says how a feed was
    trimmed to stay under its ``max_bytes``. ``links`` go into an HTTP ``Link`` header
    (WebSub §4: a subscriber may find the hub from the headers without parsing the body).
    ``nosniff`` asks browsers to keep to ``mimetype`` (files of ``static/``, served as found).
    """

    body: bytes
    etag: str
    last_modified: datetime
    mimetype: str
    max_age: int
    natural: datetime  # the newest entry's date, before the ledger kept it from going back
    complete: bool = True
    note: str = ""
    links: tuple[tuple[str, str], ...] = ()  # (rel, absolute URL)
    stale_while_revalidate: int = 0  # RFC 5861, for caches in front
    stale_if_error: int = 0
    nosniff: bool = False
    compressed: _Compressed = field(default_factory=_Compressed, compare=False, repr=False)

    @property
    def gzipped(self) -> bytes:
        """The body gzip-compressed (level 6, no timestamp): the same bytes in every process."""
        return self.compressed.of(self.body)

    @property
    def cache_control(self) -> str:
        stale = [
            f"{name}={seconds}"
            for name, seconds in (
                ("stale-while-revalidate", self.stale_while_revalidate),
                ("stale-if-error", self.stale_if_error),
            )
            if seconds
        ]
        return ", ".join([f"public, max-age={self.max_age}", *stale])


def make_document(
    body: bytes,
    mimetype: str,
    modified: datetime,
    max_age: int,
    complete: bool = True,
    note: str = "",
    links: tuple[tuple[str, str], ...] = (),
    stale: tuple[int, int] = (0, 0),
) -> Document:
    """``stale``: seconds a cache may serve it stale while revalidating, and while the origin fails."""
    return Document(
        body=body,
        etag=hashlib.sha256(body).hexdigest()[:32],
        last_modified=modified.replace(microsecond=0),
        mimetype=mimetype,
        max_age=max_age,
        natural=modified.replace(microsecond=0),
        complete=complete,
        note=note,
        links=links,
        stale_while_revalidate=stale[0],
        stale_if_error=stale[1],
    )
