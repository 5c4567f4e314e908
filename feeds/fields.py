"""Placeholder until the config branch lands (it owns this module)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def did_you_mean(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def language_tag(value: Any) -> str:
    if not isinstance(value, str) or not LANGUAGE_TAG.match(value):
        raise ValueError("expected a language tag such as de or en-US")
    return value
