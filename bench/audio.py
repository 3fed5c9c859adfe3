"""Audio figures: ``index_audio_x_realtime`` (audio seconds indexed per wall second).

Measured through the real indexing path (``indexer.pipeline.index_paths``: decode, trim,
stream windows, encode, write the index) when the indexer is present, else through
``iter_windows`` + ``encode_audio`` directly; ``index_audio_path`` says which. The audio head is
loaded and warmed up before the clock starts (model loading is not indexing).
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import numpy as np

from bench.context import BenchContext


def _corpus(ctx: BenchContext, n_clips: int) -> tuple[Path, float, str]:
    """A folder of audio files to index: ESC-50 fold-4 clips, or synthetic ones without data."""
    import soundfile as sf

    from search.audio import audio_duration

    folder = ctx.scratch / "audio_corpus"
    folder.mkdir(parents=True, exist_ok=True)
    data = ctx.shared_data
    if data is not None:
        clips = sorted((data / "esc50_subset" / "audio").glob("4-*.flac"))[:: max(1, 400 // n_clips)][:n_clips]
        for clip in clips:
            shutil.copy(clip, folder / clip.name)
        source = "esc50 fold4 clips"
    else:
        rng = np.random.default_rng(0)
        for i in range(n_clips):
            sf.write(folder / f"synthetic_{i}.flac", (0.1 * rng.standard_normal(5 * 16_000)).astype(np.float32), 16_000)
        source = "synthetic noise clips"
    total = sum(audio_duration(p) for p in folder.iterdir())
    return folder, total, source


def run(ctx: BenchContext) -> dict[str, object]:
    import torch

    from search.audio import embed_clip, iter_windows, load_audio
    from search.encoders import create_encoder
    from search.settings import get_settings

    settings = get_settings(db=ctx.scratch / "audio_index", cache_dir=get_settings().cache_dir)
    encoder = create_encoder(settings.model, settings.cache_dir)
    if encoder.audio_head() is None:
        return {"audio_skipped": f"encoder {encoder.id!r} has no audio head (weights missing)"}
    folder, seconds, source = _corpus(ctx, 16 if ctx.quick else 60)
    first = next(folder.iterdir())
    encoder.encode_audio([w.samples for w in iter_windows(first)])  # warm-up
    t0 = time.perf_counter()
    if importlib.util.find_spec("indexer.pipeline") is not None:
        from indexer.pipeline import index_paths
        from search.index import Index

        index = Index.open_for_write(settings.db, encoder.id, encoder.dim)
        try:
            report = index_paths([folder], index, encoder, settings, progress=False)
        finally:
            index.close()
        path = "indexer.pipeline.index_paths"
        windows = report.by_modality["audio"].vectors
        if report.skipped:
            raise RuntimeError(f"bench corpus files skipped: {report.skipped[:3]}")
    else:
        windows = 0
        for f in sorted(folder.iterdir()):
            ws = list(iter_windows(f, settings.audio_window_s, settings.audio_hop_s))
            encoder.encode_audio([w.samples for w in ws])
            windows += len(ws)
        path = "iter_windows+encode_audio (no indexer)"
    wall = time.perf_counter() - t0
    query = load_audio(first)
    t1 = time.perf_counter()
    for _ in range(3):
        embed_clip(encoder, query)
    query_ms = (time.perf_counter() - t1) / 3 * 1000
    return {
        "index_audio_x_realtime": round(seconds / wall, 1),
        "index_audio_seconds": round(seconds, 1),
        "index_audio_wall_s": round(wall, 2),
        "index_audio_windows": windows,
        "index_audio_path": path,
        "index_audio_corpus": source,
        "audio_query_5s_ms": round(query_ms, 1),
        "audio_torch_threads": torch.get_num_threads(),
    }
