"""``crossfind train-audio``: fine-tune EfficientNet-Lite0 on log-mels into one text space.

Recipe (FINDINGS' measured one, extended to a joint vocabulary): ImageNet EfficientNet-Lite0 on
3-channel log-mels, AdamW (lr 1e-3, wd 0.01), linear warm-up then cosine decay, random crops,
gain, circular shift, background-noise mixing (another clip 10-20 dB under), SpecAugment (2 freq
masks <= 16 bins, 2 time masks <= 25 frames) and mixup (alpha 0.4, half the batches). Batches mix
all manifests (2.5 s crops; shorter clips padded with silence, as inference pads). Two losses
on one backbone: cross-entropy of the classifier over the joint label vocabulary, and InfoNCE of
the projection against the label prompts' text embeddings (temperature 0.07). Manifests other than the first are
subsampled per epoch to bound time.
Early stopping on mean validation accuracy; the best epoch's weights are kept. The bridge/
projection mix (alpha) and the bridge temperature are then chosen on validation.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from search.checkpoints import AudioCheckpoint
from search.encoders import create_encoder
from search.encoders.audio import (
    LogMel,
    label_embeddings,
    load_net,
    mix,
    noise_floor,
    read_checkpoint,
    silence_bands,
    stored_floor,
)
from search.encoders.audio_labels import vocabulary
from search.encoders.audio_nets import AudioEnsemble, build_net
from search.errors import BadRequest
from training.audio_data import FPS, ClipSet, augment, load_clipset, trainable_and_held_out, with_floor
from training.audio_digits import DIGITS, attach_digit_expert, reuse_digit_expert
from training.audio_eval import classification_metrics, shared_space_metrics
from training.config import TrainConfig

if TYPE_CHECKING:
    from search.encoders.base import Encoder

log = logging.getLogger(__name__)

# inference pads windows to this length; training pads short clips the same way
MIN_SECONDS = 2.5


def split_sets(cfg: TrainConfig, floor: np.ndarray | None = None) -> tuple[list[ClipSet], list[ClipSet]]:
    """Training and validation clips of each manifest (test splits and rows sharing a source
    recording with ESC-50 fold 4 are dropped first), log-mels over ``floor`` when given."""
    train, val = [], []
    for i, manifest in enumerate(cfg.manifests):
        clips = load_clipset(manifest, cfg.cache_dir, max_gain_db=cfg.max_gain_db)
        if floor is not None:
            clips = with_floor(clips, floor)
        clips, mask = trainable_and_held_out(clips, cfg, i)
        train.append(clips.subset(~mask))
        val.append(clips.subset(mask))
        log.info("%s: %d train, %d validation clips", clips.name, (~mask).sum(), mask.sum())
    return train, val


def train_audio(cfg: TrainConfig, report: Callable[[str], None] = log.info,
                encoder: Encoder | None = None) -> dict[str, object]:
    """Train, pick the mix on validation, write ``cfg.out``; returns the training summary.
    ``encoder`` is the text tower (default: ``create_encoder(cfg.model)``)."""
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if encoder is None:
        encoder = create_encoder(cfg.model, cfg.cache_dir)
    fb = LogMel().fb
    floor = noise_floor(fb.numpy()) if cfg.floor else None
    train, val = split_sets(cfg, floor)
    t_data = time.time() - t_start
    labels = vocabulary(lab for s in train + val for lab in s.labels)
    lab_index = {lab: i for i, lab in enumerate(labels)}
    text = label_embeddings(encoder, labels)
    text_t = torch.from_numpy(text).to(device)
    mean, std = _mel_stats(train)
    silence = silence_bands(floor)
    net = build_net(len(labels), encoder.dim, pretrained=cfg.init is None).to(device)
    init_digits = None
    if cfg.init is not None:  # continue from a checkpoint with the same vocabulary

        init = read_checkpoint(cfg.init)
        if init.labels != labels:
            raise BadRequest(f"{cfg.init} has another label vocabulary; train without --init")
        net.load_state_dict({k: v.float() for k, v in init.state.items()})
        mean, std = init.mel_mean, init.mel_std
        init_digits = init  # the digit expert reads the same inputs: keep it
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    plan = [_epoch_batches(train, cfg, np.random.default_rng(cfg.seed + e)) for e in range(cfg.epochs)]
    total_steps = sum(len(p) for p in plan)
    warmup = max(1, len(plan[0]) // 2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 *
                                              (1 + math.cos(math.pi * min(1.0, s / total_steps))))
    # background noise: other clips of the first manifest, mixed 10-20 dB under
    bank = train[0].mels[rng.choice(len(train[0].mels), min(128, len(train[0].mels)), replace=False)]
    noise_bank = torch.from_numpy(bank.astype(np.float32))
    history, best, best_score, stale = [], None, -1.0, 0
    for epoch, batches in enumerate(plan):
        net.train()
        t0, losses = time.time(), []
        for pairs in batches:
            idx = pairs[:, 1]
            x = torch.from_numpy(_train_crops(train, pairs, int(cfg.crop_s * FPS), rng, silence))
            x = augment(x, noise_bank, rng, torch.from_numpy(silence))
            x = ((x - mean) / std).to(device)
            y = torch.zeros(len(idx), len(labels))
            targets = [lab_index[train[s].labels[i]] for s, i in pairs]
            y[torch.arange(len(idx)), torch.tensor(targets)] = 1
            y = y.to(device)
            if rng.random() < 0.5:  # mixup on half the batches
                lam = float(rng.beta(0.4, 0.4))
                perm = torch.from_numpy(rng.permutation(len(idx))).to(device)
                x, y = lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]
            logits, _, proj = net(x)
            proj_logits = torch.nn.functional.normalize(proj, dim=1) @ text_t.T / 0.07
            loss = _soft_ce(logits, y) + _soft_ce(proj_logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        metrics = validate(net, val, labels, text, mean, std, device, silence)
        accs = [m["accuracy"] for m in metrics.values()]
        score = float(accs[0] if cfg.select_on_first else np.mean(accs))
        row = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
               "seconds": round(time.time() - t0, 1), "val": metrics}
        history.append(row)
        report(_format_epoch(row))
        if score > best_score:
            best, best_score, stale = copy.deepcopy(net.state_dict()), score, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                report(f"early stop: no better validation accuracy for {cfg.patience} epochs")
                break
    if best is not None:
        net.load_state_dict(best)
    alpha, temperature, mix_table = choose_mix(net, val, labels, text, mean, std, device, cfg.top_k, silence)
    summary = {
        "labels": len(labels), "epochs_run": len(history), "best_val_accuracy": round(best_score, 4),
        "alpha": alpha, "temperature": temperature, "mix_on_val": mix_table,
        "train_seconds": round(time.time() - t_start, 1), "data_seconds": round(t_data, 1),
        "device": str(device), "history": history,
    }
    ckpt = AudioCheckpoint(
        labels=labels, mel_mean=mean, mel_std=std, min_seconds=MIN_SECONDS, max_gain_db=cfg.max_gain_db,
        mel_fb=fb.clone(), mel_floor=None if floor is None else torch.from_numpy(floor),
        state={k: v.detach().cpu().half() for k, v in net.state_dict().items()},
        text_space=encoder.id, text_probe=torch.from_numpy(text).half(),
        alpha=alpha, temperature=temperature, top_k=cfg.top_k,
        summary={k: v for k, v in summary.items() if k not in ("history", "mix_on_val")},
        manifests=[Path(m).parent.name for m in cfg.manifests], seed=cfg.seed, val_seed=cfg.holdout_seed,
    )
    digits: dict[str, object] | None
    if cfg.digits_from is not None:
        ckpt, digits = reuse_digit_expert(ckpt, cfg.digits_from)
    elif init_digits is not None and init_digits.digit_state is not None:
        ckpt = replace(ckpt, digit_state=init_digits.digit_state, digit_front=init_digits.digit_front)
        digits = {"digit_expert": f"kept from {Path(str(cfg.init)).name}"}
    else:
        ckpt, digits = attach_digit_expert(ckpt, train, val, cfg.seed, report)
    if digits:
        summary.update(digits)
        ckpt.summary.update(digits)
    ckpt.save(cfg.out)
    return summary


def combine_runs(cfg: TrainConfig, runs: list[Path], report: Callable[[str], None] = log.info,
                 encoder: Encoder | None = None) -> dict[str, object]:
    """``train-audio --combine``: checkpoints trained on the same rows (``--val-seed``) with other
    seeds become one ensemble (mean logits and projections); the mix is chosen again on the
    validation rows, which no member trained on. Writes ``cfg.out``; returns the summary."""
    if len(runs) < 2:
        raise BadRequest("--combine needs two or more checkpoints")
    ckpts = []
    for path in runs:
        try:
            ckpts.append(read_checkpoint(path))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    first = ckpts[0]
    for path, c in zip(runs[1:], ckpts[1:]):
        same = (c.labels == first.labels and c.text_space == first.text_space
                and c.max_gain_db == first.max_gain_db and _same_tensor(c.mel_floor, first.mel_floor))
        if not same:
            raise BadRequest(f"{path} has another vocabulary, text space or front end than {runs[0]}")
    if encoder is None:
        encoder = create_encoder(cfg.model, cfg.cache_dir)
    floor = stored_floor(first.front)
    train, val = split_sets(cfg, floor)
    mean, std = _mel_stats(train)
    for path, c in zip(runs, ckpts):  # the log-mel statistics pin down the training rows
        if abs(c.mel_mean - mean) > 1e-4 * abs(mean) or abs(c.mel_std - std) > 1e-4 * std:
            raise BadRequest(f"{path} was trained on other rows than these manifests and --val-seed "
                             f"hold out; members must share the training rows")
    labels = list(first.labels)
    text = label_embeddings(encoder, labels)
    silence = silence_bands(floor)
    device = torch.device("cpu")
    nets = [load_net(c) for c in ckpts]
    members = {}
    for path, net in zip(runs, nets):
        m = validate(net, val, labels, text, mean, std, device, silence)
        members[Path(path).name] = {name: v["accuracy"] for name, v in m.items()}
    combined = AudioEnsemble(nets).eval()
    metrics = validate(combined, val, labels, text, mean, std, device, silence)
    for name, m in members.items():
        report(f"{name}: validation accuracy " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    report(_format_val("ensemble", metrics))
    alpha, temperature, mix_table = choose_mix(combined, val, labels, text, mean, std, device,
                                                first.top_k, silence)
    accs = [m["accuracy"] for m in metrics.values()]
    summary = {"members": members, "val_accuracy": {name: m["accuracy"] for name, m in metrics.items()},
               "best_val_accuracy": round(float(accs[0] if cfg.select_on_first else np.mean(accs)), 4),
               "alpha": alpha, "temperature": temperature, "mix_on_val": mix_table}
    replace(first, members=[c.state for c in ckpts[1:]], alpha=alpha, temperature=temperature,
            summary={k: v for k, v in summary.items() if k != "mix_on_val"},
            seed=[c.seed for c in ckpts]).save(cfg.out)
    return summary


def _mel_stats(train: list[ClipSet]) -> tuple[float, float]:
    """The one global log-mel mean/std, from the first 200 training clips of each set."""
    sample = np.concatenate([s.mels[:200].astype(np.float32).ravel() for s in train])
    return float(sample.mean()), float(sample.std())


def _silence_pad(silence: np.ndarray, n: int, n_mels: int, frames: int) -> np.ndarray:
    return np.repeat(np.broadcast_to(silence, (n_mels, frames))[None], n, axis=0)


def _same_tensor(x: torch.Tensor | None, y: torch.Tensor | None) -> bool:
    if x is None or y is None:
        return x is None and y is None
    return bool((x.float() - y.float()).abs().max() < 1e-6)


def _train_crops(train: list[ClipSet], pairs: np.ndarray, frames: int, rng: np.random.Generator,
                 silence: np.ndarray) -> np.ndarray:
    """A random ``frames``-long crop of each (set, clip); shorter clips are padded with silence."""
    out = _silence_pad(silence, len(pairs), train[0].mels.shape[1], frames)
    for row, (s, i) in enumerate(pairs):
        mel = train[s].mels[i]
        start = int(rng.integers(0, mel.shape[1] - frames + 1)) if mel.shape[1] > frames else 0
        part = mel[:, start : start + frames]
        out[row, :, : part.shape[1]] = part
    return out


def _val_mels(clips: ClipSet, idx: np.ndarray, min_frames: int, silence: np.ndarray) -> np.ndarray:
    """Whole stored clips, padded with silence to ``min_frames`` (what inference pads to)."""
    mels = clips.mels[idx].astype(np.float32)
    if mels.shape[2] >= min_frames:
        return mels
    pad = _silence_pad(silence, len(mels), mels.shape[1], min_frames - mels.shape[2])
    return np.concatenate([mels, pad], axis=2)


def _soft_ce(logits, target):
    return -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()


def _epoch_batches(train: list[ClipSet], cfg: TrainConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of (set, clip) pairs mixing all manifests (single-set batches would teach the
    network per-set BatchNorm statistics that inference, with running averages, never sees)."""
    pairs: list[tuple[int, int]] = []
    for i, s in enumerate(train):
        order = rng.permutation(len(s.labels))
        if i > 0:
            order = order[: cfg.per_epoch_clips]
        pairs += [(i, j) for j in order]
    shuffled = np.array(pairs)[rng.permutation(len(pairs))]
    return [shuffled[b : b + cfg.batch] for b in range(0, len(shuffled), cfg.batch)
            if len(shuffled[b : b + cfg.batch]) > 1]


