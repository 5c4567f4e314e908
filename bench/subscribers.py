#!/usr/bin/env python3
"""What counting subscribers costs a worker: the request path's note, and the background flush.

    .venv/bin/python bench/subscribers.py [--requests 200000] [--readers 20000]

1. ``Sightings.note()`` as ``DocumentApp`` calls it for every feed request, timed over
   ``--requests`` calls (a fresh environ each, as the server gives), against an empty call.
2. One flush of a second's worth of sightings (``--readers`` distinct direct readers, every
   tenth request a Feedly report) into a fresh ``audience.sqlite``: what the ``feeds-audience``
   thread does each second, off the request path.

The polling throughput with the counting in place is ``bench/run.py``'s (every request it makes
is a feed request). Prints a small Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from feeds.sightings import PENDING, Sightings
from feeds.store import AudienceStore

FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 131 subscribers; )"
AGENT = "Mozilla/5.0 (compatible; Miniflux/2.1.3; +https://miniflux.app)"


def environs(count: int, readers: int) -> list[dict[str, str]]:
    return [
        {
            "REMOTE_ADDR": f"10.{i % readers // 65536}.{i % readers // 256 % 256}.{i % 256}",
            "HTTP_USER_AGENT": FEEDLY if i % 10 == 0 else AGENT,
            "REQUEST_METHOD": "GET",
        }
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--readers", type=int, default=20_000)
    args = parser.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        seen = Sightings(AudienceStore(Path(folder) / "audience.sqlite"), lambda: now)
        seen._thread = object()  # type: ignore[assignment]  # no thread: the flushes are timed below
        calls = environs(args.requests, args.readers)
        noted = 0.0
        for start in range(0, len(calls), PENDING):  # flushed between rounds, untimed
            chunk = calls[start : start + PENDING]
            began = time.perf_counter()
            for environ in chunk:
                seen.note("feed", "kurz.rss", environ)
            noted += time.perf_counter() - began
            seen.flush()
        began = time.perf_counter()
        for _environ in calls:
            pass
        loop = time.perf_counter() - began
        second = environs(min(args.readers * 2, PENDING), args.readers)
        fresh = Sightings(AudienceStore(Path(folder) / "second.sqlite"), lambda: now)
        fresh._thread = object()  # type: ignore[assignment]
        for environ in second:
            fresh.note("feed", "kurz.rss", environ)
        began = time.perf_counter()
        fresh.flush()
        flushed = time.perf_counter() - began
        counted = fresh.current()
    per_call = (noted - loop) / len(calls) * 1e9
    print("| measure | value |\n| --- | --- |")
    print(f"| `note()` per feed request | {per_call:.0f} ns |")
    print(f"| one flush: {len(second):,} sightings, {args.readers:,} readers | {flushed * 1000:.1f} ms |")
    print(f"| counted after that flush | {counted} |")


if __name__ == "__main__":
    main()
