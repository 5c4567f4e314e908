"""The application factory: no work at import time, all state in ``app.extensions``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask

from . import http, logs
from .config import config_path_from_env, load_config
from .metrics import Metrics
from .site import Clock, Site, open_site, utc_now

if TYPE_CHECKING:
    from .watch import Watcher

log = logging.getLogger(__name__)


def state_dir_for(config_path: Path) -> Path:
    """Where the article index and the validator ledger live (``$FEEDS_STATE_DIR`` wins)."""
    explicit = os.environ.get("FEEDS_STATE_DIR")
    return Path(explicit) if explicit else config_path.resolve().parent / ".feeds"


def create_app(
    config_path: str | os.PathLike[str] | None = None,
    *,
    clock: Clock = utc_now,
    watch: bool | None = None,
    notify: bool | None = None,
    state_dir: Path | None = None,
) -> Flask:
    """Build the Flask app for one site.

    ``config_path`` defaults to ``$FEEDS_CONFIG`` or ``./config.yaml``. A broken config raises
    :class:`~feeds.errors.ConfigError` here, so a server never starts on a bad file.
    ``clock`` lets tests pin "now" (embargoes depend on it). ``watch`` (default: on unless
    ``FEEDS_WATCH=0``) reloads articles and config as they change, in every worker.
    ``notify`` (default: as ``watch``) tells the config's WebSub hubs of every changed feed.
    """
    logs.configure()  # under gunicorn or granian: one line per event
    path = config_path_from_env(config_path)
    watching = watch if watch is not None else os.environ.get("FEEDS_WATCH", "1") != "0"
    # Observe before reading the articles: what changes while they are read is not lost.
    early = _observe(path) if watching else None
    try:
        # With a watcher, an index from an earlier run is checked against the files in the
        # background (a million articles start in seconds); without one, before serving.
        site = open_site(path, clock, state_dir or state_dir_for(path), verify=early is None)
    except BaseException:
        if early is not None:
            early.stop()
        raise
    log.info(
        "loaded %s: %d articles, %d feeds, %d problems",
        path,
        site.article_count(),
        len(site.specs),
        len(site.problems()),
    )
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["feeds"] = site
    metrics = app.extensions["feeds.metrics"] = Metrics(site)
    if early is not None:
        _watch(app, site, early)
    if notify if notify is not None else watching:
        _notify(app, site)
    http.init_app(app, site, metrics)
    return app


def _observe(config_path: Path) -> Watcher:
    from .watch import Watcher

    return Watcher.observing(config_path, load_config(config_path).articles_dir)


def _watch(app: Flask, site: Site, early: Watcher) -> None:
    from .watch import Watcher

    early.start(site)
    app.extensions["feeds.watcher"] = early

    def after_fork() -> None:
        # Threads do not survive fork: a worker forked from a preloaded app starts its own,
        # which first catches up with what changed since the index was read.
        watcher = Watcher(site.config_path, site.config.articles_dir)
        watcher.start(site)
        app.extensions["feeds.watcher"] = watcher

    os.register_at_fork(after_in_child=after_fork)


def _notify(app: Flask, site: Site) -> None:
    from .notify import Notifier

    app.extensions["feeds.notifier"] = Notifier(site).start()

    def after_fork() -> None:  # as for the watcher: a forked worker has none of its threads
        app.extensions["feeds.notifier"] = app.extensions["feeds.notifier"].forked()

    os.register_at_fork(after_in_child=after_fork)
