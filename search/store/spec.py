"""``--store backend:spec`` and the options a writer builds its vector index with.

``faiss:auto`` (default) stays exact while that is fast, then picks an ANN index sized for the
collection and a memory budget; ``faiss:Flat`` is always exact; any other ``faiss:<factory>``
is a FAISS factory string (``faiss:HNSW32``, ``faiss:IVF4096,PQ48``). ``milvus:<file>.db``
(Milvus Lite) or ``milvus:http://host:19530[#collection]`` keeps the vectors in Milvus
(``search.store.milvus_store``). A backend registers a validator here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from search.errors import BadRequest

if TYPE_CHECKING:
    from search.settings import Settings

DEFAULT_SPEC = "faiss:auto"


def _check_faiss(spec: str) -> str:
    if spec.lower() == "auto":
        return "auto"
    if spec.lower() == "flat":
        return "Flat"
    _check_faiss_numbers(spec)
    import faiss

    try:  # a dimension every factory accepts (PQ m divides it, as do most OPQ/IVF parts)
        faiss.index_factory(_probe_dim(spec), spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else "rejected"
        raise BadRequest(
            f"--store faiss:{spec} is not a FAISS factory string ({first}); use faiss:auto, "
            "faiss:Flat, faiss:HNSW32, faiss:IVF1024,SQ8 or faiss:IVF4096,PQ48"
        ) from None
    return spec


def _check_faiss_numbers(spec: str) -> None:
    """What FAISS's factory accepts but then aborts on (HNSW1 segfaults, HNSW0 aborts), cannot
    search (IVF0: nprobe 0) or cannot wrap (IDMap: the store maps ids itself): refused here,
    since a crash in FAISS's C++ cannot be caught and the spec is saved with the index."""
    links = re.search(r"(HNSW|NSG)(\d+)", spec)
    if re.search(r"(?<![0-9])0+(?![0-9])", spec):
        what = "a zero parameter"
    elif links and int(links.group(2)) < 2:
        what = f"{links.group(0)} (fewer than 2 links)"
    elif "idmap" in spec.lower():
        what = "an IDMap (crossfind maps ids itself)"
    else:
        return
    raise BadRequest(
        f"--store faiss:{spec} asks for {what}; use faiss:auto, faiss:Flat, faiss:HNSW32, "
        "faiss:IVF1024,SQ8 or faiss:IVF4096,PQ48"
    )


def _probe_dim(spec: str) -> int:
    m = [int(x) for x in re.findall(r"PQ(\d+)", spec)] or [1]
    return math.lcm(384, *m)


def _check_milvus(spec: str) -> str:
    from search.store.milvus_spec import check_spec

    return check_spec(spec)


# backend name -> validator returning the normalised spec (raises BadRequest)
BACKENDS: dict[str, Callable[[str], str]] = {"faiss": _check_faiss, "milvus": _check_milvus}


@dataclass(frozen=True)
class StoreSpec:
    backend: str
    spec: str

    @classmethod
    def parse(cls, text: str) -> StoreSpec:
        """``backend:spec``; a bare backend name means its default (``faiss`` -> ``faiss:auto``).

        Raises:
            BadRequest: unknown backend or a spec the backend rejects (the message lists forms).
        """
        backend, sep, spec = text.strip().partition(":")
        backend = backend.lower()
        if backend not in BACKENDS:
            raise BadRequest(
                f"unknown vector store {text!r}; use {', '.join(b + ':<spec>' for b in BACKENDS)}"
                f" (e.g. {DEFAULT_SPEC}, faiss:Flat, faiss:HNSW32, milvus:./vectors.db)"
            )
        return cls(backend, BACKENDS[backend](spec if sep and spec else "auto"))

    def __str__(self) -> str:
        return f"{self.backend}:{self.spec}"

    @property
    def auto(self) -> bool:
        return self.spec == "auto"


@dataclass(frozen=True)
class StoreOptions:
    """How a writer sizes and tunes the derived vector index (``Settings.store_*``)."""

    # auto: exact (Flat) up to this many vectors, an ANN index above
    exact_max: int = 200_000
    # auto: memory for the ANN index's codes; Flat codes if they fit, else SQ8, else PQ
    memory_mb: float = 1024.0
    # nprobe / efSearch are the smallest reaching this recall@10 (after re-ranking) on a sample
    recall: float = 0.96
    # re-score the candidates of lossy codes (SQ, PQ) exactly from the stored vectors
    rerank: bool = True
    # the exact tail is folded into the index when it passes this fraction of it (or min)
    compact_fraction: float = 0.1
    compact_min: int = 8192

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreOptions:
        return cls(
            exact_max=settings.store_exact_max, memory_mb=settings.store_memory_mb,
            recall=settings.store_recall, rerank=settings.store_rerank,
            compact_fraction=settings.store_compact_fraction, compact_min=settings.store_compact_min,
        )


def min_train(factory: str) -> int:
    """Vectors needed before a factory's index can be trained well (never a first batch):
    39 per IVF list (FAISS's own warning threshold), 256 per PQ/SQ code book."""
    need = 0
    ivf = re.search(r"IVF(\d+)", factory)
    if ivf:
        need = max(need, 39 * int(ivf.group(1)))
    if re.search(r"PQ\d+|SQ\d|SQfp16|LSH", factory):
        need = max(need, 1000)
    return need


def auto_factory(n: int, dim: int, options: StoreOptions) -> str:
    """The index ``faiss:auto`` uses for ``n`` vectors: Flat while exact is fast; then IVF with
    about 2*sqrt(n) lists (a power of two) and the richest codes that fit the memory budget.
    The factory changes (and the index is rebuilt) each time n crosses a 4x step."""
    if n <= options.exact_max:
        return "Flat"
    # never more lists than the vectors can train (39 each, FAISS's warning threshold)
    nlist = 2 ** max(0, min(round(math.log2(2 * math.sqrt(n))), math.floor(math.log2(max(1, n / 39)))))
    budget = options.memory_mb * 2**20
    if n * dim * 4 <= budget:
        codes = "Flat"
    elif n * dim <= budget:
        codes = "SQ8"
    else:
        m = max(d for d in range(1, dim // 4 + 1) if dim % d == 0 and d <= 64)
        codes = f"PQ{m}"
    return f"IVF{nlist},{codes}"
