"""The spoken-digit expert: a small CNN that tells the ten digits apart.

The joint EfficientNet classifier learns *that* a clip is a spoken digit (speech looks nothing
like ESC-50 or UrbanSound8K), but under a shared training budget it does not learn *which*
digit: FSDD needs fine temporal detail in ~0.4 s of sound. This expert (about 0.1M parameters,
FINDINGS: 0.967 FSDD test in ~80 CPU-seconds) reads the first second of the same standardised
log-mel; at inference it splits the joint classifier's total digit probability among the ten
digits (``search.encoders.audio``). It is trained on the manifest's training rows only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search.checkpoints import AudioCheckpoint
from search.encoders.audio import read_checkpoint, silence_bands, stored_floor
from search.encoders.audio_nets import DigitNet
from search.errors import BadRequest
from training.audio_data import FPS, ClipSet
from training.audio_eval import classification_metrics

log = logging.getLogger(__name__)

DIGITS = tuple(str(i) for i in range(10))


def is_digit_set(clips: ClipSet) -> bool:
    return set(clips.labels) <= set(DIGITS) and len(set(clips.labels)) == 10


def train_digit_expert(train: ClipSet, val: ClipSet, mean: float, std: float, seed: int = 0,
                       epochs: int = 24, report: Callable[[str], None] = log.info,
                       floor: np.ndarray | None = None) -> dict[str, Any]:
    """Train the expert; returns {"state", "val_accuracy", "seconds"} (best epoch on ``val``);
    ``floor`` is the log-mels' per-band noise floor (None: 1e-6)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    net = DigitNet()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    steps = epochs * math.ceil(len(train.labels) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    x_all = _inputs(train, mean, std)
    y_all = torch.tensor([int(lab) for lab in train.labels])
    x_val = _inputs(val, mean, std)
    y_val = [int(lab) for lab in val.labels]
    silence = (torch.from_numpy(silence_bands(floor)) - mean) / std
    best, best_acc = None, -1.0
    for epoch in range(epochs):
        net.train()
        perm = torch.from_numpy(rng.permutation(len(y_all)))
        for b in range(0, len(y_all), 64):
            idx = perm[b : b + 64]
            x = x_all[idx].clone()
            shift = int(rng.integers(0, 6))  # the sound starts at 0 (trimmed); start it a bit later
            if shift:
                x = torch.cat([silence.expand(x.shape[0], -1, shift), x[..., :-shift]], dim=-1)
            x += float(rng.uniform(-0.3, 0.3))  # gain, in standardised log units
            loss = torch.nn.functional.cross_entropy(net(x), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.inference_mode():
            pred = net(x_val).argmax(dim=1).numpy()
        acc = classification_metrics(y_val, pred, 10)["accuracy"]
        if acc >= best_acc:
            best, best_acc = {k: v.detach().clone() for k, v in net.state_dict().items()}, acc
        report(f"digit expert epoch {epoch + 1}: loss {loss.item():.3f} val acc {acc:.3f}")
    return {"state": best, "val_accuracy": best_acc, "seconds": round(time.time() - t0, 1)}


def _inputs(clips: ClipSet, mean: float, std: float):

    mels = clips.mels[:, :, :FPS].astype(np.float32)
    return (torch.from_numpy(mels) - mean) / std


def attach_digit_expert(ckpt: AudioCheckpoint, train: list[ClipSet], val: list[ClipSet], seed: int,
                        report: Callable[[str], None] = log.info
                        ) -> tuple[AudioCheckpoint, dict[str, object] | None]:
    """``ckpt`` with an expert trained on the digit manifest among ``train`` (if any), and what
    training it reported."""
    for tr, va in zip(train, val):
        if is_digit_set(tr) and all(d in ckpt.labels for d in DIGITS):
            result = train_digit_expert(tr, va, ckpt.mel_mean, ckpt.mel_std, seed, report=report,
                                        floor=stored_floor(ckpt.front))
            state = {k: v.half() for k, v in result["state"].items()}
            return replace(ckpt, digit_state=state), {"digit_expert_val_accuracy": result["val_accuracy"],
                                                      "digit_expert_seconds": result["seconds"]}
    return ckpt, None


def reuse_digit_expert(ckpt: AudioCheckpoint, source: Path) -> tuple[AudioCheckpoint, dict[str, object]]:
    """``ckpt`` with ``source``'s digit expert and the front end it was trained on (its log-mel
    statistics and loudness rule), so it reads exactly what it learned from."""
    src = read_checkpoint(source)
    if src.digit_state is None:
        raise BadRequest(f"{source} has no digit expert; train without --digits-from")
    return (replace(ckpt, digit_state=src.digit_state, digit_front=src.digit_front or src.front),
            {"digit_expert": f"reused from {Path(source).name}"})
