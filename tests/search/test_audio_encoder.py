"""The projected audio encoder: loading rules, and search by sound and for sound with real clips."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from search.audio import SR, iter_windows, load_audio, windows_of
from search.catalog import SegmentIn
from search.encoders.audio import load_audio_head, shipped_weights
from search.engine import Engine
from search.index import Index
from search.query import Query, QueryPart
from tests.fakes import FakeEncoder

UNRELATED = ("rain", "clock_tick", "church_bells", "keyboard_typing", "sea_waves", "helicopter",
             "toilet_flush", "vacuum_cleaner")


def test_missing_or_corrupt_weights_give_none_and_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="search.encoders.audio")
    assert load_audio_head(FakeEncoder(), tmp_path / "absent.pt") is None
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert load_audio_head(FakeEncoder(), bad) is None
    assert "audio encoder unavailable" in caplog.text and "train-audio" in caplog.text


@pytest.fixture(scope="session")
def bundled_audio(bundled_encoder):
    if bundled_encoder.audio_head() is None:
        pytest.skip(f"no audio weights at {shipped_weights()}")
    return bundled_encoder


@pytest.mark.models
def test_other_text_space_uses_the_bridge_alone():
    """A text tower the projection was not trained for still gets audio, through the bridge."""
    if not shipped_weights().exists():
        pytest.skip("no shipped audio weights")
    head = load_audio_head(FakeEncoder(dim=32))
    assert head is not None and not head.projection_fits
    assert head.alpha == 1.0 and head.id.endswith(":bridge")
    rng = np.random.default_rng(0)
    vecs = head.encode([0.1 * rng.standard_normal(SR * 2).astype(np.float32), np.ones(300, np.float32) * 0.2])
    assert vecs.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


@pytest.mark.models
def test_bundled_head_fits_the_projection_and_is_batch_invariant(bundled_audio):
    head = bundled_audio.audio_head()
    assert head.projection_fits, "the shipped projection was trained in the bundled text space"
    rng = np.random.default_rng(1)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (SR * 5, SR * 2, 4000)]
    together = head.encode(waves)
    alone = np.concatenate([head.encode([w]) for w in waves])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def _fold4(shared_data: Path) -> dict[str, list[Path]]:
    root = shared_data / "esc50_subset"
    by_label: dict[str, list[Path]] = {}
    with (root / "manifest.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["split"] == "fold4":
                by_label.setdefault(row["label"], []).append(root / row["path"])
    return {k: sorted(v) for k, v in by_label.items()}


def _add_audio(index: Index, encoder, path: Path) -> list[int]:
    windows = list(iter_windows(path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    size = path.stat().st_size
    _, ids = index.catalog.add_content(
        sha, "audio", size, [SegmentIn(start_s=w.start_s, end_s=w.end_s) for w in windows],
        [(str(path), size, 1)], duration_s=windows[-1].end_s,
    )
    index.add_vectors(ids, encoder.encode_audio([w.samples for w in windows]))
    return ids


@pytest.mark.models
@pytest.mark.shared_data
def test_a_dog_bark_finds_other_dogs_first(bundled_audio, shared_data, tmp_path):
    clips = _fold4(shared_data)
    dogs = clips["dog"][:4]
    index = Index.open_for_write(tmp_path / "idx", bundled_audio.id, bundled_audio.dim)
    for path in dogs[1:] + [clips[label][0] for label in UNRELATED]:
        _add_audio(index, bundled_audio, path)
    index.checkpoint()
    engine = Engine(index, bundled_audio)
    hits = engine.search(Query(parts=[QueryPart(audio_path=str(dogs[0]))], k=20)).hits
    ranked = [Path(h.path) for h in hits]
    assert set(ranked[:3]) == set(dogs[1:]), ranked
    # text finds the same sound from words
    hits = engine.search(Query.text("a dog barking")).hits
    assert Path(hits[0].path) in dogs[1:]
    index.close()


@pytest.mark.models
@pytest.mark.shared_data
def test_a_long_recording_answers_with_the_right_window(bundled_audio, shared_data, tmp_path):
    """60 s built from 12 labelled 5 s clips, the dog at 35-40 s among non-animal sounds."""
    clips = _fold4(shared_data)
    order = ["rain", "clock_tick", "church_bells", "keyboard_typing", "sea_waves", "helicopter",
             "toilet_flush", "dog", "vacuum_cleaner", "washing_machine", "airplane", "wind"]
    audio = np.concatenate([load_audio(clips[label][0])[: 5 * SR] for label in order])
    path = tmp_path / "walk.flac"
    sf.write(path, audio, SR)
    index = Index.open_for_write(tmp_path / "idx", bundled_audio.id, bundled_audio.dim)
    _add_audio(index, bundled_audio, path)
    index.checkpoint()
    engine = Engine(index, bundled_audio)
    hit = engine.search(Query(parts=[QueryPart(text="a dog barking")], k=3, group=False)).hits[0]
    overlap = min(hit.end_s, 40.0) - max(hit.start_s, 35.0)
    assert overlap >= 2.5, (hit.start_s, hit.end_s)
    assert hit.to_json()["start_s"] == hit.start_s
    index.close()


@pytest.mark.models
@pytest.mark.shared_data
def test_spoken_digits_are_told_apart(bundled_audio, shared_data):
    """The digit expert reads its own front end (the one it was trained on): FSDD test clips of
    every digit are classified right."""
    head = bundled_audio.audio_head()
    digits = [str(d) for d in range(10)]
    cols = [head.labels.index(d) for d in digits]
    with (shared_data / "fsdd" / "manifest.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test" and r["speaker"] == "george"]
    rows = rows[::3][:20]
    waves = [windows_of(load_audio(shared_data / "fsdd" / r["path"]))[0].samples for r in rows]
    logits, _, _ = head.forward(waves)
    right = sum(digits[int(np.argmax(lg[cols]))] == r["label"] for lg, r in zip(logits, rows))
    assert right >= 0.9 * len(rows), (right, len(rows))
