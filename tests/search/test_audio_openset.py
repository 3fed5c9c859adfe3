"""Open-set audio: a sound the head does not know, or a query for a sound that is not there,
does not come back as strongly as a real match (``search.encoders.audio.abstain``)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from search.catalog import NewContent, SegmentIn
from search.encoders.audio import AudioModel, abstain, read_checkpoint, shipped_weights
from search.encoders.audio_labels import phrase
from search.encoders.base import l2_normalize
from search.engine import Engine
from search.index import Index
from search.query import Query
from training.audio_openset import ClipOutputs, clip_outputs, window_vectors, without_labels


def _labels(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    vectors = l2_normalize(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))
    return vectors, np.linalg.qr(vectors.T.astype(np.float64))[0].astype(np.float32)


def test_an_unsure_window_loses_its_label_cosines_a_sure_one_keeps_them():
    labels, basis = _labels(4, 16)
    rng = np.random.default_rng(1)
    vectors = np.repeat(labels[:1], 3, axis=0)  # the bridge said label 0 for all three windows
    proj = rng.standard_normal((3, 16)).astype(np.float32)
    sure = [12.0, 0.0, 0.0, 0.0]
    unsure = [0.3, 0.0, 0.0, 0.0]  # softmax max 0.30
    logits = np.array([sure, unsure, unsure], np.float32)
    neutral = np.zeros((1, 16), np.float32)
    out = abstain(vectors, logits, proj, basis, neutral, power=0.5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert float(out[0] @ vectors[0]) > 0.999
    p = np.exp(0.3) / (np.exp(0.3) + 3)
    # the off-label part is orthogonal to every label: each label cosine scales by g exactly
    np.testing.assert_allclose(out[1:] @ labels.T, p**0.5 * (vectors[1:] @ labels.T), atol=1e-5)
    assert (np.argmax(out @ labels.T, axis=1) == 0).all()  # the nearest label does not change
    # unsure windows keep what tells them apart (their own projections), not one shared point
    assert float(out[1] @ out[2]) < 0.8


def test_without_an_off_label_direction_nothing_moves():
    labels, basis = _labels(8, 8)  # the labels span the whole space
    vectors = labels[:2]
    logits = np.zeros((2, 8), np.float32)
    out = abstain(vectors, logits, labels[2:4], basis, np.zeros((1, 8), np.float32), power=1.0)
    np.testing.assert_allclose(out, vectors, atol=1e-6)


# -- the shipped model on real clips ----------------------------------------------------------
# ESC-50 fold 4 classes the shipped classifier half-reads as a dog (the laughing clip among
# them); classes it reads well; classes the open-set test makes unknown to it
NOT_DOGS = ("laughing", "crow", "water_drops", "drinking_sipping", "footsteps", "hen", "rain",
            "church_bells")
KNOWN = ("rain", "clock_tick", "church_bells", "keyboard_typing", "sea_waves", "helicopter",
         "toilet_flush", "vacuum_cleaner")
UNKNOWN = ("dog", "rooster", "sheep", "crying_baby", "door_wood_knock", "chainsaw")


def _fold4(shared_data: Path, labels: tuple[str, ...]) -> list[dict[str, str]]:
    root = shared_data / "esc50_subset"
    with (root / "manifest.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "fold4" and r["label"] in labels]
    return [{**r, "path": str(root / r["path"])} for r in sorted(rows, key=lambda r: r["path"])]


def _engine(tmp: Path, encoder, head: AudioModel, clips: list[ClipOutputs], power: float | None) -> Engine:
    index = Index.open_for_write(tmp, encoder.id, encoder.dim)
    items = [NewContent(hashlib.sha256(c.path.encode()).hexdigest(), "audio", 1,
                        [SegmentIn(start_s=a, end_s=b) for a, b in c.spans], [(c.path, 1, 1)]) for c in clips]
    index.add_contents(items, np.concatenate([window_vectors(head, c, power) for c in clips]))
    index.checkpoint()
    return Engine(index, encoder)


def _hits(engine: Engine, label: str, n: int) -> list[tuple[str, float, float]]:
    """(path, relevance, cosine) of every clip for the label's words."""
    hits = engine.search(Query.text(phrase(label), k=n)).hits
    return [(h.path, float(h.extra["relevance"]), float(h.score)) for h in hits]


