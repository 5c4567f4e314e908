"""Telling others that documents changed: WebSub publishes and cache purges, once per change.

Every worker process runs a :class:`Notifier` on a thread of its own. It wakes when the site
applies a change (a reload hook) and when an embargoed article comes out (the view's
``valid_until``: no file changes then), lets a burst of changes settle, and looks at the
documents the change touched (:mod:`feeds.changes`; every document at the first look), each by
its key, what its bytes show (:mod:`feeds.inventory`): a key moves exactly when the bytes do,
so nothing is rendered to find out (but robots.txt, which a file of ``static/`` may stand in
for, and which is rendered and known by its ETag). One whose token (the digest of its key)
differs from the version last announced is claimed in the ledger that all workers share
(:meth:`~feeds.ledger.Ledger.claim_change`): exactly one claim wins, and only that worker
notifies the hubs (``websub.hubs``, subscription documents) and purges the caches
(``cache.purge``, every changed or vanished document).

Deliveries go through an :class:`Outbox`: one sending thread per destination host (a slow hub
delays nobody else), a timeout on every request, retries with exponential backoff, and a newer
change superseding a retry still waiting. Requests never touch any of this and reload hooks
only set an event, so neither ever waits for a hub. The outbox knows nothing of WebSub: a
:class:`Delivery` is a method, a URL, a body and headers, so cache purges can use it too.

Limits: a delivery still waiting for its retry when its process exits is lost (the claim is
already recorded). Workers that apply a burst of changes in different steps may each announce
a different intermediate version; the hub fetches the current document either way. A change is
announced once the index holds it: a hub or cache that asks while an entry's file is already
being rewritten again gets the document without it (not kept), and the rewrite is announced
in turn. The ledger of a version that announced by ETag holds other tokens: the first look
after upgrading to keys announces every feed, feed page and site document once.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Hashable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from email.message import Message
from typing import IO
from urllib.parse import urlencode, urlsplit

from . import changes, inventory
from .site import Site

log = logging.getLogger(__name__)

DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)  # seconds before each retry: 8 attempts in all
TIMEOUT = 10.0  # seconds for one request
DEBOUNCE = 0.2  # seconds without a change before a pass
SETTLE_MAX = 2.0  # a steady stream of changes still gets a pass this often
INCOMPLETE_RETRY = 1.0  # a document missing an entry being written is looked at again after this
RECHECK_MAX = 60.0  # an embargo far off: the clock is looked at again after this
READ_MAX = 65536  # bytes of an answer read (its status is what counts)
USER_AGENT = "feeds (WebSub publisher)"
FORM = "application/x-www-form-urlencoded"
# What a look saw of a document: its key, its token (the key's digest, or the ETag of its
# bytes), and whether that is an ETag (the key was not exact, so it was rendered).
Seen = tuple[Hashable, str | None, bool]
# Sending threads with a host of their own, per process. The config allows 16 hubs and 16 caches;
# hosts dropped by a reload keep their idle thread, so more hosts can come over time.
LANES = 32


@dataclass(frozen=True)
class Delivery:
    """One request, sent until it is answered with a 2xx or its retries run out.

    Equal deliveries are one: a new one replaces an equal one still waiting for its retry.
    """

    method: str
    url: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    kind: str = "request"  # for the log: what it is ...
    about: str = ""  # ... and what changed (a feed's URL)


def purge(cache: str, path: str, host: str) -> Delivery:
    """A PURGE of ``path`` at ``cache``, for the host clients ask it for (the cache's key)."""
    return Delivery("PURGE", cache.rstrip("/") + path, b"", (("Host", host),), "cache purge", path)


def publish(hub: str, topic: str) -> Delivery:
    """A WebSub publish notification to ``hub`` that ``topic`` changed.

    WebSub leaves the publish request to each hub; they take a form with ``hub.mode=publish``
    and the topic as ``hub.url`` (PubSubHubbub 0.4 hubs) or ``hub.topic`` (others): both go.
    """
    body = urlencode({"hub.mode": "publish", "hub.url": topic, "hub.topic": topic}).encode()
    return Delivery("POST", hub, body, (("Content-Type", FORM),), "WebSub publish", topic)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would arrive as a GET (urllib's rule): report the status instead."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def send(delivery: Delivery, timeout: float) -> str | None:
    """Send ``delivery`` once: None if it was answered with a 2xx, otherwise what went wrong."""
    request = urllib.request.Request(
        delivery.url,
        data=delivery.body,
        headers={"User-Agent": USER_AGENT, **dict(delivery.headers)},
        method=delivery.method,
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(READ_MAX)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return str(exc.reason)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None if 200 <= status < 300 else f"HTTP {status}"


class Outbox:
    """Deliveries on their way: one sending thread per destination host, started when needed.

    ``delays`` are the seconds before each retry (so ``len(delays) + 1`` attempts in all). The
    first ``lanes`` hosts get a thread each; deliveries to any further host share one more
    thread, so a process never runs more than ``lanes + 1`` of them.
    """

    def __init__(
        self, delays: Sequence[float] = DELAYS, timeout: float = TIMEOUT, lanes: int = LANES
    ) -> None:
        self._delays = tuple(delays)
        self._timeout = timeout
        self._most = lanes
        self._lanes: dict[str, _Lane] = {}
        self._shared: _Lane | None = None
        self._lock = threading.Lock()
        self._closed = False

    def fresh(self) -> Outbox:
        """An empty outbox with the same settings."""
        return Outbox(self._delays, self._timeout, self._most)

    def put(self, delivery: Delivery) -> None:
        host = urlsplit(delivery.url).netloc
        with self._lock:
            if self._closed:
                return
            lane = self._lanes.get(host)
            if lane is None and len(self._lanes) < self._most:
                lane = self._lanes[host] = _Lane(host, self._delays, self._timeout)
            elif lane is None:
                if self._shared is None:
                    log.warning(
                        "more than %d hosts to send to; %s and any further ones share one sending thread",
                        self._most,
                        host,
                    )
                    self._shared = _Lane("(shared)", self._delays, self._timeout)
                lane = self._shared
        lane.put(delivery)

    def _all(self) -> list[_Lane]:
        with self._lock:
            return [*self._lanes.values(), *([self._shared] if self._shared else [])]

    def join(self, timeout: float) -> bool:
        """Wait until nothing is waiting or being sent; False if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        return all(lane.join(deadline - time.monotonic()) for lane in self._all())

    def close(self, timeout: float = 1.0) -> None:
        """Drop what is waiting and stop the threads (a request under way runs out by itself)."""
        with self._lock:
            self._closed = True
        for lane in self._all():
            lane.close(timeout)


class _Lane:
    """The deliveries to one host, sent one at a time, each retried on its own schedule."""

    def __init__(self, host: str, delays: tuple[float, ...], timeout: float) -> None:
        self._delays = delays
        self._timeout = timeout
        self._cond = threading.Condition()
        self._waiting: dict[Delivery, tuple[int, int]] = {}  # delivery -> (ticket, attempt)
        self._due: list[tuple[float, int, Delivery]] = []  # heap of (when, ticket, delivery)
        self._tickets = itertools.count()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"feeds-send {host}", daemon=True)
        self._thread.start()

    def put(self, delivery: Delivery) -> None:
        with self._cond:
            self._schedule(delivery, 1, time.monotonic())
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._waiting and not self._busy, max(0.0, timeout))

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _schedule(self, delivery: Delivery, attempt: int, when: float) -> None:
        """Queue ``delivery``; an equal one already waiting is replaced (its ticket goes stale)."""
        ticket = next(self._tickets)
        self._waiting[delivery] = (ticket, attempt)
        heapq.heappush(self._due, (when, ticket, delivery))

    def _next(self) -> tuple[Delivery, int] | None:
        with self._cond:
            while not self._closed:
                while self._due and self._waiting.get(self._due[0][2], (-1, 0))[0] != self._due[0][1]:
                    heapq.heappop(self._due)  # superseded by a newer equal delivery
                wait = self._due[0][0] - time.monotonic() if self._due else None
                if wait is not None and wait <= 0:
                    delivery = heapq.heappop(self._due)[2]
                    self._busy = True
                    return delivery, self._waiting.pop(delivery)[1]
                self._cond.notify_all()  # for join(): nothing is due now
                self._cond.wait(wait)
            return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            delivery, attempt = item
            try:
                error = send(delivery, self._timeout)
            except Exception as exc:  # a bug here must not end the lane
                log.exception("%s of %s to %s failed", delivery.kind, delivery.about, delivery.url)
                error = f"{type(exc).__name__}: {exc}"
            self._done(delivery, attempt, error)

    def _done(self, delivery: Delivery, attempt: int, error: str | None) -> None:
        d = delivery
        with self._cond:
            self._busy = False
            self._cond.notify_all()
            if error is None:
                log.info("%s of %s to %s: sent", d.kind, d.about, d.url)
            elif d in self._waiting:
                log.warning("%s of %s to %s failed (%s); a newer one waits", d.kind, d.about, d.url, error)
            elif attempt > len(self._delays) or self._closed:
                log.error(
                    "%s of %s to %s failed (%s); gave up after %d attempts",
                    d.kind,
                    d.about,
                    d.url,
                    error,
                    attempt,
                )
            else:
                delay = self._delays[attempt - 1]
                self._schedule(d, attempt + 1, time.monotonic() + delay)
                log.warning(
                    "%s of %s to %s failed (%s); attempt %d of %d, next in %g s",
                    d.kind,
                    d.about,
                    d.url,
                    error,
                    attempt,
                    len(self._delays) + 1,
                    delay,
                )


class Notifier:
    """Announces each changed document to the hubs and the caches of the config, once per change.

    :meth:`start` runs it on a daemon thread; :meth:`sweep` is one pass, for tests.
    """

    def __init__(self, site: Site, outbox: Outbox | None = None, *, debounce: float = DEBOUNCE) -> None:
        self._site = site
        self._outbox = outbox or Outbox()
        self._debounce = debounce
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seen: dict[str, Seen] = {}
        self._mark: changes.Mark | None = None  # where the last look left off
        self._pending: list[inventory.Entry] = []  # documents being written at the last look
        self._incomplete = False
        # One process of a state folder announces; the others' notifiers stay idle until it is gone.
        self._lead = site.ledger.leadership()
        self._thread = threading.Thread(target=self._run, name="feeds-notify", daemon=True)

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    def start(self) -> Notifier:
        self._site.reload_hooks.append(self.wake)
        self._thread.start()
        return self

    def wake(self, applied: bool = True) -> None:
        """A reload hook: a pass soon (after the burst settles), never any work here."""
        if applied:
            self._wake.set()

    def forked(self) -> Notifier:
        """A new notifier for a forked child, where this one's threads do not exist."""
        self._site.reload_hooks.remove(self.wake)
        return Notifier(self._site, self._outbox.fresh(), debounce=self._debounce).start()

    def close(self, timeout: float = 2.0) -> None:
        with suppress(ValueError):
            self._site.reload_hooks.remove(self.wake)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._lead.release()
        self._outbox.close(timeout)

    def sweep(self) -> list[str]:
        """Look at the documents a change can have touched (every document at the first look,
        or when :func:`changes.plan` cannot tell); the URLs whose change this process announced."""
        site = self._site
        config = site.config
        if not (config.hubs or config.purge) or not self._lead.take():
            self._seen, self._incomplete, self._mark, self._pending = {}, False, None, []
            return []
        planned = changes.plan(site, self._mark, self._seen.__contains__) if self._mark is not None else None
        if planned is None:
            started = time.perf_counter()
            mark = changes.mark(site)  # before the look: what changes meanwhile is looked at next
            documents = list(inventory.subscription_documents(site))
            if config.purge:  # a cache holds every other document too
                documents += inventory.other_documents(site)
            first, seen = not self._seen, dict[str, Seen]()
            claimed, pending = self._look(documents, seen, first)
            listed = {entry.url for entry in documents}
            gone = [  # no row for a page never changed before: new=True, or its deletion is missed
                url for url in self._seen if url not in listed and site.ledger.claim_change(url, "", new=True)
            ]
            self._seen = seen
            log.info(
                "notifier: looked at every document (%d) in %.1f s; after this, at what each change touches",
                len(seen),
                time.perf_counter() - started,
            )
        else:
            mark, documents = planned.mark, planned.documents
            if not config.purge:  # hubs only: the feeds
                feeds = set(inventory.feed_urls(site))
                documents = [entry for entry in documents if entry.url in feeds]
            listed = {entry.url for entry in documents}
            documents += [entry for entry in self._pending if entry.url not in listed]
            claimed, pending = self._look(documents, self._seen, False)
            gone = []
            for url in planned.gone:
                if url in self._seen and url not in listed:
                    del self._seen[url]
                    if site.ledger.claim_change(url, "", new=True):
                        gone.append(url)
        self._mark, self._pending, self._incomplete = mark, pending, bool(pending)
        self._announce(claimed, gone)
        return claimed + gone

    def _look(
        self, documents: list[inventory.Entry], seen: dict[str, Seen], first: bool
    ) -> tuple[list[str], list[inventory.Entry]]:
        """Compare each document with what the last look saw (recorded in ``seen``); the URLs
        this process is to announce, and the documents to look at again (being written).

        A moved key is trusted when it is exact and the last look knew the document by its key
        too; otherwise the document is rendered and its ETag compared (a key with an unknown
        summary digest, or one that was: touching a file after a cold start gives its entry a
        summary digest, which moves the key of a summary-only feed that does not change).
        """
        ledger = self._site.ledger
        claimed: list[str] = []
        pending: list[inventory.Entry] = []
        for entry in documents:
            before = self._seen.get(entry.url)
            if entry.key is not None and before is not None and before[0] == entry.key:
                seen[entry.url] = before  # what it shows is as it was: no render
                continue
            rendered = entry.etag is not None and (not entry.exact or (before is not None and before[2]))
            if entry.key is not None and not rendered:  # its key says it all
                token = inventory.digest(entry.key)
                seen[entry.url] = (entry.key, token, False)
                # The first look records the few documents (a change since the last announcing
                # worker's look is announced) and only learns the many (a million pages, no
                # ledger rows); a page that appears later may be cached as a 404, so it counts
                # as changed.
                if (entry.recorded or not first) and ledger.claim_change(entry.url, token, new=not first):
                    claimed.append(entry.url)
                continue
            try:  # rendered: its ETag tells whether its bytes changed
                etag = entry.etag() if entry.etag is not None else None
            except Exception:  # as a request for it would fail; the others still count
                log.exception("notifier: %s could not be rendered", entry.url)
                continue
            if etag is None:  # an entry's file is being written: look again soon
                pending.append(entry)
                if before is not None:
                    seen[entry.url] = before
                continue
            # Known by its key from now on if that is exact (the ledger keeps the ETag: the next
            # moved key differs from it, as it should).
            seen[entry.url] = (
                (entry.key, inventory.digest(entry.key), False) if entry.exact else (entry.key, etag, True)
            )
            if (before is None or before[1] != etag) and ledger.claim_change(entry.url, etag, new=not first):
                claimed.append(entry.url)
        return claimed, pending

    def _announce(self, claimed: list[str], gone: list[str]) -> None:
        config = self._site.config
        if config.hubs:
            feeds = set(inventory.feed_urls(self._site))
            topics = [url for url in claimed if url in feeds]
            if topics:
                log.info("%d feed document(s) changed; notifying %d hub(s)", len(topics), len(config.hubs))
            for url in topics:
                for hub in config.hubs:
                    self._outbox.put(publish(hub, url))
        changed = claimed + gone
        if changed and config.purge:
            log.info("%d document(s) changed; purging them from %d cache(s)", len(changed), len(config.purge))
            host = urlsplit(config.url).netloc
            for url in changed:
                for cache in config.purge:
                    self._outbox.put(purge(cache, inventory.path_of(url), host))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("WebSub notifier: a pass failed; trying again at the next change")
            self._sleep()

    def _sleep(self) -> None:
        """Until a change has settled, an embargo ends, or a document being written is done."""
        timeout = self._until_release()
        if self._incomplete:
            timeout = min(timeout, INCOMPLETE_RETRY)
        if not self._wake.wait(None if math.isinf(timeout) else timeout):
            return
        deadline = time.monotonic() + SETTLE_MAX
        self._wake.clear()
        while not self._stop.is_set() and self._wake.wait(self._debounce) and time.monotonic() < deadline:
            self._wake.clear()

    def _until_release(self) -> float:
        """Seconds until the next embargoed article comes out, or the news sitemap's oldest
        article turns 48 hours old (inf: nothing is waiting)."""
        try:
            until = self._site.view().valid_until
        except Exception:
            log.exception("WebSub notifier: no view of the site")
            return RECHECK_MAX
        if until is None:
            return math.inf
        left = (until - self._site.now()).total_seconds()
        return min(max(left, 0.0) + 0.01, RECHECK_MAX)