def _val_outputs(net, clips: ClipSet, mean: float, std: float, device, silence) -> tuple[np.ndarray, np.ndarray]:

    net.eval()
    logits, projs = [], []
    with torch.inference_mode():
        for b in range(0, len(clips.labels), 64):
            mels = _val_mels(clips, np.arange(b, min(b + 64, len(clips.labels))), int(MIN_SECONDS * FPS), silence)
            x = ((torch.from_numpy(mels) - mean) / std).to(device)
            lg, _, pj = net(x)
            logits.append(lg.cpu().numpy())
            projs.append(pj.cpu().numpy())
    return np.concatenate(logits), np.concatenate(projs)


def validate(net, val: list[ClipSet], labels, text, mean, std, device, silence) -> dict[str, dict]:
    """Per manifest: classifier metrics over its own vocabulary + bridge t2a recall."""
    out = {}
    for clips in val:
        if not clips.labels:
            continue
        logits, projs = _val_outputs(net, clips, mean, std, device, silence)
        vocab = sorted(set(clips.labels))
        cols = [labels.index(v) for v in vocab]
        true = [vocab.index(v) for v in clips.labels]
        m = classification_metrics(true, np.argmax(logits[:, cols], axis=1), len(vocab))
        shared = shared_space_metrics(mix(logits, projs, text, 0.5, 1.0, 10, _route(labels)), text[cols], true)
        m["t2a"] = shared["t2a"]
        out[clips.name] = m
    return out


