"""The application factory: no work at import time, all state in ``app.extensions``."""

from __future__ import annotations

import logging
import os

from flask import Flask

from . import http
from .config import config_path_from_env
from .site import Clock, Store, load_site, utc_now

log = logging.getLogger(__name__)


def create_app(config_path: str | os.PathLike[str] | None = None, *, clock: Clock = utc_now) -> Flask:
    """Build the Flask app for one site.

    ``config_path`` defaults to ``$FEEDS_CONFIG`` or ``./config.yaml``. A broken config raises
    :class:`~feeds.errors.ConfigError` here, so a server never starts on a bad file.
    ``clock`` lets tests pin "now" (embargoes depend on it).
    """
    path = config_path_from_env(config_path)
    site = load_site(str(path), clock)
    log.info("loaded %s: %d articles, %d feeds, %d problems",
             path, len(site.articles), len(site.specs), len(site.problems))
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["feeds"] = Store(site, clock)
    http.init_app(app)
    return app
