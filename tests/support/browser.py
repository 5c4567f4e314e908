"""Headless Chromium as the page tests start it: Debian's package, which CI installs
(``scripts/install-system-packages.sh``); elsewhere the tests that need it are skipped."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# No sandbox (tests run as root), nothing fetched besides the page, no QUIC to the loopback.
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def command(profile: Path, *extra: str) -> list[str]:
    """Chromium's command line with a profile of its own (``profile``) and ``extra`` options."""
    return [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", *extra]
