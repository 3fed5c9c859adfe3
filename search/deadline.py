"""Cooperative cancellation of one query's work.

A search runs in a worker thread, and Python cannot stop a thread from outside: when the web
layer gives up on a request (its timeout), the thread would go on embedding and ranking. Long
steps (audio decoding, batches of audio windows, query parts, rounds of ranking candidates) call
``check`` between pieces instead, so abandoned work stops within one piece (tens of
milliseconds), not when it would have ended.
"""

from __future__ import annotations

import threading
import time

from search.errors import RequestTimeout


class Deadline:
    """Stop signal for one query: cancelled explicitly, or past ``seconds`` from creation."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + seconds
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def expired(self) -> bool:
        return self._cancelled.is_set() or (self._at is not None and time.monotonic() >= self._at)

    def check(self) -> None:
        """Raise ``RequestTimeout`` once cancelled or past the deadline."""
        if self.expired:
            limit = f" of {self.seconds:g} s" if self.seconds is not None else ""
            raise RequestTimeout(f"the query was stopped: past its time limit{limit}")


NO_DEADLINE = Deadline()
