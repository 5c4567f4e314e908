"""The web edge: routes, caching headers and conditional GETs over cached documents.

Views only look a :class:`~feeds.site.Document` up and answer with its bytes; the decision
between 200 and 304 is Werkzeug's ``is_resource_modified`` (If-None-Match wins over
If-Modified-Since, weak comparison, ``*``, lists, unparsable dates ignored).
"""

from __future__ import annotations

import re

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date, parse_etags
from werkzeug.sansio.http import is_resource_modified

from .errors import NotFound
from .site import Document, Site

bp = Blueprint("feeds", __name__)
_FEED_FILE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]*)\.(?P<fmt>rss|atom)$")


class DocumentResponse(Response):
    """Keeps Last-Modified on 304s, which Werkzeug drops as an entity header.

    The contract promises a 304 carries the same validators as the 200 it stands for.
    """

    def get_wsgi_headers(self, environ: dict[str, object]) -> Headers:  # type: ignore[override]
        headers = super().get_wsgi_headers(environ)  # type: ignore[arg-type]
        if self.status_code == 304 and "Last-Modified" in self.headers:
            headers["Last-Modified"] = self.headers["Last-Modified"]
        return headers


def current_site() -> Site:
    site: Site = current_app.extensions["feeds"]
    return site


def serve(doc: Document) -> DocumentResponse:
    """Answer with ``doc``: 304 when the client's validators match, else 200 (gzip if accepted)."""
    gzip_ok = request.accept_encodings["gzip"] > 0
    body, tag = (doc.gzipped, f"{doc.etag}-gzip") if gzip_ok else (doc.body, doc.etag)
    environ = request.environ
    if_match = parse_etags(environ.get("HTTP_IF_MATCH"))
    if if_match and not (if_match.contains(doc.etag) or if_match.contains(f"{doc.etag}-gzip")):
        return DocumentResponse(b"", status=412)  # RFC 9110 13.1.1
    # Either representation's tag proves the client holds current bytes; checking both also
    # accepts a "-gzip" suffix that a compressing proxy appended to our identity tag.
    unmodified = any(
        not is_resource_modified(
            http_if_modified_since=environ.get("HTTP_IF_MODIFIED_SINCE"),
            http_if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
            etag=candidate,
            last_modified=doc.last_modified,
        )
        for candidate in (doc.etag, f"{doc.etag}-gzip")
    )
    response = DocumentResponse(
        b"" if unmodified else body, status=304 if unmodified else 200, content_type=doc.mimetype
    )
    headers = response.headers
    headers["ETag"] = f'"{tag}"'
    headers["Last-Modified"] = http_date(doc.last_modified)
    headers["Cache-Control"] = f"public, max-age={doc.max_age}"
    headers["Vary"] = "Accept-Encoding"
    if not unmodified:
        headers["Content-Length"] = str(len(body))
        if gzip_ok:
            headers["Content-Encoding"] = "gzip"
    return response


def _count(kind: str, feed: str, response: Response) -> Response:
    current_app.extensions["feeds.metrics"].requests.labels(kind, feed, str(response.status_code)).inc()
    return response


@bp.get("/feeds/<filename>")
def feed(filename: str) -> Response:
    match = _FEED_FILE.match(filename)
    if match is None:
        raise NotFound(filename)
    response = serve(current_site().feed(match["name"], match["fmt"]))
    return _count("feed", filename, response)


@bp.get("/")
def index() -> Response:
    return _count("index", "", serve(current_site().index()))


@bp.get("/articles/<path:article_id>")
def article(article_id: str) -> Response:
    return _count("page", "", serve(current_site().page(article_id)))


@bp.get("/healthz")
def healthz() -> Response:
    response = jsonify(current_site().health())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def metrics() -> Response:
    body = current_app.extensions["feeds.metrics"].exposition()
    return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8",
                    headers={"Cache-Control": "no-store"})


def _not_found(_: Exception) -> Response:
    return Response("Not found.\n", status=404, content_type="text/plain; charset=utf-8")


def _http_error(exc: HTTPException) -> Response | HTTPException:
    if exc.code == 404:
        return _not_found(exc)
    return exc


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_error_handler(NotFound, _not_found)
    app.register_error_handler(HTTPException, _http_error)

