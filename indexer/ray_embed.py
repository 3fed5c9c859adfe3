"""Decoding and embedding on Ray (``crossfind index --executor ray[:ADDRESS]``).

The scan (hashing, linking, removing) stays in this process, as does the one writer: only the
files to embed go to Ray, as a Ray Data pipeline: the planned files (path, modality, sha256)
-> batches of ``batch_size`` files -> encoder actors, one per CPU slot, each loading the
encoder once. An actor decodes its batch with the same ``indexer.loaders.load`` the local
workers run (so a file is opened and checked by the same rule: a regular file, inside the
roots unless ``--follow-links``, its bytes matching the sha256 the scan planned), embeds it
with ``indexer.embedder.Embedder`` and sends back the segments and vectors. The writer here
writes them as the local executor does: rows and vectors in one transaction per batch,
checkpoints, the report.

Workers are sent paths, not bytes: every node must see the files at the same paths (a local
Ray does; a cluster mounts the collection at the same path on every node). A node that does
not see a file reports it skipped ("unreadable"), and a file that differs there from what the
scan hashed is skipped as changed, never indexed with another file's vectors.

Decoding runs in the encoder actor rather than in a stage of its own: decoding needs the
encoder's image preprocessing, which lives with the model, and a separate decode stage would
load the encoder a second time per node or hold CPU slots the actors need (on a small machine
the two stages then wait on each other forever).

Faults: an actor that dies (killed, out of memory, a decoder crashing) is restarted by Ray and
its batch retried, ``RETRIES`` times; a batch that still fails is dropped from the Ray run and
its files come back to the caller (``RayRun.missing``), which embeds them locally, where a
file that kills its decoder is found and skipped.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from indexer.embedder import Embedder, audio_supported
from indexer.loaders import CHANGED, Loaded, LoaderConfig, Skip, load, set_config
from indexer.plan import Pending
from search.errors import BadRequest, EncoderMismatch, ServiceUnavailable
from search.native_output import native_stderr_to_log

log = logging.getLogger(__name__)

# actor restarts, and retries of one batch, before its files fall back to this process
RETRIES = 3
_CONNECT_TIMEOUT_S = 5.0
_INSTALL = "pip install 'ray[data]'"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class RayExecutor:
    """Where and how to embed on Ray.

    ``address``: None starts a local Ray for the run with ``num_cpus`` CPUs (default: all
    cores); ``"auto"`` joins the cluster this machine belongs to; ``"HOST:PORT"`` or
    ``"ray://HOST:10001"`` a cluster by address. ``encoder`` is the encoder's registry name
    (each actor builds its own); ``hooks`` the ``settings.extra_encoders`` to load there first.
    """

    address: str | None = None
    encoder: str = "bundled"
    num_cpus: int | None = None
    hooks: str = ""
    verbose: bool = False

    @staticmethod
    def parse(text: str) -> str | None:
        """``--executor`` value -> the Ray address (None: a local Ray).

        Raises:
            BadRequest: neither ``ray`` nor ``ray:ADDRESS``.
        """
        kind, sep, address = text.partition(":")
        if kind != "ray" or (sep and not address):
            raise BadRequest(
                f"unknown --executor {text!r}; use local, ray (a local Ray), ray:auto (the "
                "cluster this machine belongs to) or ray:HOST:PORT / ray:ray://HOST:10001"
            )
        return address or None

    def check(self) -> None:
        """Fail fast, before any work: Ray is importable and the cluster's port answers.

        Raises:
            ServiceUnavailable: Ray is not installed, or the cluster cannot be reached.
            BadRequest: the address is malformed.
        """
        _import_ray()
        if self.address is not None:
            _check_reachable(self.address)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # the pipeline's API, checked here rather than mid-run
    except ImportError:
        raise ServiceUnavailable(
            f"--executor ray needs Ray, which is not installed: {_INSTALL}, or use --executor local"
        ) from None
    return ray


@contextmanager
def ray_session(executor: RayExecutor) -> Iterator[Any]:
    """Ray, connected (or started) for the run and shut down after it; the ``ray`` module.

    Reuses a Ray this process already started (the tests' fixture) and leaves it running.

    Raises:
        ServiceUnavailable: Ray is not installed, or the cluster cannot be reached.
    """
    ray = _import_ray()
    _quiet(executor.verbose)
    if ray.is_initialized():
        yield ray
        return
    level = logging.INFO if executor.verbose else logging.ERROR
    common: dict[str, Any] = dict(
        log_to_driver=executor.verbose, logging_level=level, include_dashboard=False,
    )
    try:
        with _native_quiet(executor.verbose):
            if executor.address is None:
                ray.init(num_cpus=executor.num_cpus or os.cpu_count() or 1, **common)
            else:
                _check_reachable(executor.address)
                ray.init(address=executor.address, **common)
    except (ServiceUnavailable, BadRequest):
        raise
    except Exception as exc:  # ConnectionError, RuntimeError, gRPC errors: all mean "not there"
        where = "a local Ray" if executor.address is None else f"the Ray cluster at {executor.address!r}"
        raise ServiceUnavailable(
            f"cannot start or reach {where}: {_first_line(exc)}; start one with `ray start --head` "
            "or use --executor local"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in seconds where Ray would retry a dead address for a minute."""
    if address == "auto":  # the cluster this machine's Ray files or $RAY_ADDRESS name
        try:
            from ray._private.services import canonicalize_bootstrap_address

            found = canonicalize_bootstrap_address("auto")
        except (ImportError, AttributeError, ValueError):
            return  # left to ray.init, which fails fast without one
        except ConnectionError:
            found = None
        if found is None:
            raise ServiceUnavailable(
                "--executor ray:auto: no Ray cluster runs on this machine (start one with "
                "`ray start --head`, set $RAY_ADDRESS, or use --executor ray for a local one)"
            )
        address = found
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise BadRequest(
            f"--executor ray:{address}: give the cluster as HOST:PORT (its GCS, port 6379) or "
            "ray://HOST:10001 (Ray Client)"
        )
    try:
        socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ServiceUnavailable(
            f"cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}); check the "
            "address and that the cluster is up, or use --executor local"
        ) from None


def _quiet(verbose: bool) -> None:
    """Ray's own logging stays off the terminal unless --verbose (its log files keep it); a
    failure reaches the user as one line (``RayRun``), not as Ray's stack traces."""
    level = logging.INFO if verbose else logging.CRITICAL
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(level)
    if verbose:
        return
    # the driver prints every failed task of the cluster's (with its traceback) to stderr,
    # log_to_driver or not: a retried actor would flood the terminal. To the log instead.
    import ray._private.worker as ray_worker

    if hasattr(ray_worker, "print_to_stdstream"):
        ray_worker.print_to_stdstream = _log_cluster_message


def _log_cluster_message(data: dict, ignore_prefix: bool = False) -> None:
    for line in data.get("lines", []):
        log.debug("ray: %s", _ANSI.sub("", str(line)))


@contextmanager
def _native_quiet(verbose: bool) -> Iterator[None]:
    """Ray's C++ core logs warnings to fd 2 (e.g. on every actor it starts for Ray Data):
    errors only unless --verbose. The level is read when ``ray.init`` starts the core, which
    announces it on fd 2 itself: that line goes to the log."""
    if verbose or "RAY_BACKEND_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    try:
        with native_stderr_to_log():
            yield
    finally:
        del os.environ["RAY_BACKEND_LOG_LEVEL"]


def _reason(exc: BaseException) -> str:
    """What went wrong on a Ray node: crossfind's own error where the remote traceback ends in
    one (e.g. the model missing there), else the error's first line."""
    text = _ANSI.sub("", str(exc))
    ours = [line.split(": ", 1)[1] for line in text.splitlines()
            if line.startswith("search.errors.") and ": " in line]
    return ours[-1] if ours else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0]


