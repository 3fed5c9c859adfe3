"""Training data for the audio encoder: manifests, cached log-mels, splits and augmentation.

Log-mels are computed once per manifest (through the same preprocessing as indexing: 16 kHz
mono, silence trim, loudness normalisation only when a gain cap is given) and cached as float16 under the cache dir, so
training epochs never decode audio.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from search.audio import load_audio, trim_silence
from search.encoders.audio import LogMel, normalize_loudness
from search.encoders.audio_labels import canonical
from search.errors import BadRequest, UnsupportedMedia
from training.config import TrainConfig

log = logging.getLogger(__name__)

CACHE_VERSION = 1
FPS = 50  # log-mel frames per second (16 kHz / hop 320)
SAME_SOURCE_COL = "esc50_fold4_same_source"


@dataclass
class ClipSet:
    """One manifest's clips of some splits: raw log-mels [n, 128, frames] (float16)."""

    name: str
    mels: np.ndarray
    labels: list[str]  # canonical labels
    splits: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)

    def subset(self, mask: np.ndarray) -> ClipSet:
        idx = np.flatnonzero(mask)
        return ClipSet(self.name, self.mels[idx], [self.labels[i] for i in idx],
                       [self.splits[i] for i in idx], [self.rows[i] for i in idx])


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Manifest rows (path made absolute); raises ``BadRequest`` naming the missing column."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise BadRequest(f"cannot read manifest {path}: {exc.strerror}") from None
    for col in ("path", "label", "split"):
        if rows and col not in rows[0]:
            raise BadRequest(f"manifest {path} has no {col!r} column (need path, label, split)")
    for r in rows:
        r["path"] = str((path.parent / r["path"]).resolve())
    return rows


def clip_seconds(rows: list[dict[str, str]]) -> float:
    """The stored length per clip for a manifest: its longest clip, 1 to 5 s."""
    longest = max(sf.info(r["path"]).duration for r in rows[: min(len(rows), 400)])
    return float(min(5.0, max(1.0, np.ceil(longest))))


def load_clipset(manifest: Path, cache_dir: Path, splits: set[str] | None = None,
                 max_gain_db: float | None = 30.0) -> ClipSet:
    """Log-mels of a manifest's clips (all splits, or ``splits``), computed once and cached;
    ``max_gain_db`` is the loudness normalisation's gain cap (None: levels left as recorded)."""
    rows = read_manifest(manifest)
    if splits is not None:
        rows = [r for r in rows if r["split"] in splits]
    if not rows:
        raise BadRequest(f"manifest {manifest} has no rows in splits {sorted(splits or [])}")
    seconds = clip_seconds(rows)
    key = hashlib.sha256(
        f"{CACHE_VERSION}|{seconds}|{_level_key(max_gain_db)}".encode() + "\n".join(r["path"] for r in rows).encode()
    ).hexdigest()[:16]
    cache = Path(cache_dir) / "audio_train" / f"{Path(manifest).parent.name}-{key}.npy"
    if cache.exists():
        mels = np.load(cache)
    else:
        mels = compute_mels([r["path"] for r in rows], seconds, max_gain_db=max_gain_db)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, mels)
    name = Path(manifest).parent.name
    return ClipSet(name, mels, [canonical(r["label"]) for r in rows], [r["split"] for r in rows], rows)


def _level_key(max_gain_db: float | None) -> str:
    # the original (normalised, +30 dB cap) cache keeps its key
    return "" if max_gain_db == 30.0 else f"gain{max_gain_db}|"


def compute_mels(paths: list[str], seconds: float, batch: int = 64,
                 max_gain_db: float | None = 30.0) -> np.ndarray:
    """Raw log-mels (float16) of each clip's trimmed first ``seconds``, loudness-normalised
    with gain capped at ``max_gain_db`` (None: levels as recorded)."""
    n_samples = int(seconds * 16_000)
    front = LogMel()
    out: list[np.ndarray] = []
    for s in range(0, len(paths), batch):
        waves = np.zeros((len(paths[s : s + batch]), n_samples), np.float32)
        for row, p in enumerate(paths[s : s + batch]):
            try:
                clip, _ = trim_silence(load_audio(p))
            except UnsupportedMedia as exc:  # a silent clip stays silence
                log.warning("training clip %s: %s", p, exc)
                continue
            clip = clip[:n_samples]
            if max_gain_db is not None:
                clip = normalize_loudness(clip, max_gain_db)
            waves[row, : len(clip)] = clip
        with torch.inference_mode():
            out.append(front.raw(torch.from_numpy(waves)).numpy().astype(np.float16))
    return np.concatenate(out)