def _typical_true_hit(engine: Engine, clips: list[ClipOutputs]) -> np.ndarray:
    """[relevance, cosine] of what #1 typically is when a sound is there: the median over the
    clips' labels of the label's best true hit."""
    label_of = {c.path: c.label for c in clips}
    best = [np.max([(rel, cos) for path, rel, cos in _hits(engine, label, 1000) if label_of.get(path) == label],
                   axis=0) for label in sorted(set(label_of.values()))]
    return np.median(best, axis=0)


@pytest.fixture(scope="module")
def not_dogs(bundled_encoder, shared_data) -> tuple[AudioModel, list[ClipOutputs]]:
    head = bundled_encoder.audio_head()
    if head is None:
        pytest.skip(f"no audio weights at {shipped_weights()}")
    return head, clip_outputs(head, _fold4(shared_data, NOT_DOGS))[0]


@pytest.mark.models
@pytest.mark.shared_data
def test_a_query_for_an_absent_sound_scores_below_a_typical_true_hit(bundled_encoder, not_dogs, tmp_path):
    """``a dog barking`` over clips without a dog (eight of them half-read as one): its best
    hit (the issue: a laughing clip at cosine 0.94, relevance 0.99) stays under what the top
    hit typically is for the sounds that are there, in relevance and in cosine."""
    head, clips = not_dogs
    assert head.confidence_power is not None, "the shipped checkpoint is open-set"
    engine = _engine(tmp_path / "idx", bundled_encoder, head, clips, head.confidence_power)
    typical = _typical_true_hit(engine, clips)
    best_dog = np.max([(rel, cos) for _, rel, cos in _hits(engine, "dog", 5)], axis=0)
    assert (best_dog < typical).all(), (best_dog, typical)  # closed set: (0.9951, 0.938) vs (0.9948, 0.929)
    # other absent sounds too
    absent = np.array([np.max([(rel, cos) for _, rel, cos in _hits(engine, label, 3)], axis=0)
                       for label in ("cat", "cow", "rooster", "sheep", "siren", "car_horn", "crying_baby")])
    assert (absent < typical).all(), (absent, typical)
    engine.index.close()


@pytest.mark.models
@pytest.mark.shared_data
def test_a_sound_the_head_does_not_know_gets_no_confident_label(bundled_encoder, shared_data, tmp_path):
    """The shipped checkpoint without six of its labels: nine in ten clips of those sounds
    score under the typical top true hit for every label they are not (at the closed set they
    sat on their nearest label at full strength: the 90th percentile was above it)."""
    ckpt = read_checkpoint(shipped_weights())
    assert ckpt.confidence_power is not None
    head = AudioModel(without_labels(ckpt, UNKNOWN), bundled_encoder)
    clips = clip_outputs(head, _fold4(shared_data, KNOWN + UNKNOWN))[0]
    engine = _engine(tmp_path / "idx", bundled_encoder, head, clips, head.confidence_power)
    typical = _typical_true_hit(engine, [c for c in clips if c.label not in UNKNOWN])
    label_of = {c.path: c.label for c in clips}
    best: dict[str, np.ndarray] = {}
    for label in sorted(lab for lab in head.labels if not lab.isdigit()):
        for path, rel, cos in _hits(engine, label, len(clips)):
            if label_of[path] in UNKNOWN:
                best[path] = np.maximum(best.get(path, np.array([0.0, -1.0])), (rel, cos))
    assert len(best) == sum(c.label in UNKNOWN for c in clips)
    top = np.quantile(np.array(list(best.values())), 0.9, axis=0)
    assert (top < typical).all(), (top, typical)  # closed set: (0.9897, 0.933) vs (0.9891, 0.923)
    engine.index.close()