class _EncoderActor:
    """One per CPU slot: loads the encoder once, then decodes and embeds batches of files.
    Subclassed per run with its settings as class attributes (``_actor_class``): Ray ships
    the class, and a restarted actor builds itself again from it alone."""

    encoder_name = ""
    encoder_id = ""
    cache_dir: str | None = None
    hooks = ""
    batch_size = 32
    config: dict[str, Any] = {}  # LoaderConfig fields but the encoder's preprocessing

    def __init__(self) -> None:
        # one actor per core: the models' own thread pools would fight each other
        os.environ.setdefault("CROSSFIND_ONNX_THREADS", "1")
        import torch

        torch.set_num_threads(1)
        from search.encoders.registry import create_encoder, load_hooks

        load_hooks(self.hooks)
        encoder = create_encoder(self.encoder_name, Path(self.cache_dir) if self.cache_dir else None)
        if encoder.id != self.encoder_id:
            raise EncoderMismatch(
                f"encoder {self.encoder_name!r} is {encoder.id!r} on this Ray node, "
                f"{self.encoder_id!r} where the index is written"
            )
        set_config(LoaderConfig(preprocess_image=encoder.preprocess_image, **self.config))
        self.embedder = Embedder(encoder, self.batch_size, lambda: audio_supported(encoder))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        results: list[Loaded | Skip] = []
        for path, modality, sha256 in zip(batch["path"], batch["modality"], batch["sha256"]):
            result = load(str(path), str(modality))
            if isinstance(result, Loaded) and result.sha256 not in (None, sha256):
                result = Skip(str(path), CHANGED)
            results.append(result)
        loaded = [r for r in results if isinstance(r, Loaded)]
        before = self.embedder.seconds
        vectors = iter(self.embedder.embed(loaded))
        seconds = self.embedder.seconds - before
        payloads = []
        for result in results:
            if isinstance(result, Loaded):
                result.inputs, result.streamed = [], None  # embedded: not sent back
                payloads.append(pickle.dumps((result, next(vectors)), pickle.HIGHEST_PROTOCOL))
            else:
                payloads.append(pickle.dumps((result, None), pickle.HIGHEST_PROTOCOL))
        share = seconds / max(1, len(results))
        return {"i": batch["i"], "payload": payloads, "encode_s": [share] * len(results)}


