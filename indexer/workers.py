"""The decoding pool: forked worker processes that die with their parent (or inline work).

``fork`` lets workers inherit the encoder's image preprocessing without pickling the encoder
(whose models may not pickle at all), as PyTorch's DataLoader does. Workers ask the kernel to
kill them when the indexer dies: an orphaned worker would otherwise keep the index's write
lock (inherited through fork) and block the next run after a ``kill -9``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from indexer.loaders import LoaderConfig, set_config

_PR_SET_PDEATHSIG = 1


def _init_worker(config: LoaderConfig, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(0)
    if "torch" in sys.modules:  # preprocessing must not fight the model for cores
        sys.modules["torch"].set_num_threads(1)
    set_config(config)


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Workers:
    """``submit(fn, *args) -> Future`` over ``n`` worker processes; ``n == 0`` runs inline."""

    def __init__(self, n: int, config: LoaderConfig) -> None:
        self.n = max(0, int(n))
        self.config = config
        self._executor: Executor | None = None
        set_config(config)  # inline work and the thread fallback read it from this process

    def _start(self) -> Executor:
        if self._executor is None:
            if "fork" in mp.get_all_start_methods():
                self._executor = ProcessPoolExecutor(
                    self.n,
                    mp_context=mp.get_context("fork"),
                    initializer=_init_worker,
                    initargs=(self.config, os.getpid()),
                )
            else:  # no fork (Windows, macOS default): threads, as PIL and numpy release the GIL
                self._executor = ThreadPoolExecutor(self.n)
        return self._executor

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self.n == 0:
            future: Future = Future()
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)
            return future
        return self._start().submit(fn, *args)

    def restart(self) -> None:
        """Replace a broken pool (a worker died: a decoder crashed or was killed)."""
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
