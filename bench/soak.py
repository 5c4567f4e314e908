#!/usr/bin/env python3
"""The soak's command line; the soak itself is tests/support/soak.py (tests/test_soak.py runs it too).

    .venv/bin/python bench/soak.py --pollers 16 --minutes 3 [--server granian|gunicorn] [--out bench/SOAK.md]

What it does and checks: bench/SOAK.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS) not in sys.path:  # a process the soak spawns gets this sys.path too
    sys.path.insert(0, str(TESTS))

from support.soak import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
