"""The project as it was at another commit: a granian factory for ``bench/run.py --baseline``.

    granian --interface wsgi --factory --working-dir bench baseline:create_app

imports ``feeds`` from the tree named by ``$BENCH_BASELINE`` (``git archive REV feeds``, made
by run.py) instead of this checkout, whose editable install would otherwise win over
``sys.path``. Same venv, so same dependencies: meant for commits close to this one.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


def create_app() -> Any:
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
    sys.path.insert(0, os.environ["BENCH_BASELINE"])
    feeds = importlib.import_module("feeds")
    if not feeds.__file__ or not feeds.__file__.startswith(os.environ["BENCH_BASELINE"]):
        raise RuntimeError(f"feeds came from {feeds.__file__}, not the baseline tree")
    return feeds.create_app()
