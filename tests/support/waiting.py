"""Waiting for what a test expects, on a machine that may be busy with other work.

A test waits on an event the app reports, or polls a condition until a deadline. The deadline
only says when to give up on something that is not coming: it is generous, so a slow machine
makes a test slower, never red. No test sleeps for a fixed time to wait for something.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PATIENCE = 60.0  # seconds before a test gives up waiting for what it expects


def wait_until(condition: Callable[[], object], what: str, timeout: float = PATIENCE) -> None:
    """Poll ``condition`` until it is true; an AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.02)
