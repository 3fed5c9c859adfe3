"""Query-part vectors remembered across requests.

The page re-runs the same parts over and over: turning a page, ticking a filter chip, moving a
weight slider. Each would embed the same text or image again (tens of milliseconds of model
time); this keeps the last few hundred vectors, keyed by the part's content. Item parts are not
kept: their vectors are a cheap lookup, and the item may be deleted.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from search.query import QueryPart


class QueryVectorCache:
    """A small thread-safe LRU of ``part -> vector`` for one encoder."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        # part -> (vector, what embedding reported about the part, e.g. an audio cut)
        self._items: OrderedDict[tuple[str, str], tuple[np.ndarray, dict]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(part: QueryPart) -> tuple[str, str] | None:
        if part.text is not None:
            return ("text", part.text)
        data = part.image_b64 if part.image_b64 is not None else part.audio_b64
        if data is not None:
            return (part.kind, hashlib.sha256(data.encode("ascii", "replace")).hexdigest())
        return None

    def get(
        self,
        part: QueryPart,
        embed: Callable[[QueryPart, dict], np.ndarray],
        notes: dict | None = None,
    ) -> np.ndarray:
        """The vector of ``part``, from the cache or from ``embed`` (then remembered).
        ``embed`` may fill in notes about the part; they are kept with the vector and copied
        into ``notes`` on every hit."""
        notes = {} if notes is None else notes
        key = self.key(part)
        if key is None:
            return embed(part, notes)
        with self._lock:
            cached = self._items.get(key)
            if cached is not None:
                self._items.move_to_end(key)
                self.hits += 1
                notes.update(cached[1])
                return cached[0]
            self.misses += 1
        vector = embed(part, notes)  # outside the lock: other requests keep going meanwhile
        vector.setflags(write=False)  # shared between requests: nobody may change it
        with self._lock:
            self._items[key] = (vector, dict(notes))
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return vector
