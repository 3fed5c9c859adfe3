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
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
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

    def get(self, part: QueryPart, embed: Callable[[QueryPart], np.ndarray]) -> np.ndarray:
        """The vector of ``part``, from the cache or from ``embed`` (then remembered)."""
        key = self.key(part)
        if key is None:
            return embed(part)
        with self._lock:
            vector = self._items.get(key)
            if vector is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return vector
            self.misses += 1
        vector = embed(part)  # outside the lock: other requests keep going meanwhile
        vector.setflags(write=False)  # shared between requests: nobody may change it
        with self._lock:
            self._items[key] = vector
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return vector
