"""Audio metrics and ``eval-audio``: classification and text->audio retrieval in the shared space.

Classification is zero-shot through the shared space: each clip's vector (windows encoded,
averaged, renormalised — exactly what a query or an index holds) is compared with the text
embeddings of the manifest's label prompts, nearest label wins. The classifier head's own
accuracy over the same vocabulary (where its labels cover it) is reported beside it as
``head_accuracy``. Text->audio: each label's prompt embedding ranks all clips; R@k is the share of
labels with a clip of that label in the top k.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.audio import load_audio, windows_of
from search.encoders.audio import AudioModel, label_embeddings
from search.encoders.audio_labels import canonical
from search.encoders.base import l2_normalize
from search.errors import BadRequest, ModalityNotSupported, UnsupportedMedia
from training.audio_data import read_manifest
from training.audio_openset import ClipOutputs, absent_report, clip_vectors, engine_report, unseen_report

if TYPE_CHECKING:
    from search.encoders.base import Encoder


def classification_metrics(true: Sequence[int], pred: Sequence[int], n_classes: int) -> dict[str, float]:
    """accuracy, macro recall and macro F1 (classes absent from ``true`` are left out)."""
    y, p = np.asarray(true), np.asarray(pred)
    recalls, f1s = [], []
    for c in range(n_classes):
        support = int((y == c).sum())
        if support == 0:
            continue
        tp = int(((y == c) & (p == c)).sum())
        predicted = int((p == c).sum())
        recall = tp / support
        precision = tp / predicted if predicted else 0.0
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    return {
        "accuracy": round(float((y == p).mean()) if len(y) else 0.0, 4),
        "macro_recall": round(float(np.mean(recalls)) if recalls else 0.0, 4),
        "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),
    }


def text_to_audio_recall(label_vectors: np.ndarray, clip_vectors: np.ndarray, true: Sequence[int],
                         ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """R@k of label-prompt queries over clips, for labels that have at least one clip."""
    y = np.asarray(true)
    present = sorted(set(y.tolist()))
    order = np.argsort(-(label_vectors[present] @ clip_vectors.T), axis=1)
    out = {}
    for k in ks:
        hits = [bool((y[order[i, :k]] == c).any()) for i, c in enumerate(present)]
        out[f"R@{k}"] = round(float(np.mean(hits)), 4)
    return out


def shared_space_metrics(clip_vectors: np.ndarray, label_vectors: np.ndarray, true: Sequence[int]) -> dict:
    """Nearest-prompt classification + text->audio recall, both through the shared space."""
    pred = np.argmax(clip_vectors @ label_vectors.T, axis=1)
    out: dict[str, object] = dict(classification_metrics(true, pred, len(label_vectors)))
    out["t2a"] = text_to_audio_recall(label_vectors, clip_vectors, true)
    return out


ABLATION_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def evaluate_manifest(encoder: Encoder, manifest: Path, split: str, *, window_s: float = 5.0,
                      hop_s: float = 2.5, ablation: bool = False,
                      exclude: Sequence[tuple[str, str]] = (), absent: bool = False) -> dict[str, object]:
    """``eval-audio``: the clips of ``split`` classified over the manifest's label vocabulary.

    Silent or undecodable clips count as wrong answers, never silently dropped. ``ablation``
    adds the metrics for each bridge share alpha (1 = bridge alone, 0 = projection alone).
    ``exclude``: (column, value) pairs; rows of the split with that value are left out (and
    counted as ``excluded``), e.g. UrbanSound8K rows that share a recording with ESC-50 fold 4.
    ``absent`` adds the absent-class measure (``training.audio_openset``): in the shared space,
    with and without the checkpoint's abstention, and through a real index and engine.
    """
    head = encoder.audio_head()
    if head is None:
        raise ModalityNotSupported(f"encoder {encoder.id!r} has no audio encoder (weights missing?)")
    rows = read_manifest(manifest)
    vocab = sorted({canonical(r["label"]) for r in rows})
    rows = [r for r in rows if r["split"] == split]
    for col, _ in exclude:
        if rows and col not in rows[0]:
            raise BadRequest(f"manifest {manifest} has no column {col!r} to exclude by")
    kept = [r for r in rows if not any(r[col] == value for col, value in exclude)]
    excluded, rows = len(rows) - len(kept), kept
    if not rows:
        raise BadRequest(f"no rows with split {split!r} in {manifest}" + (" after exclusions" if excluded else ""))
    index = {lab: i for i, lab in enumerate(vocab)}
    true = [index[canonical(r["label"])] for r in rows]
    vectors = np.zeros((len(rows), encoder.dim), np.float32)
    head_logits: list[np.ndarray | None] = []
    outputs: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    clips: list[ClipOutputs] = []
    skipped = 0
    for i, r in enumerate(rows):
        try:
            windows = windows_of(load_audio(r["path"]), window_s, hop_s)
        except UnsupportedMedia:
            skipped += 1
            head_logits.append(None)
            continue
        waves = [w.samples for w in windows]
        if isinstance(head, AudioModel):
            logits, _, proj = head.forward(waves)
            vectors[i] = l2_normalize(head.combine(logits, proj).mean(axis=0))[0]
            head_logits.append(logits.mean(axis=0))
            outputs.append((i, logits, proj))
            clips.append(ClipOutputs(r["path"], canonical(r["label"]), [(w.start_s, w.end_s) for w in windows],
                                     logits, proj))
        else:
            vectors[i] = l2_normalize(head.encode(waves).mean(axis=0))[0]
            head_logits.append(None)
    label_vectors = label_embeddings(encoder, vocab)
    out = shared_space_metrics(vectors, label_vectors, true)
    out["n"] = len(rows)
    if exclude:
        out["excluded"] = excluded
    if ablation and isinstance(head, AudioModel) and head.net.projection is not None:
        table = {}
        for alpha in ABLATION_ALPHAS:
            mixed = np.zeros_like(vectors)
            for i, logits, proj in outputs:
                mixed[i] = l2_normalize(head.combine(logits, proj, alpha).mean(axis=0))[0]
            table[f"alpha={alpha}"] = shared_space_metrics(mixed, label_vectors, true)
        out["ablation"] = table
    if absent and isinstance(head, AudioModel):
        out["absent_class"] = absent_class(encoder, head, clips, vocab)
    if skipped:
        out["skipped_silent_or_corrupt"] = skipped
    if isinstance(head, AudioModel) and set(vocab) <= set(head.labels):
        cols = [head.labels.index(lab) for lab in vocab]
        pred = [int(np.argmax(lg[cols])) if lg is not None else -1 for lg in head_logits]
        out["head_accuracy"] = classification_metrics(true, pred, len(vocab))["accuracy"]
    out["encoder"] = encoder.id
    out["audio_head"] = getattr(head, "id", "?")
    return out


def absent_class(encoder: Encoder, head: AudioModel, clips: list[ClipOutputs],
                 vocab: Sequence[str]) -> dict[str, object]:
    """``eval-audio --absent``: how high each label's query scores over the split without it,
    with the checkpoint's abstention and (``closed_set_*``) without."""
    label_vectors = label_embeddings(encoder, vocab)
    index = {lab: i for i, lab in enumerate(vocab)}
    true = [index[c.label] for c in clips]
    powers = {"": head.confidence_power}
    if head.confidence_power is not None:
        powers["closed_set_"] = None
    out: dict[str, object] = {"confidence_power": head.confidence_power}
    dropped = [lab for lab in vocab if lab not in head.labels]  # eval-audio --drop-label
    for prefix, power in powers.items():
        out[prefix + "cosine"] = absent_report(clip_vectors(head, clips, power), label_vectors, true)
        out[prefix + "engine"] = engine_report(encoder, head, clips, power)
        if dropped:
            out[prefix + "unseen"] = unseen_report(encoder, head, clips, dropped, power)
    return out
