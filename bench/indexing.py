"""Indexing figures: the whole ``index_paths`` pipeline with the bundled encoder on real files.

``index_images_per_s``: real Flickr8k JPEGs (copied into scratch) from files on disk to vectors
in the index, end to end (walk, hash, decode + preprocess in workers, model, SQLite + FAISS
writes, final checkpoint). ``model_busy_fraction``: time inside encoder calls / wall time of
that run (1.0 = the model never waited on decoding or writing). ``index_images_vs_model_only``:
the pipeline's rate over the encoder's alone on ready batches (same photos, same process), a
ratio that holds under load from other processes, as does ``index_cpu_ms_per_image`` (CPU of
the indexer and its workers per image) and the rate it implies on 2 idle cores.
``index_text_passages_per_s``:
AG News documents, passages embedded per second. Models are loaded and warmed first: start-up
is not indexing speed.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from bench.context import BenchContext


def _index(paths: list[Path], db: Path, encoder):
    from indexer import index_paths
    from search.index import Index
    from search.settings import get_settings

    settings = get_settings(db=db)  # workers and batch size: defaults or CROSSFIND_* variables
    with Index.open_for_write(db, encoder.id, encoder.dim, reindex=True) as index:
        return index_paths([str(p) for p in paths], index, encoder, settings, progress=False)


def _copy(files: list[Path], dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, dest / f.name)
    return dest


def _model_only_rate(encoder, photos: list[Path]) -> float:
    """Images/s of the encoder alone on preprocessed batches: the ceiling for the pipeline."""
    from search.media import open_image

    arrays = np.stack([encoder.preprocess_image(open_image(p)) for p in photos])
    t0 = time.perf_counter()
    for i in range(0, len(arrays), 32):
        encoder.encode_image_arrays(arrays[i : i + 32])
    return len(arrays) / (time.perf_counter() - t0)


def _cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the decoding workers)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def run(ctx: BenchContext) -> dict[str, object]:
    data = ctx.shared_data
    if data is None:
        return {"indexing_skipped": "../shared/data is absent"}
    from search.encoders import create_encoder
    from search.errors import ModelUnavailable

    try:
        encoder = create_encoder("bundled")
    except ModelUnavailable:  # no learned projection: the same backbone, bridge only
        encoder = create_encoder("bundled:bridge")
    encoder.encode_image_arrays(np.zeros((2, 3, 224, 224), np.float32))  # load + warm
    encoder.encode_text(["warm up"])
    n_images = 100 if ctx.quick else 400
    photos = sorted((data / "flickr8k_extra" / "images").glob("*.jpg"))[:n_images]
    images = _copy(photos, ctx.scratch / "photos")
    cpu0, load0 = _cpu_s(), os.getloadavg()[0]
    report = _index([images], ctx.scratch / "db-images", encoder)
    n = report.by_modality["image"].vectors
    cpu_ms = (_cpu_s() - cpu0) / max(n, 1) * 1000
    out: dict[str, object] = {
        "index_images_per_s": round(report.rate("image"), 1),
        "model_busy_fraction": round(report.model_busy_fraction, 3),
        "index_images_n": n,
        "index_model": encoder.id,
        "index_workers": report.workers,
        # CPU of the indexer and its decoding workers per image, and the rate that CPU allows
        # on 2 idle cores: a figure that holds when other processes load the machine
        "index_cpu_ms_per_image": round(cpu_ms, 1),
        "index_images_per_s_2_idle_cores": round(2000 / cpu_ms, 1) if cpu_ms else 0.0,
        "index_load_avg_1min": round(max(load0, os.getloadavg()[0]), 2),
    }
    out["index_model_only_images_per_s"] = round(_model_only_rate(encoder, photos[:128]), 1)
    out["index_images_vs_model_only"] = round(
        out["index_images_per_s"] / max(out["index_model_only_images_per_s"], 1e-9), 3
    )
    n_docs = 100 if ctx.quick else 300
    texts = sorted((data / "agnews_test" / "docs").glob("*.txt"))[:n_docs]
    docs = _copy(texts, ctx.scratch / "docs")
    report = _index([docs], ctx.scratch / "db-text", encoder)
    out["index_text_passages_per_s"] = round(report.rate("text"), 1)
    out["index_text_model_busy_fraction"] = round(report.model_busy_fraction, 3)
    return out
