"""Video figures: ``index_video_x_realtime`` (video seconds indexed per wall second, end to end
with the bundled encoder) and text -> video moment R@1 / R@5 (right video *and* right scene).

The moment set: 30 generated videos of 3 scenes each, every scene a Flickr8k *train* photo
(4 s, a slow zoom) over an ESC-50 clip from folds 1/2/3/5 (never fold 4). A query is a caption
of one scene's photo; a hit counts when it is the right video and its moment (the middle of
its start_s..end_s) lies in that photo's scene. Hits are grouped one per video (the default).
Note: the bundled image projection was trained on Flickr8k train photos, so this measures the
video path (scene cuts, frame choice, times, grouping) on photos the encoder knows well.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from bench.context import BenchContext
from bench.synth import make_video

SCENE_S = 4.0
SCENES = 3


def _train_captions(data: Path) -> dict[str, str]:
    """Flickr8k_1k train photo path -> its first caption."""
    out: dict[str, str] = {}
    with open(data / "flickr8k_1k" / "captions_all.csv") as fh:
        for row in csv.DictReader(fh):
            if row["split"] == "train":
                out.setdefault(str(data / "flickr8k_1k" / row["path"]), row["caption"])
    return out


def _train_clips(data: Path) -> list[Path]:
    with open(data / "esc50_folds1235" / "manifest.csv") as fh:
        return [data / "esc50_folds1235" / r["path"] for r in csv.DictReader(fh)]


def _moment_set(
    ctx: BenchContext, data: Path, n_videos: int
) -> tuple[Path, list[tuple[str, Path, int]]]:
    """Write the videos; return (folder, [(caption, video, scene index)])."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    captions = _train_captions(data)
    photos = sorted(captions)
    rng.shuffle(photos)
    clips = _train_clips(data)
    rng.shuffle(clips)
    folder = ctx.scratch / "video_moments"
    queries: list[tuple[str, Path, int]] = []
    for v in range(n_videos):
        scene_photos = photos[v * SCENES : (v + 1) * SCENES]
        scenes = [np.asarray(Image.open(p).convert("RGB")) for p in scene_photos]
        sounds = [sf.read(clips[v * SCENES + i], dtype="float32")[0] for i in range(SCENES)]
        path = make_video(folder / f"video_{v:02d}.mp4", scenes, SCENE_S, sounds,
                          fps=10, size=(320, 240), codec="libx264")
        queries.extend((captions[p], path, i) for i, p in enumerate(scene_photos))
    return folder, queries


def _long_videos(ctx: BenchContext, data: Path, n: int, seconds: float) -> Path:
    """Longer 640x360 25 fps H.264 videos (a scene every 6 s) for the throughput figure."""
    import soundfile as sf

    folder = ctx.scratch / "video_long"
    photos = sorted(_train_captions(data))[-200:]
    clips = _train_clips(data)[-200:]
    per = int(seconds / 6.0)
    for v in range(n):
        scenes = [np.asarray(Image.open(p).convert("RGB")) for p in photos[v * per : (v + 1) * per]]
        sounds = [sf.read(c, dtype="float32")[0] for c in clips[v * per : (v + 1) * per]]
        make_video(folder / f"long_{v}.mp4", scenes, 6.0, sounds, fps=25, size=(640, 360),
                   codec="libx264")
    return folder


def run(ctx: BenchContext) -> dict[str, object]:
    if ctx.shared_data is None:
        return {"video_skipped": "../shared/data missing"}
    from indexer.pipeline import index_paths
    from search.encoders import create_encoder
    from search.engine import Engine
    from search.index import Index
    from search.query import Filters, Query
    from search.settings import get_settings

    n_videos = 10 if ctx.quick else 30
    folder, queries = _moment_set(ctx, ctx.shared_data, n_videos)
    encoder = create_encoder("bundled", get_settings().cache_dir)
    encoder.encode_text(["warm up"])
    if encoder.audio_head() is None:
        return {"video_skipped": "the bundled audio weights are missing"}
    out: dict[str, object] = {}
    settings = get_settings(db=ctx.scratch / "video_index", cache_dir=get_settings().cache_dir)
    with Index.open_for_write(settings.db, encoder.id, encoder.dim) as index:
        report = index_paths([folder], index, encoder, settings, progress=False)
    total_s = n_videos * SCENES * SCENE_S
    out["index_video_x_realtime_240p"] = round(total_s / report.seconds, 1)
    with Index.open(settings.db) as index:
        engine = Engine(index, encoder)
        r1 = r5 = video_r1 = frames_first = 0
        for caption, path, scene in queries:
            hits = engine.search(Query.text(caption, k=5, filters=Filters(modality=["video"]))).hits
            span = (scene * SCENE_S, (scene + 1) * SCENE_S)
            ok = [
                h.path == str(path) and span[0] <= ((h.start_s or 0) + (h.end_s or 0)) / 2 < span[1]
                for h in hits
            ]
            r1 += bool(ok[:1] and ok[0])
            r5 += any(ok)
            video_r1 += bool(hits) and hits[0].path == str(path)
            frames_first += bool(hits) and hits[0].stream == "frame"
    n = len(queries)
    out.update({
        "video_moment_queries": n,
        "video_moment_r1": round(r1 / n, 3),
        "video_moment_r5": round(r5 / n, 3),
        "video_right_video_r1": round(video_r1 / n, 3),
        "video_top_hit_is_frame": round(frames_first / n, 3),
    })
    long_n, long_s = (1, 30.0) if ctx.quick else (2, 60.0)
    long_folder = _long_videos(ctx, ctx.shared_data, long_n, long_s)
    settings = get_settings(db=ctx.scratch / "video_long_index", cache_dir=get_settings().cache_dir)
    with Index.open_for_write(settings.db, encoder.id, encoder.dim) as index:
        report = index_paths([long_folder], index, encoder, settings, progress=False)
    out["index_video_x_realtime"] = round(long_n * long_s / report.seconds, 1)
    out["index_video_model_busy_fraction"] = round(report.model_busy_fraction, 3)
    return out
