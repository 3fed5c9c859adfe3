"""Videos for tests (built by ``bench.synth.make_video``): scenes of flat colours or photos,
sound tracks of tones."""

from __future__ import annotations

import numpy as np

from bench.synth import SR, make_video

__all__ = ["colour_scene", "make_video", "tone"]


def tone(freq: float, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def colour_scene(
    rgb: tuple[int, int, int], seed: int = 0, size: tuple[int, int] = (192, 144)
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array(rgb, np.float32)
    return np.clip(base + rng.normal(0, 10, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