def with_floor(clips: ClipSet, floor: np.ndarray) -> ClipSet:
    """``clips`` with its cached log(mel power + 1e-6) moved onto a per-band noise ``floor``
    (log(mel power + floor), as ``LogMel(floor=...)`` computes at inference)."""
    log_floor = np.log(np.asarray(floor, np.float32))[None, :, None]
    mels = np.logaddexp(clips.mels.astype(np.float32), log_floor).astype(np.float16)
    return ClipSet(clips.name, mels, clips.labels, clips.splits, clips.rows)


def holdout(clips: ClipSet, fraction: float, seed: int, group_col: str | None = None) -> np.ndarray:
    """A stratified validation mask: ``fraction`` of each label (whole groups when
    ``group_col`` names e.g. a source-recording column, so no recording is on both sides)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(clips.labels), bool)
    labels = np.array(clips.labels)
    for lab in sorted(set(clips.labels)):
        idx = np.flatnonzero(labels == lab)
        groups = [clips.rows[i].get(group_col) or str(i) for i in idx] if group_col else [str(i) for i in idx]
        uniq = sorted(set(groups))
        rng.shuffle(uniq)
        want, taken = max(1, round(fraction * len(idx))), set[str]()
        for g in uniq:
            if sum(groups.count(t) for t in taken) >= want:
                break
            taken.add(g)
        mask[idx[[g in taken for g in groups]]] = True
    return mask


def trainable_and_held_out(clips: ClipSet, cfg: TrainConfig, i: int) -> tuple[ClipSet, np.ndarray]:
    """The ``i``-th manifest's clips that may be trained on (no test split, nothing sharing a
    recording with ESC-50 fold 4), and the mask of those held out for validation."""
    keep = np.array([s not in cfg.exclude_splits and r.get(SAME_SOURCE_COL) != "True"
                     for s, r in zip(clips.splits, clips.rows)])
    clips = clips.subset(keep)
    if cfg.val_split and cfg.val_split in clips.splits:
        return clips, np.array([s == cfg.val_split for s in clips.splits])
    # whole recordings on one side where known (UrbanSound8K's fsid); ESC-50's copy has
    # none (src_file is mostly blank, source_file is one concatenated file per class)
    group = "fsid" if "fsid" in clips.rows[0] else None
    return clips, holdout(clips, cfg.val_fraction, cfg.holdout_seed + i, group)


# -- augmentation (torch, on standardised log-mels) -------------------------------------------
def augment(x, noise_bank, rng: np.random.Generator, silence):
    """Random gain, circular time shift, background-noise mixing and SpecAugment masks on a
    batch [n, mels, frames] of raw log-mels (natural-log power; in place, returns x);
    ``silence`` is what masks and padding become: a float or a per-band [mels, 1] tensor."""
    n, n_mels, frames = x.shape
    # +-6 dB, as natural-log power
    gain = torch.from_numpy(rng.uniform(-6, 6, n).astype(np.float32)) * float(np.log(10) / 10)
    x += gain[:, None, None]
    for i in range(n):
        x[i] = torch.roll(x[i], int(rng.integers(-frames // 4, frames // 4 + 1)), dims=1)
        if noise_bank is not None and rng.random() < 0.3:
            noise = noise_bank[int(rng.integers(len(noise_bank)))]
            start = int(rng.integers(0, max(1, noise.shape[1] - frames + 1)))
            noise = noise[:, start : start + frames]
            if noise.shape[1] < frames:
                pad = torch.as_tensor(silence, dtype=noise.dtype).expand(n_mels, frames - noise.shape[1])
                noise = torch.cat([noise, pad], dim=1)
            # mix in the power domain, 10-20 dB under the clip
            drop = float(rng.uniform(10, 20)) * np.log(10) / 10
            x[i] = torch.logaddexp(x[i], noise - drop)
        for _ in range(2):
            w = int(rng.integers(0, 17))
            f0 = int(rng.integers(0, n_mels - w + 1))
            x[i, f0 : f0 + w] = silence[f0 : f0 + w] if torch.is_tensor(silence) else silence
            w = int(rng.integers(0, min(26, frames // 4) + 1))
            t0 = int(rng.integers(0, frames - w + 1))
            x[i, :, t0 : t0 + w] = silence
    return x


def random_crops(mels: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``frames``-long crop of each clip (clips are all the same stored length)."""
    total = mels.shape[2]
    if total <= frames:
        return mels.astype(np.float32)
    starts = rng.integers(0, total - frames + 1, len(mels))
    return np.stack([m[:, s : s + frames] for m, s in zip(mels, starts)]).astype(np.float32)
