"""Videos built with PyAV for benchmarks, measures and tests: scenes of still photos (a slow
zoom so no two frames are equal) with an optional sound track, one clip per scene."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

SR = 16_000


def make_video(
    path: Path, scenes: Sequence[np.ndarray], scene_s: float = 3.0,
    sounds: Sequence[np.ndarray] | None = None, fps: int = 8, size: tuple[int, int] = (192, 144),
    video: bool = True, codec: str = "mpeg4",
) -> Path:
    """Each scene shows ``scenes[i]`` (RGB pixels) for ``scene_s`` seconds; ``sounds[i]`` (16 kHz
    mono float) plays under it, cut or padded with silence to the scene. ``video=False`` writes
    the sound track alone; ``sounds=None`` writes no sound track."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps) if video else None
        if vs is not None:
            assert isinstance(vs, av.VideoStream)
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        aus = out.add_stream("aac", rate=SR, layout="mono") if sounds is not None else None
        assert aus is None or isinstance(aus, av.AudioStream)
        if vs is not None:
            for i, scene in enumerate(scenes):
                photo = Image.fromarray(scene).convert("RGB")
                n = int(scene_s * fps)
                for k in range(n):
                    zoom = 1.0 + 0.05 * k / max(1, n)  # a slow zoom: frames differ a little
                    w, h = photo.size
                    cw, ch = w / zoom, h / zoom
                    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
                    frame = av.VideoFrame.from_image(photo.resize(size, box=box))
                    frame.pts = i * n + k
                    frame.time_base = Fraction(1, fps)
                    for packet in vs.encode(frame):
                        out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
        if aus is not None and sounds is not None:
            track = np.concatenate([_fit(s, scene_s) for s in sounds]).astype(np.float32)
            step = 1024
            for k in range(0, len(track), step):
                chunk = track[k : k + step]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                frame.sample_rate = SR
                frame.pts = k
                frame.time_base = Fraction(1, SR)
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode(None):
                out.mux(packet)
    return path


def _fit(samples: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    samples = np.asarray(samples, np.float32)[:n]
    return np.pad(samples, (0, n - len(samples)))