def _route(labels: list[str]) -> list[int] | None:
    """The digit columns, which inference routes to the bridge (``mix``) where they are all present."""
    return [labels.index(d) for d in DIGITS] if set(DIGITS) <= set(labels) else None


def choose_mix(net, val, labels, text, mean, std, device, top_k, silence) -> tuple[float, float, list]:
    """Bridge share alpha and bridge temperature maximising mean validation (shared-space
    accuracy + t2a R@1) / 2 over manifests."""
    outs = [(c, *_val_outputs(net, c, mean, std, device, silence)) for c in val if c.labels]
    table, best = [], (-1.0, 0.5, 1.0)
    for temperature in (0.5, 1.0, 2.0):
        for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
            scores = []
            for clips, logits, projs in outs:
                vocab = sorted(set(clips.labels))
                cols = [labels.index(v) for v in vocab]
                vec = mix(logits, projs, text, alpha, temperature, top_k, _route(labels))
                m = shared_space_metrics(vec, text[cols], [vocab.index(v) for v in clips.labels])
                scores.append((m["accuracy"] + m["t2a"]["R@1"]) / 2)
            score = float(np.mean(scores))
            table.append({"alpha": alpha, "temperature": temperature, "score": round(score, 4)})
            if score > best[0] + 1e-9:
                best = (score, alpha, temperature)
    return best[1], best[2], table


def _format_epoch(row: dict) -> str:
    head = f"epoch {row['epoch']}: loss {row['loss']:.3f} ({row['seconds']:.0f}s)"
    return _format_val(head, row["val"])


def _format_val(head: str, metrics: dict[str, dict]) -> str:
    parts = [head]
    for name, m in metrics.items():
        parts.append(f"{name} acc {m['accuracy']:.3f} F1 {m['macro_f1']:.3f} rec {m['macro_recall']:.3f} "
                     f"t2a R@1 {m['t2a']['R@1']:.2f} R@5 {m['t2a']['R@5']:.2f}")
    return " | ".join(parts)
