"""Article bodies for the entries a document shows: complete, or not at all.

The index keeps metadata only, so a document reads the bodies of its entries when it is
rendered. The file may have changed since its metadata was read (a writer is rewriting it right
now, or the watcher has not yet caught up), and half a body would be published as a whole
entry. So a body is only ever taken from bytes of exactly the version the index holds: rendered
earlier and still in memory, handed over when the index read the file, or read again unchanged.
When none of those exists, the entry is *unsettled* and the caller leaves it out of a document
that is then not cached, instead of serving it hollow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from .articles import Article, Meta, Stamp, complete, read_body
from .config import SiteConfig
from .parsing import parse_meta
from .sources import Refused, read_source

log = logging.getLogger(__name__)
RENDERED = 2048  # rendered articles kept (a feed shows up to a few hundred distinct ones)
RAW_CHARS = 32 * 1024 * 1024  # bodies as read (with their metadata, or for a render), by version
SETTLE_SECONDS = 2.0  # unwatched: a file unchanged this long is no longer being written
SETTLE_WATCHED = 60.0  # watched: the writer's close brings the new version; wait for it


class Bodies:
    """Bodies by file version: as read (kept across config reloads) and as rendered."""

    def __init__(self, config: SiteConfig, missing: Callable[[str], None] = lambda rel: None) -> None:
        self.config = config
        self.watched = False
        self._missing = missing  # told of a file that is gone or refused: the index reads it again
        # By version and digest: a picture beside the article changes its entry, not its file.
        self._rendered: OrderedDict[tuple[str, Stamp, int], Article] = OrderedDict()
        self._raw: OrderedDict[tuple[str, Stamp], str] = OrderedDict()
        self._raw_chars = 0
        self._lock = threading.Lock()

    def configure(self, config: SiteConfig) -> None:
        """A new config: bodies as read stay; renders go if links or ids would differ."""
        with self._lock:
            old, self.config = self.config, config
            if (old.url, old.timezone, old.author) != (config.url, config.timezone, config.author):
                self._rendered.clear()

    def offer(self, meta: Meta, body: str) -> None:
        """Keep the body read together with ``meta``: the file may change again before a render."""
        with self._lock:
            self._keep((meta.path, meta.version), body)

    def article(self, meta: Meta) -> Article | None:
        """The complete article for ``meta``'s version, or None while it is unsettled."""
        if isinstance(meta, Article):  # an index built in memory (tests, tools): nothing to read
            return meta
        key = (meta.path, meta.version)
        with self._lock:
            found = self._rendered.get((*key, meta.digest))
            if found is not None:
                self._rendered.move_to_end((*key, meta.digest))
                return found
            body = self._raw.get(key)
            config = self.config
        if body is None:
            loaded = self._load(meta, config)
            if loaded is None:
                return None
            meta, body = loaded
        article = complete(meta, body, config)
        with self._lock:
            self._keep((meta.path, meta.version), body)
            if config is self.config:
                self._rendered[(meta.path, meta.version, meta.digest)] = article
                while len(self._rendered) > RENDERED:
                    self._rendered.popitem(last=False)
        return article

    def _keep(self, key: tuple[str, Stamp], body: str) -> None:
        if len(body) > RAW_CHARS // 8:
            return
        old = self._raw.pop(key, None)
        self._raw_chars += len(body) - (len(old) if old is not None else 0)
        self._raw[key] = body
        while self._raw_chars > RAW_CHARS:
            self._raw_chars -= len(self._raw.popitem(last=False)[1])

    def _load(self, meta: Meta, config: SiteConfig) -> tuple[Meta, str] | None:
        """Read the body of ``meta`` again; a newer version only once its writer is done."""
        try:
            source = read_source(config.articles_dir, meta.path, config.max_article_bytes)
        except OSError as exc:
            log.warning("article body unavailable, entry left out for now: %s: %s", meta.path, exc)
            if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | Refused):
                self._missing(meta.path)
            return None
        body = read_body(source, meta)
        if body is not None:
            return meta, body
        quiet = time.time() - source.stamp.mtime_ns / 1e9
        if quiet < (SETTLE_WATCHED if self.watched else SETTLE_SECONDS):
            return None  # being rewritten: its writer's close will bring the new version
        # Changed, and quiet long enough to be finished (no watcher, or an event was lost): the
        # new version, metadata and body from the same bytes, until the index reads it too.
        fresh, fresh_body, _ = parse_meta(source, config, teaser=False)
        if fresh is None or fresh.id != meta.id:
            return None
        return replace(
            fresh, published=meta.published, updated=max(fresh.updated, meta.published)
        ), fresh_body
