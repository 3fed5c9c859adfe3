"""Open-set audio: how high a sound that is not there scores, and the abstention it is tuned by.

The absent-class measure: each label of a labelled split is a query (its prompts' mean
embedding, as ``eval-audio``'s t2a, or its phrase through a real index and engine), once over
the split as it is and once over the split without that label's clips. Reported: every true
hit's score, each query's best true hit (what #1 is when the sound is there) and its best
absent hit (what #1 is when it is not), as quantiles, and the AUC of best-true against
best-absent (1.0: the top score alone tells whether the sound is in the corpus).

``tune_open_set`` (``train-audio --tune-open-set CKPT``) chooses the checkpoint's
``confidence_power`` (``search.encoders.audio.abstain``) on the validation rows a training
run held out (same manifests and ``--val-seed``): the power with the highest absent-class AUC,
none among the candidates if none beats the closed set.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.audio import load_audio, windows_of
from search.catalog import NewContent, SegmentIn
from search.encoders.audio import AudioModel, read_checkpoint
from search.encoders.audio_labels import canonical, phrase
from search.encoders.base import l2_normalize
from search.errors import BadRequest, UnsupportedMedia
from training.audio_data import ClipSet, read_manifest, trainable_and_held_out
from training.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from search.checkpoints import AudioCheckpoint
    from search.encoders.base import Encoder

POWERS = (0.125, 0.25, 0.5, 1.0)
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass
class ClipOutputs:
    """One clip's windows through the audio network: times, logits (or digit-routed
    log-probabilities) and projections."""

    path: str
    label: str
    spans: list[tuple[float, float]]
    logits: np.ndarray
    proj: np.ndarray | None


def clip_outputs(head: AudioModel, rows: Sequence[dict[str, str]], window_s: float = 5.0,
                 hop_s: float = 2.5) -> tuple[list[ClipOutputs], int]:
    """The network's outputs for each row's windows (as indexing windows them); silent or
    undecodable clips are left out and counted."""
    out, skipped = [], 0
    for r in rows:
        try:
            windows = windows_of(load_audio(r["path"]), window_s, hop_s)
        except UnsupportedMedia:
            skipped += 1
            continue
        logits, _, proj = head.forward([w.samples for w in windows])
        out.append(ClipOutputs(r["path"], canonical(r["label"]), [(w.start_s, w.end_s) for w in windows],
                               logits, proj))
    return out, skipped


def window_vectors(head: AudioModel, clip: ClipOutputs, power: float | None) -> np.ndarray:
    """What the index stores for the clip's windows with abstention ``power`` (None: closed set)."""
    return head.combine(clip.logits, clip.proj, power=power, open_set=power is not None)


def clip_vectors(head: AudioModel, clips: Sequence[ClipOutputs], power: float | None) -> np.ndarray:
    """One vector a clip (its windows' mean, renormalised: what eval-audio compares)."""
    return np.concatenate([l2_normalize(window_vectors(head, c, power).mean(axis=0)) for c in clips])


def _quantiles(x: np.ndarray) -> dict[str, float]:
    return {f"q{round(q * 100)}": round(float(np.quantile(x, q)), 4) for q in QUANTILES}


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random ``pos`` > a random ``neg``), ties half."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def absent_summary(true_hits: Sequence[np.ndarray], best_absent: Sequence[float]) -> dict[str, object]:
    """Quantiles of all true hits, of each query's best true hit and of its best absent hit."""
    best_true = np.array([t.max() for t in true_hits])
    every = np.concatenate(list(true_hits))
    absent = np.asarray(best_absent, np.float64)
    typical = float(np.median(every))
    return {
        "queries": len(best_true),
        "true_hit": _quantiles(every),
        "best_true_hit": _quantiles(best_true),
        "best_absent_hit": _quantiles(absent),
        "present_vs_absent_auc": round(auc(best_true, absent), 4),
        "absent_at_or_above_typical_true": round(float((absent >= typical).mean()), 4),
    }


