"""The web edge: documents answered straight from WSGI, everything else through Flask.

Feeds, pages and the index are nearly all of the traffic, and almost all of it is polling.
:class:`DocumentApp` answers those from the cached :class:`~feeds.site.Document` with header
lists built once per document, so a 304 or a cached 200 costs a dict lookup and a comparison.
When the validators are anything but an exact copy of ours, the decision is Werkzeug's
``is_resource_modified`` (If-None-Match wins over If-Modified-Since, weak comparison, ``*``,
lists, unparsable dates ignored). Health, metrics and 404s go through Flask.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date, parse_accept_header
from werkzeug.sansio.http import is_resource_modified
from werkzeug.wrappers import Request

from . import catalogue
from .budget import POLLED, Budget
from .documents import Document
from .draining import Draining
from .errors import NotFound, Unsettled
from .logs import AccessLog, StartResponse
from .metrics import Metrics
from .site import Site

bp = Blueprint("feeds", __name__)
_ALLOW = [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")]
_NO_STORE = ("Cache-Control", "no-store")
ANSWERS_KEPT = 8192  # header sets kept, one per URL (feeds, the index, popular pages)
ENCODINGS_KEPT = 1024  # distinct Accept-Encoding values parsed (clients send few)
# Browsers send about 25 characters ("gzip, deflate, br, zstd"); Werkzeug's parse costs up to
# 2 µs a character. A longer value, or one of more items, is answered with identity (always
# acceptable), unparsed and uncached: a value costs at most about 0.5 ms and 300 cached bytes.
ACCEPT_ENCODING_CHARS = 256
ACCEPT_ENCODING_ITEMS = 16
Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Answers:
    """Everything a request for one document can get back, computed once per document."""

    tags: frozenset[str]  # If-None-Match values that are exactly ours
    last_modified: str
    ok: Headers
    ok_gzip: Headers
    not_modified: Headers
    not_modified_gzip: Headers

    @classmethod
    def of(cls, doc: Document) -> Answers:
        tag, tag_gz = f'"{doc.etag}"', f'"{doc.etag}-gzip"'
        last_modified = http_date(doc.last_modified)
        common = [
            ("Last-Modified", last_modified),
            ("Cache-Control", doc.cache_control),
            ("Vary", "Accept-Encoding"),
        ]
        if doc.links:
            common.append(("Link", ", ".join(f'<{url}>; rel="{rel}"' for rel, url in doc.links)))
        if doc.nosniff:
            common.append(("X-Content-Type-Options", "nosniff"))
        return cls(
            tags=frozenset({tag, tag_gz, f"W/{tag}", f"W/{tag_gz}", "*"}),
            last_modified=last_modified,
            ok=[
                ("Content-Type", doc.mimetype),
                ("Content-Length", str(len(doc.body))),
                ("ETag", tag),
                *common,
            ],
            ok_gzip=[
                ("Content-Type", doc.mimetype),
                ("Content-Length", str(len(doc.gzipped))),
                ("Content-Encoding", "gzip"),
                ("ETag", tag_gz),
                *common,
            ],
            # RFC 9110 15.4.5: a 304 carries the validators and cache headers of the 200.
            not_modified=[("ETag", tag), *common],
            not_modified_gzip=[("ETag", tag_gz), *common],
        )


def is_unmodified(environ: dict[str, Any], doc: Document, answers: Answers) -> bool:
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None and if_none_match in answers.tags:
        return True
    if if_none_match is None:
        since = environ.get("HTTP_IF_MODIFIED_SINCE")
        if since is None:
            return False
        if since == answers.last_modified:
            return True
    # Either representation's tag proves the client holds current bytes; checking both also
    # accepts a "-gzip" suffix that a compressing proxy appended to our identity tag.
    return any(
        not is_resource_modified(
            http_if_modified_since=environ.get("HTTP_IF_MODIFIED_SINCE"),
            http_if_none_match=if_none_match,
            etag=candidate,
            last_modified=doc.last_modified,
        )
        for candidate in (doc.etag, f"{doc.etag}-gzip")
    )


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether gzip is acceptable (RFC 9110 12.5.3), at a cost bounded whatever the client sends."""
    if len(accept_encoding) > ACCEPT_ENCODING_CHARS or accept_encoding.count(",") >= ACCEPT_ENCODING_ITEMS:
        return False
    # Coding names are case-insensitive (RFC 9110 8.4.1); Werkzeug honours q=0 and "*".
    return parse_accept_header(accept_encoding.lower())["gzip"] > 0


