"""The production factory plus the WebSub discovery ``Link`` header, for tests/test_notify.py.

Not a test module: gunicorn serves it as ``websub_links:create_app()`` (with tests/ on its
Python path). The hub the end-to-end test runs (flask-websub) distributes a topic only if
fetching it returns ``Link: <hub>; rel="hub", <self>; rel="self"`` (W3C WebSub §4). Where
feeds/http.py does not send that header itself, this adds it; where it does, this adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

import feeds


def create_app() -> Flask:
    app = feeds.create_app()
    site = app.extensions["feeds"]
    inner: Callable[..., Iterable[bytes]] = app.wsgi_app  # documents are served before Flask routes

    def announcing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            path = environ.get("PATH_INFO", "")
            hubs = site.config.hubs
            if hubs and path.startswith("/feeds/") and not any(k.lower() == "link" for k, _ in headers):
                own = f"http://{environ['HTTP_HOST']}{path}"
                links = [f'<{hub}>; rel="hub"' for hub in hubs] + [f'<{own}>; rel="self"']
                headers = [*headers, ("Link", ", ".join(links))]
            return start_response(status, headers, *args)

        return inner(environ, start)

    app.wsgi_app = announcing  # type: ignore[method-assign]
    return app