def _actor_class(encoder_name: str, encoder_id: str, cache_dir: Path | None, hooks: str,
                 batch_size: int, config: LoaderConfig) -> type:
    settings = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "preprocess_image"}
    return type("CrossfindEncoder", (_EncoderActor,), {
        "encoder_name": encoder_name, "encoder_id": encoder_id,
        "cache_dir": str(cache_dir) if cache_dir else None, "hooks": hooks,
        "batch_size": batch_size, "config": settings,
    })


@dataclass
class Embedded:
    """One planned file back from Ray: decoded and embedded, or why not."""

    item: Pending
    result: Loaded | Skip
    vectors: np.ndarray | str | None
    encode_s: float


class RayRun:
    """Embeds ``pending`` on the connected Ray: iterate for the results, a Ray batch at a time
    (in no particular order); then ``missing`` holds the files Ray gave up on."""

    def __init__(self, ray: Any, pending: list[Pending], executor: RayExecutor, encoder_id: str,
                 cache_dir: Path | None, batch_size: int, config: LoaderConfig) -> None:
        self.ray, self.pending, self.batch_size = ray, pending, max(1, batch_size)
        self.actor = _actor_class(
            executor.encoder, encoder_id, cache_dir, executor.hooks, self.batch_size, config
        )
        self.seen: set[int] = set()

    def slots(self) -> int:
        """Encoder actors: one per CPU of the cluster.

        Raises:
            ServiceUnavailable: the cluster has no CPU (its actors would wait forever).
        """
        cpus = int(self.ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            raise ServiceUnavailable(
                "the Ray cluster has no CPU to run encoders on; add worker nodes or use --executor local"
            )
        return cpus

    def __iter__(self) -> Iterator[list[Embedded]]:
        import ray.data

        rows = [
            {"i": i, "path": p.path, "modality": p.modality, "sha256": p.sha256}
            for i, p in enumerate(self.pending)
        ]
        n_actors = min(self.slots(), len(rows))
        # a batch (and block: what a failure loses) per actor at least, up to batch_size files
        per_batch = max(1, min(self.batch_size, math.ceil(len(rows) / n_actors)))
        with warnings.catch_warnings():
            # max_restarts / max_task_retries have no named parameter yet (Ray 2.60); Ray
            # Data's tuning hints are not the user's to act on
            warnings.simplefilter("ignore")
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.max_errored_blocks = -1  # a batch that fails for good falls back to this process
            ds = ray.data.from_items(
                rows, override_num_blocks=math.ceil(len(rows) / per_batch)
            ).map_batches(
                self.actor, batch_size=per_batch, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=1,
                max_restarts=RETRIES, max_task_retries=RETRIES,
            )
            yield from self._results(ds)

    def _results(self, ds: Any) -> Iterator[list[Embedded]]:
        try:
            for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                batch = []
                for i, payload, encode_s in zip(out["i"], out["payload"], out["encode_s"]):
                    result, vectors = pickle.loads(payload)
                    self.seen.add(int(i))
                    batch.append(Embedded(self.pending[int(i)], result, vectors, float(encode_s)))
                yield batch
        except self.ray.exceptions.RayError as exc:
            raise ServiceUnavailable(
                f"the Ray run failed: {_reason(exc)} (what was written so far is kept; "
                "run again to go on)"
            ) from exc

    @property
    def missing(self) -> list[Pending]:
        return [p for i, p in enumerate(self.pending) if i not in self.seen]
