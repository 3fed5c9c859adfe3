"""The learned parts' file formats: the shipped files (written before ``format_version``)
load, a saved file reads back the same, and a newer format is refused by name."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from search.checkpoints import AttentionWeights, AudioCheckpoint, ProjectionWeights

WEIGHTS = Path(str(resources.files("search.encoders") / "weights"))


def test_shipped_projection_and_attention_load_and_round_trip(tmp_path):
    proj = ProjectionWeights.load(WEIGHTS / "bundled_image_projection.npz")
    assert proj.format_version == 1 and len(proj.layers) == 2 and proj.layers[1][0].shape == (1024, 384)
    assert 0.0 <= proj.alpha <= 1.0 and proj.meta["seed"] == 0
    proj.save(tmp_path / "p.npz")
    again = ProjectionWeights.load(tmp_path / "p.npz")
    assert again.alpha == proj.alpha and again.sentence_weight == proj.sentence_weight and again.meta == proj.meta
    for (w, b), (w2, b2) in zip(proj.layers, again.layers):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)

    att = AttentionWeights.load(WEIGHTS / "attention_fusion.npz")
    assert att.format_version == 1 and att.encoder == "bundled" and att.w1.shape == (10, 8)
    att.save(tmp_path / "a.npz")
    back = AttentionWeights.load(tmp_path / "a.npz")
    assert back.encoder == att.encoder
    for name in ("mean", "std", "w1", "b1", "w2"):
        np.testing.assert_array_equal(getattr(back, name), getattr(att, name))


def test_a_newer_format_is_refused(tmp_path):
    att = AttentionWeights.load(WEIGHTS / "attention_fusion.npz")
    replace(att, format_version=2).save(tmp_path / "new.npz")
    with pytest.raises(ValueError, match="format version 2"):
        AttentionWeights.load(tmp_path / "new.npz")


def test_shipped_audio_checkpoint_loads_and_round_trips(tmp_path):
    ckpt = AudioCheckpoint.load(WEIGHTS / "audio_effnet_lite0.pt")
    assert ckpt.format_version == 1 and len(ckpt.labels) == 67 and len(ckpt.members) == 1
    assert ckpt.min_seconds == 2.5 and ckpt.max_gain_db is None and ckpt.digit_state is not None
    assert ckpt.digit_front is not None and ckpt.digit_front.mel_floor is None
    ckpt.save(tmp_path / "a.pt")
    back = AudioCheckpoint.load(tmp_path / "a.pt")
    assert (back.labels, back.alpha, back.temperature, back.top_k, back.digit_front.max_gain_db) == (
        ckpt.labels, ckpt.alpha, ckpt.temperature, ckpt.top_k, ckpt.digit_front.max_gain_db)
    assert all(bool((back.state[k] == v).all()) for k, v in ckpt.state.items())


def test_an_audio_file_of_another_kind_is_refused(tmp_path):
    import torch

    torch.save({"format": 1, "labels": ["a"]}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="not a complete audio checkpoint"):
        AudioCheckpoint.load(tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="does not exist"):
        AudioCheckpoint.load(tmp_path / "absent.pt")


def test_the_shipped_audio_checkpoint_is_open_set_and_older_files_load_closed(tmp_path):
    import torch

    ckpt = AudioCheckpoint.load(WEIGHTS / "audio_effnet_lite0.pt")
    assert ckpt.confidence_power == 0.25
    ckpt.save(tmp_path / "a.pt")
    assert AudioCheckpoint.load(tmp_path / "a.pt").confidence_power == 0.25
    stored = torch.load(tmp_path / "a.pt", weights_only=True)
    del stored["confidence_power"]  # a file from before the open set
    torch.save(stored, tmp_path / "old.pt")
    assert AudioCheckpoint.load(tmp_path / "old.pt").confidence_power is None
