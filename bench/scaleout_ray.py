"""Ray figures for the ``scaleout`` section, and embedding throughput per core for
docs/scale-out.md. Standalone: ``python -m bench.scaleout_ray [--quick] [--json]``.

``ray_index_images_per_s`` vs ``index_images_per_s``: the same Flickr8k photos indexed end to
end with the bundled encoder by ``--executor ray`` (a local Ray of N CPUs, N = the cores, one
encoder actor per CPU) and by the local executor (N decoding workers and the model in this
process); their ratio ``ray_over_local_index_speed`` is the cost (< 1) or gain of the
distributed path on one machine. The Ray figure counts the actors' start and model loading,
which every run pays (``ray_first_batch_s``: from the start of the run to the first batch
written; ``ray_steady_images_per_s``: the rate past it), but not starting Ray itself (``ray_start_s``),
which a cluster has done before.

``embed_*_per_core_s``: the bundled encoder on ready inputs, one thread, divided by the CPU
seconds spent (not wall time, so other processes on the machine do not lower it): images,
text passages, and seconds of audio (5 s windows every 2.5 s: 2.5 s of sound a window).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench.context import BenchContext, run_standalone


def _encoder(threads: int | None = None):
    from search.encoders import create_encoder
    from search.errors import ModelUnavailable

    if threads is not None:
        os.environ["CROSSFIND_ONNX_THREADS"] = str(threads)
    try:
        try:
            return create_encoder("bundled", reuse=threads is None)
        except ModelUnavailable:  # no learned projection: the same backbone, bridge only
            return create_encoder("bundled:bridge", reuse=threads is None)
    finally:
        if threads is not None:
            del os.environ["CROSSFIND_ONNX_THREADS"]


def _photos(ctx: BenchContext) -> Path | None:
    data = ctx.shared_data
    if data is None:
        return None
    n = 64 if ctx.quick else 256
    dest = ctx.scratch / "ray-photos"
    if not dest.exists():
        dest.mkdir(parents=True)
        for f in sorted((data / "flickr8k_extra" / "images").glob("*.jpg"))[:n]:
            shutil.copy(f, dest / f.name)
    return dest


def _index(folder: Path, db: Path, encoder, executor=None):
    from indexer import index_paths
    from search.index import Index
    from search.settings import get_settings

    cores = os.cpu_count() or 1
    settings = get_settings(db=db, workers=cores)
    with Index.open_for_write(db, encoder.id, encoder.dim, reindex=True) as index:
        return index_paths([str(folder)], index, encoder, settings, progress=False, executor=executor)


def ray_figures(ctx: BenchContext) -> dict[str, object]:
    """``ray_index_images_per_s``, ``index_images_per_s`` and ``ray_over_local_index_speed``."""
    photos = _photos(ctx)
    if photos is None:
        return {"ray_skipped": "../shared/data is absent"}
    try:
        import ray
    except ImportError:
        return {"ray_skipped": "ray is not installed"}
    from indexer.ray_embed import RayExecutor

    encoder = _encoder()
    encoder.encode_image_arrays(np.zeros((2, 3, 224, 224), np.float32))  # load + warm
    cores = os.cpu_count() or 1
    local = _index(photos, ctx.scratch / "db-local", encoder)
    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    start_s = time.perf_counter() - t0
    try:
        remote = _index(photos, ctx.scratch / "db-ray", encoder, RayExecutor(encoder=encoder.id))
    finally:
        ray.shutdown()
    assert remote.by_modality["image"].vectors == local.by_modality["image"].vectors
    local_rate, ray_rate = local.rate("image"), remote.rate("image")
    return {
        "ray_index_images_per_s": round(ray_rate, 1),
        "index_images_per_s": round(local_rate, 1),
        "ray_over_local_index_speed": round(ray_rate / local_rate, 3) if local_rate else 0.0,
        "ray_index_images_n": remote.by_modality["image"].vectors,
        "ray_index_cores": cores,
        "ray_start_s": round(start_s, 1),
        # a run's fixed cost (actors started, models loaded, the first batch back), the rate
        # past it, and the local executor's past its first batch
        "ray_first_batch_s": round(remote.first_batch[0], 1) if remote.first_batch else None,
        "ray_steady_images_per_s": _steady(remote),
        "index_steady_images_per_s": _steady(local),
        "ray_index_seconds": round(remote.seconds, 1),
        "ray_load_avg_1min": round(os.getloadavg()[0], 2),
    }


def _steady(report) -> float | None:
    """Vectors per second after the first batch was written."""
    if report.first_batch is None:
        return None
    at, n = report.first_batch
    rest = report.by_modality["image"].vectors - n
    return round(rest / (report.seconds - at), 1) if rest > 0 and report.seconds > at else None


def _per_cpu_s(fn, n: int) -> float:
    """``n`` items over the CPU seconds ``fn()`` takes (this process, one thread)."""
    fn()  # warm: first calls allocate and load
    t0 = time.process_time()
    fn()
    return n / max(time.process_time() - t0, 1e-9)


def embedding_per_core(ctx: BenchContext) -> dict[str, object]:
    """Images, text passages and audio seconds embedded per CPU second, one thread."""
    import torch

    from search.media import open_image
    from search.text import split_passages

    photos = _photos(ctx)
    data = ctx.shared_data
    if photos is None or data is None:
        return {"embed_per_core_skipped": "../shared/data is absent"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        encoder = _encoder(threads=1)
        n = 32 if ctx.quick else 128
        images = np.stack([encoder.preprocess_image(open_image(p)) for p in sorted(photos.iterdir())[:n]])
        docs = sorted((data / "agnews_test" / "docs").glob("*.txt"))[: n]
        passages = [p.text for d in docs for p in split_passages(d.read_text(), 120, 30) if p.text]
        rng = np.random.default_rng(0)
        windows = [(0.1 * rng.standard_normal(5 * 16_000)).astype(np.float32) for _ in range(n // 2)]

        def batches(fn, items, size=32):
            return lambda: [fn(items[i : i + size]) for i in range(0, len(items), size)]

        image_rate = _per_cpu_s(batches(encoder.encode_image_arrays, images), len(images))
        text_rate = _per_cpu_s(batches(encoder.encode_text, passages), len(passages))
        out: dict[str, object] = {
            "embed_images_per_core_s": round(image_rate, 1),
            "embed_text_passages_per_core_s": round(text_rate, 1),
        }
        if encoder.supports("audio"):
            rate = _per_cpu_s(batches(encoder.encode_audio, windows), len(windows))
            out["embed_audio_s_per_core_s"] = round(rate * 2.5, 1)  # 2.5 s of new sound a window
        out["embed_per_core_model"] = encoder.id
        return out
    finally:
        torch.set_num_threads(threads)


def run(ctx: BenchContext) -> dict[str, object]:
    return {**ray_figures(ctx), **embedding_per_core(ctx)}


if __name__ == "__main__":
    sys.exit(run_standalone("python -m bench.scaleout_ray", run))
