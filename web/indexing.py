"""POST /api/index: index the configured roots in a background thread, one run at a time."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Protocol

from search.encoders.base import Encoder
from search.engine import Engine
from search.errors import BadRequest, Conflict
from search.index import Index
from search.settings import Settings

log = logging.getLogger(__name__)

# index_paths(paths, index, encoder, settings) -> report (indexer.pipeline's signature)
IndexFn = Callable[[list[Path], Index, Encoder, Settings], Any]


class Host(Protocol):
    """What a job needs of the server's services (``web.services.Services``)."""

    settings: Settings
    db: Path

    @property
    def engine(self) -> Engine | None: ...

    def load_encoder(self) -> Encoder: ...

    def open_engine(self) -> Engine: ...


def _default_index_fn() -> IndexFn:
    try:
        from indexer.pipeline import index_paths
    except ModuleNotFoundError as exc:  # a partial install without the indexer
        raise BadRequest(
            f"the indexer is not installed ({exc.name}); reinstall crossfind"
        ) from None
    # no progress bar: nobody watches a server's stderr for one
    return functools.partial(index_paths, progress=False)


def _report_json(report: Any) -> dict[str, Any]:
    if hasattr(report, "to_json"):
        return report.to_json()
    if is_dataclass(report) and not isinstance(report, type):
        return asdict(report)
    return dict(report) if isinstance(report, dict) else {"result": str(report)}


class IndexJob:
    """The state of the one background indexing run a server allows at a time."""

    def __init__(self, services: Host, index_fn: IndexFn | None = None) -> None:
        self.services = services
        self.index_fn = index_fn
        self.state = "idle"
        self.roots: list[str] = []
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.report: dict[str, Any] | None = None
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start indexing ``settings.roots``.

        Raises:
            BadRequest: no roots are configured.
            Conflict: a run is already going.
        """
        roots = [Path(r) for r in self.services.settings.roots]
        if not roots:
            raise BadRequest(
                "no folders to index: set CROSSFIND_ROOTS (a JSON list, e.g. '[\"/photos\"]') "
                "and restart the server"
            )
        fn = self.index_fn or _default_index_fn()
        with self._lock:
            if self.state == "running":
                raise Conflict("an indexing run is already going; see GET /api/index/status")
            self.state, self.roots = "running", [str(r) for r in roots]
            self.started_at, self.finished_at = time.time(), None
            self.report, self.error = None, None
            self._thread = threading.Thread(
                target=self._run, args=(fn, roots), name="crossfind-index", daemon=True
            )
            self._thread.start()

    def _run(self, fn: IndexFn, roots: list[Path]) -> None:
        services = self.services
        try:
            encoder = services.engine.encoder if services.engine is not None else services.load_encoder()
            with Index.open_for_write(services.db, encoder.id, encoder.dim,
                                      catalog_url=services.settings.catalog) as index:
                report = fn(roots, index, encoder, services.settings)
            self.report = _report_json(report)
            if services.engine is None:
                services.open_engine()
            self.state = "done"
        except Exception as exc:  # the job reports any failure; the server keeps running
            log.exception("indexing failed")
            self.error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.state = "failed"
        finally:
            self.finished_at = time.time()

    def wait(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "roots": self.roots,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "report": self.report,
            "error": self.error,
        }