class DocumentApp:
    """WSGI middleware serving feeds, pages and the index; other requests go to ``fallback``."""

    def __init__(self, site: Site, metrics: Metrics, fallback: Callable[..., Iterable[bytes]]) -> None:
        self.site = site
        self.metrics = metrics
        self.fallback = fallback
        self._answers: dict[str, tuple[Document, Answers]] = {}
        self._gzip: dict[str, bool] = {}
        self._counters: dict[tuple[str, str, int], Any] = {}
        self.budget = Budget(site.state_dir)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO", "")
        try:
            found = self._lookup(path)
        except Unsettled as exc:
            start_response("503 Service Unavailable", [("Retry-After", "1"), _NO_STORE, *_ALLOW[1:]])
            return [] if method == "HEAD" else [f"{exc}\n".encode()]
        if found is None:
            return self.fallback(environ, start_response)
        kind, name, doc = found
        if method != "GET" and method != "HEAD":
            self._count(kind, name, 405)
            start_response("405 Method Not Allowed", _ALLOW)  # RFC 9110 15.5.6
            return [b"Method not allowed: documents answer GET and HEAD.\n"]
        self.site.audience.note(kind, name, environ)  # who reads each feed (feeds.sightings)
        polling = self.site.config.polling
        if polling is not None and kind in POLLED:
            wait = self.budget.wait(environ, path, polling)
            if wait:
                return self._refuse(start_response, kind, name, wait, method == "HEAD")
        return self._answer(environ, start_response, path, kind, name, doc, method == "HEAD")

    def _lookup(self, path: str) -> tuple[str, str, Document] | None:
        if not path.isascii():  # WSGI hands the path over as Latin-1 decoded bytes
            path = path.encode("latin-1").decode("utf-8", "replace")
        found = catalogue.route(path)
        if found is None:
            return None
        kind, params = found
        try:
            document = self.site.document(kind, params)
        except NotFound:
            return None
        return kind.place.kind, _label(kind, params), document

    def _answer(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        path: str,
        kind: str,
        name: str,
        doc: Document,
        head: bool,
    ) -> Iterable[bytes]:
        gzip = self._accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING"))
        if not doc.complete or not self.site.live.snapshot.verified:
            # An entry left out while its file settles, or the files not yet compared with the
            # index after a start: answered, but nothing may keep it.
            self._count(kind, name, 200)
            body = doc.gzipped if gzip else doc.body
            headers = [("Content-Type", doc.mimetype), ("Content-Length", str(len(body))), _NO_STORE]
            start_response("200 OK", [*headers, ("Content-Encoding", "gzip")] if gzip else headers)
            return [b""] if head else [body]
        cached = self._answers.get(path)
        if cached is None or cached[0] is not doc:  # one entry per URL: old versions can go
            if len(self._answers) > ANSWERS_KEPT:
                self._answers.clear()
            cached = self._answers[path] = (doc, Answers.of(doc))
        answers = cached[1]
        if environ.get("HTTP_IF_MATCH") is not None:
            if_match = Request(environ).if_match
            if not (if_match.contains(doc.etag) or if_match.contains(f"{doc.etag}-gzip")):
                self._count(kind, name, 412)  # RFC 9110 13.1.1
                start_response("412 Precondition Failed", [("Content-Length", "0")])
                return [b""]
        if is_unmodified(environ, doc, answers):
            self._count(kind, name, 304)
            start_response("304 Not Modified", answers.not_modified_gzip if gzip else answers.not_modified)
            return [b""]
        self._count(kind, name, 200)
        start_response("200 OK", answers.ok_gzip if gzip else answers.ok)
        return [b""] if head else [doc.gzipped if gzip else doc.body]

    def _refuse(
        self, start_response: StartResponse, kind: str, name: str, wait: int, head: bool
    ) -> Iterable[bytes]:
        """429 (RFC 6585 4) for a client over its polling budget; nothing may keep it."""
        self._count(kind, name, 429)
        self.metrics.throttled.labels(name).inc()
        body = f"Too many requests for this document: ask again in {wait} seconds.\n".encode()
        headers = [("Retry-After", str(wait)), _NO_STORE, _ALLOW[1], ("Content-Length", str(len(body)))]
        start_response("429 Too Many Requests", headers)
        return [b""] if head else [body]

    def _accepts_gzip(self, header: str | None) -> bool:
        if not header or len(header) > ACCEPT_ENCODING_CHARS:
            return False
        known = self._gzip.get(header)
        if known is None:  # clients send few distinct headers: parse each once
            if len(self._gzip) >= ENCODINGS_KEPT:
                self._gzip.clear()
            known = self._gzip[header] = accepts_gzip(header)
        return known

    def _count(self, kind: str, name: str, status: int) -> None:
        key = (kind, name, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.requests.labels(kind, name, str(status))
        counter.inc()


def _label(kind: catalogue.Kind, params: dict[str, str]) -> str:
    """The metrics label of a document: feeds by their name; pages and files are many, unnamed."""
    if kind is catalogue.FEED:
        return f"{params['name']}.{params['fmt']}"
    if kind in (catalogue.ARCHIVE, catalogue.FEED_PAGE):
        return params["name"]
    return ""


def current_site() -> Site:
    site: Site = current_app.extensions["feeds"]
    return site


@bp.get("/healthz")
def healthz() -> Response:
    response = jsonify(current_site().health())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def metrics() -> Response:
    """For the operator's monitoring only: counts per feed say who reads what, and how much.

    Allowed by the peer's address (never a forwarded header); behind a cache on this machine
    the peer is the cache, so the shipped Varnish and nginx configs answer /metrics themselves.
    """
    if not allowed(request.remote_addr, current_site().config.metrics_allow):
        return _not_found(NotFound())
    body = current_app.extensions["feeds.metrics"].exposition()
    return Response(
        body, content_type="text/plain; version=0.0.4; charset=utf-8", headers={"Cache-Control": "no-store"}
    )


def allowed(address: str | None, networks: tuple[str, ...]) -> bool:
    """Whether a peer address lies in one of the networks (an IPv4-mapped IPv6 one as IPv4)."""
    try:
        peer = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:  # no address (a unix socket) or none we can read: not allowed
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    return any(peer in network for network in _networks(networks))


@lru_cache(maxsize=8)
def _networks(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n) for n in networks)


def _not_found(_: Exception) -> Response:
    return Response("Not found.\n", status=404, content_type="text/plain; charset=utf-8")


def _http_error(exc: HTTPException) -> Response | HTTPException:
    return _not_found(exc) if exc.code == 404 else exc


def init_app(app: Flask, site: Site, metrics: Metrics) -> None:
    # Werkzeug answers "/static//x" with a redirect to an absolute URL built from the client's
    # Host header: a doubled slash is a path we do not serve. No rule ends in "/", so
    # strict_slashes never redirects either.
    app.url_map.merge_slashes = False
    app.register_blueprint(bp)
    app.register_error_handler(NotFound, _not_found)
    app.register_error_handler(HTTPException, _http_error)
    wsgi: Callable[..., Iterable[bytes]] = Draining(DocumentApp(site, metrics, app.wsgi_app))
    if os.environ.get("FEEDS_ACCESS_LOG", "0") != "0":
        wsgi = AccessLog(wsgi)
    app.wsgi_app = wsgi  # type: ignore[method-assign]