def absent_scores(clip_vecs: np.ndarray, label_vectors: np.ndarray,
                  true: Sequence[int]) -> tuple[list[np.ndarray], list[float]]:
    """Cosines of each present label's query (``label_vectors`` rows) over the clips: its true
    hits, and its best hit among the other labels' clips (the corpus without it)."""
    y = np.asarray(true)
    scores = label_vectors @ clip_vecs.T
    present = sorted(set(y.tolist()))
    return [scores[c, y == c] for c in present], [float(scores[c, y != c].max()) for c in present]


def absent_report(clip_vecs: np.ndarray, label_vectors: np.ndarray, true: Sequence[int]) -> dict[str, object]:
    """``absent_summary`` of ``absent_scores``."""
    return absent_summary(*absent_scores(clip_vecs, label_vectors, true))


def engine_report(encoder: Encoder, head: AudioModel, clips: Sequence[ClipOutputs],
                  power: float | None) -> dict[str, object]:
    """The same measure through the product: the clips' windows in a real index (temporary),
    each label's phrase (``a dog barking``) as a text query through the engine; ``relevance``
    and cosine of its true hits and of its best hit of another label."""
    from search.engine import Engine  # heavy: the whole query path
    from search.index import Index
    from search.query import Query

    by_path = {c.path: c.label for c in clips}
    labels = sorted(set(by_path.values()))
    with tempfile.TemporaryDirectory(prefix="crossfind-openset-") as tmp:
        index = Index.open_for_write(Path(tmp) / "idx", encoder.id, encoder.dim)
        try:
            items = [NewContent(hashlib.sha256(c.path.encode()).hexdigest(), "audio", 1,
                                [SegmentIn(start_s=a, end_s=b) for a, b in c.spans], [(c.path, 1, 1)],
                                duration_s=c.spans[-1][1]) for c in clips]
            index.add_contents(items, np.concatenate([window_vectors(head, c, power) for c in clips]))
            index.checkpoint()
            engine = Engine(index, encoder)
            out: dict[str, object] = {}
            for key in ("relevance", "score"):
                true_hits, absent = [], []
                for label in labels:
                    hits = engine.search(Query.text(phrase(label), k=min(1000, len(clips)))).hits
                    value = [float(h.extra["relevance"] if key == "relevance" else h.score) for h in hits]
                    mine = [v for h, v in zip(hits, value) if by_path.get(h.path) == label]
                    other = [v for h, v in zip(hits, value) if by_path.get(h.path) != label]
                    if mine and other:
                        true_hits.append(np.array(mine))
                        absent.append(max(other))
                out[key] = absent_summary(true_hits, absent)
        finally:
            index.close()
    return out


def validation_rows(cfg: TrainConfig) -> list[dict[str, str]]:
    """The rows ``train-audio`` holds out for validation with these manifests and seeds."""
    rows_out: list[dict[str, str]] = []
    for i, manifest in enumerate(cfg.manifests):
        rows = read_manifest(manifest)
        clips = ClipSet(Path(manifest).parent.name, np.zeros((len(rows), 0, 0), np.float16),
                        [canonical(r["label"]) for r in rows], [r["split"] for r in rows], rows)
        clips, mask = trainable_and_held_out(clips, cfg, i)
        rows_out += [r for r, held in zip(clips.rows, mask) if held]
    return rows_out


def choose_power(head: AudioModel, clips: Sequence[ClipOutputs]) -> tuple[float | None, list[dict[str, object]]]:
    """The abstention power with the highest absent-class AUC on ``clips`` (None: the closed
    set), and the table it was chosen from."""
    index = {lab: i for i, lab in enumerate(head.labels)}
    true = [index[c.label] for c in clips]
    table: list[dict[str, object]] = []
    best: tuple[float, float | None] = (-1.0, None)
    for power in (None, *POWERS):
        true_hits, absent = absent_scores(clip_vectors(head, clips, power), head.label_vectors, true)
        score = auc(np.array([t.max() for t in true_hits]), np.array(absent))
        table.append({"power": power, "auc": round(score, 4),
                      "best_true_q50": round(float(np.median([t.max() for t in true_hits])), 4),
                      "best_absent_q50": round(float(np.median(absent)), 4)})
        if score > best[0] + 1e-9:
            best = (score, power)
    return best[1], table


