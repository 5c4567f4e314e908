"""Where in a feed's order its archive pages begin, remembered from one request to the next.

An archive page of a feed with a million entries begins up to a million entries down the feed's
index, and SQLite's ``OFFSET`` steps through each of them (164 ms for the oldest page at a
million); a crawler or a static export asks for every page in turn. So the key of each page's
first entry is kept, and the next page's is found by stepping from the nearest one kept,
forward or back (a page's length), for as long as the index and the entries visible are those
it was found in: the *state* names the journal and its last change, the feed's topic, and how
many entries are not yet visible (visibility only grows with the clock, so the same count means
the same entries).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

State = tuple[str | None, int, str | None, int]  # (journal id, last change, topic slug, not yet visible)
Key = tuple[int, str]  # (published, id): an entry's place in feed order
KEPT_STATES = 64  # a few feeds' archives at once, and the states just before a change
KEPT_PER_STATE = 16  # positions of one feed in one state: pages just read, near the next ones


class Positions:
    """Known entries' positions in feed order, per state of the index. Shared by the readers of
    one :class:`~feeds.store.IndexStore` on any thread; its lock is held for a dict operation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: OrderedDict[State, OrderedDict[int, Key]] = OrderedDict()

    def nearest(self, state: State, position: int) -> tuple[int, Key] | None:
        """The known position closest to ``position`` in ``state``, with its entry's key."""
        with self._lock:
            known = self._states.get(state)
            if not known:
                return None
            self._states.move_to_end(state)
            return min(known.items(), key=lambda item: abs(item[0] - position))

    def note(self, state: State, position: int, key: Key) -> None:
        with self._lock:
            known = self._states.setdefault(state, OrderedDict())
            self._states.move_to_end(state)
            known[position] = key
            known.move_to_end(position)
            while len(known) > KEPT_PER_STATE:
                known.popitem(last=False)
            while len(self._states) > KEPT_STATES:
                self._states.popitem(last=False)

    def clear(self) -> None:
        """The index was emptied for a new build (its journal id changes too)."""
        with self._lock:
            self._states.clear()
