"""A production factory that is slow to start, for tests/test_deploy.py (not a test module).

granian serves it as ``slow_start:create_app`` (with tests/ on PYTHONPATH) to stand in for a
worker loading a large article index. Each worker touches ``$FEEDS_TEST_MARKERS/<pid>`` when it
enters the factory, so a test knows it is inside create_app, then sleeps
``$FEEDS_TEST_START_DELAY`` seconds (default 120) before calling :func:`feeds.create_app`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Flask

import feeds


def create_app() -> Flask:
    markers = os.environ.get("FEEDS_TEST_MARKERS")
    if markers:
        (Path(markers) / str(os.getpid())).touch()
    time.sleep(float(os.environ.get("FEEDS_TEST_START_DELAY", "120")))
    return feeds.create_app()