def tune_open_set(cfg: TrainConfig, checkpoint: Path, encoder: Encoder,
                  report: Callable[[str], None]) -> dict[str, object]:
    """``train-audio --tune-open-set``: choose ``checkpoint``'s abstention power on the
    validation rows it was trained without; write it with the power to ``cfg.out``."""
    try:
        ckpt = read_checkpoint(checkpoint)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    import torch

    torch.set_num_threads(cfg.threads)
    rows = validation_rows(cfg)
    known = set(ckpt.labels)
    rows = [r for r in rows if canonical(r["label"]) in known]
    if not rows:
        raise BadRequest("no validation rows with the checkpoint's labels in these manifests")
    head = AudioModel(ckpt, encoder)
    clips, skipped = clip_outputs(head, rows)
    power, table = choose_power(head, clips)
    for row in table:
        report(f"power {row['power']}: absent-class AUC {row['auc']:.3f}, best true q50 "
               f"{row['best_true_q50']:.3f}, best absent q50 {row['best_absent_q50']:.3f}")
    summary: dict[str, object] = {"confidence_power": power, "validation_clips": len(clips),
                                  "skipped": skipped, "open_set_on_val": table}
    replace(ckpt, confidence_power=power,
            summary={**ckpt.summary, "confidence_power": power, "open_set_validation_clips": len(clips)}
            ).save(cfg.out)
    return summary


def without_labels(ckpt: AudioCheckpoint, drop: Sequence[str]) -> AudioCheckpoint:
    """``ckpt`` as if it had never had the labels ``drop``: their classifier rows and prompt
    probes removed, so their sounds become sounds the head does not know (the network was
    still trained on them: an optimistic stand-in for a class never seen)."""
    unknown = sorted(set(drop) - set(ckpt.labels))
    if unknown:
        raise BadRequest(f"labels not in the checkpoint: {', '.join(unknown)}")
    if ckpt.digit_state is not None and set(drop) & {str(d) for d in range(10)}:
        raise BadRequest("the spoken digits are one expert's classes: they cannot be dropped one by one")
    keep = [i for i, lab in enumerate(ckpt.labels) if lab not in set(drop)]

    def rows(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v[keep] if k.startswith("classifier.") else v for k, v in state.items()}

    probe = ckpt.text_probe
    return replace(ckpt, labels=[ckpt.labels[i] for i in keep], state=rows(ckpt.state),
                   members=[rows(m) for m in ckpt.members],
                   text_probe=None if probe is None else probe[keep])


def unseen_report(encoder: Encoder, head: AudioModel, clips: Sequence[ClipOutputs],
                  dropped: Sequence[str], power: float | None) -> dict[str, object]:
    """Clips of labels ``head`` does not know: each one's best cosine to a known label's
    prompts, against the known clips' true-hit cosines."""
    from search.encoders.audio import label_embeddings

    vectors = clip_vectors(head, clips, power)
    labels = sorted({c.label for c in clips} - set(dropped))
    label_vectors = label_embeddings(encoder, labels)
    scores = label_vectors @ vectors.T
    unseen = np.array([c.label in set(dropped) for c in clips])
    if not unseen.any() or unseen.all():
        raise BadRequest("--drop-label needs clips of dropped and of kept labels in the split")
    true = [scores[labels.index(c.label), i] for i, c in enumerate(clips) if not unseen[i]]
    best_unseen = scores[:, unseen].max(axis=0)
    return {"unseen_clips": int(unseen.sum()), "true_hit": _quantiles(np.array(true)),
            "unseen_clip_best_hit": _quantiles(best_unseen),
            "true_vs_unseen_auc": round(auc(np.array(true), best_unseen), 4)}
