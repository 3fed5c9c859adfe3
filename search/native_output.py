"""Text that C libraries write straight to file descriptor 2, passed to the log instead.

libmpg123 (inside libsndfile, which soundfile wraps) prints "Warning: Xing stream size off by
more than 1%" and "part2_3_length ... too large" for every truncated MP3 it opens; that text
never passes through ``sys.stderr``, so neither ``logging`` nor ``warnings`` can catch it.
``native_stderr_to_log`` points fd 2 at a temp file around such a call and logs what landed
there at DEBUG (``crossfind --verbose`` shows it).

fd 2 belongs to the whole process, so there is one capture at a time: threads that decode at
once share it (a lock and a depth count), and whatever another thread writes to stderr in that
window is logged along with it rather than lost.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

log = logging.getLogger(__name__)

_lock = threading.Lock()
_depth = 0
_saved: int | None = None  # the real fd 2 while a capture is on
_sink: IO[bytes] | None = None


@contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """Within the block, text written to fd 2 goes to this module's logger at DEBUG."""
    global _depth
    with _lock:
        if _depth == 0:
            _start()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            captured = _stop() if _depth == 0 else b""
        for line in captured.decode("utf-8", "replace").splitlines():
            if line.strip():
                log.debug("%s", line)


def _start() -> None:
    global _saved, _sink
    try:
        sys.stderr.flush()  # what Python wrote before stays on the terminal
        sink = tempfile.TemporaryFile()  # noqa: SIM115 - held open until _stop reads it
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 or no temp dir: leave stderr be
        return
    os.dup2(sink.fileno(), 2)
    _saved, _sink = saved, sink


def _stop() -> bytes:
    global _saved, _sink
    if _saved is None or _sink is None:
        return b""
    with suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    os.dup2(_saved, 2)
    os.close(_saved)
    sink, _saved, _sink = _sink, None, None
    with sink:
        sink.seek(0)
        return sink.read(1 << 20)  # a runaway library cannot fill memory
