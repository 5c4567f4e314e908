"""The application factory: no work at import time, all state in ``app.extensions``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask

from . import http, logs
from .config import config_path_from_env, load_config
from .live import Clock
from .metrics import Metrics
from .notify import Notifier
from .site import Site, open_site, utc_now
from .sitemaps import PAGE_URLS
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
    sitemap_urls: int = PAGE_URLS,
) -> Flask:
    """Build the Flask app for one site.

    ``config_path`` defaults to ``$FEEDS_CONFIG`` or ``./config.yaml``. A broken config raises
    :class:`~feeds.errors.ConfigError` here, so a server never starts on a bad file.
    ``clock`` lets tests pin "now" (embargoes depend on it). ``watch`` (default: on unless
    ``FEEDS_WATCH=0``) reloads articles and config as they change, in every worker.
    ``notify`` (default: as ``watch``) tells the config's WebSub hubs of every changed feed.
    ``sitemap_urls``: URLs per sitemap page (the protocol's 50,000; tests lower it).
    """
    logs.configure()  # under gunicorn or granian: one line per event
    path = config_path_from_env(config_path)
    watching = watch if watch is not None else os.environ.get("FEEDS_WATCH", "1") != "0"
    # Watch before reading the articles: what changes while they are read is not lost. That
    # watch asks for no open events: a check of every file would bring one per file.
    watcher = _watcher(path) if watching else None
    try:
        site = open_site(
            path, clock, state_dir or state_dir_for(path), verify=watcher is None, sitemap_urls=sitemap_urls
        )
    except BaseException:
        if watcher is not None:
            watcher.stop()
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
    if watcher is not None:
        _watch(app, site, watcher)
    if notify if notify is not None else watching:
        _notify(app, site)
    http.init_app(app, site, metrics)
    return app


def _watcher(config_path: Path) -> Watcher:
    watcher = Watcher(config_path, load_config(config_path).articles_dir)
    watcher.watch(opens=False)
    return watcher


def _watch(app: Flask, site: Site, watcher: Watcher) -> None:
    site.set_watched(True)
    site.live.start(watcher)
    app.extensions["feeds.watcher"] = watcher

    def after_fork() -> None:
        # Threads do not survive fork: a worker forked from a preloaded app starts its own writer,
        # which first compares every file with the index (changes before the fork are unseen).
        site.live.forked(Watcher(site.config_path, site.config.articles_dir))

    os.register_at_fork(after_in_child=after_fork)


def _notify(app: Flask, site: Site) -> None:
    notifier = Notifier(site).start()
    app.extensions["feeds.notifier"] = notifier

    def after_fork() -> None:  # as for the watcher: a forked worker has none of its threads
        app.extensions["feeds.notifier"] = app.extensions["feeds.notifier"].forked()

    os.register_at_fork(after_in_child=after_fork)
