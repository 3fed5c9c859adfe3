"""The learned parts' file formats: the shipped files (written before ``format_version``)
load, a saved file reads back the same, and a newer format is refused by name."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from search.calibration import shipped_for
from search.checkpoints import AttentionWeights, AudioCheckpoint, ProjectionWeights, RelevanceWeights

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


def test_projection_hierarchy_weight_round_trips_and_older_files_read_zero(tmp_path):
    layers = ((np.ones((4, 3), np.float32), np.zeros(3, np.float32)),)
    head = ProjectionWeights(layers, np.zeros(4, np.float32), np.ones(4, np.float32), 0.3, 0.0, 0.5)
    head.save(tmp_path / "h.npz")
    assert ProjectionWeights.load(tmp_path / "h.npz").hierarchy_weight == 0.5
    with np.load(tmp_path / "h.npz") as data:  # a file from before the field
        old = {k: data[k] for k in data.files if k != "hierarchy_weight"}
    np.savez(tmp_path / "old.npz", **old)
    assert ProjectionWeights.load(tmp_path / "old.npz").hierarchy_weight == 0.0


def test_a_projection_that_cannot_run_is_refused(tmp_path):
    w = (np.ones((4, 3), np.float32), np.zeros(3, np.float32))
    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="layer 1"):  # 3 outputs into a 5-input layer
        ProjectionWeights((w, (np.ones((5, 2), np.float32), np.zeros(2, np.float32))), mean, std, 0.3)
    with pytest.raises(ValueError, match="alpha"):
        ProjectionWeights((w,), mean, std, 1.5)
    with pytest.raises(ValueError, match="hierarchy_weight"):
        ProjectionWeights((w,), mean, std, 0.3, 0.0, float("nan"))
    with pytest.raises(ValueError, match="std"):
        ProjectionWeights((w,), mean, np.zeros(4, np.float32), 0.3)
    with pytest.raises(ValueError, match="at least one layer"):
        ProjectionWeights((), mean, std, 0.3)


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


def test_shipped_relevance_calibration_loads_round_trips_and_is_checked(tmp_path):
    shipped = RelevanceWeights.load(WEIGHTS / "relevance_calibration.json")
    assert shipped.format_version == 1 and shipped.encoder == "bundled"
    assert {"text>image", "text>audio", "text>text"} <= set(shipped.models) and 0 < shipped.auto_floor < 1
    for model in shipped.models.values():  # relevance grows with the cosine, falls with the gap
        assert model.a > 0 and model.b >= 0
        assert model.probability_one(model.raw(0.5)) == pytest.approx(0.5, abs=1e-6)
    shipped.save(tmp_path / "r.json")
    assert RelevanceWeights.load(tmp_path / "r.json") == shipped
    replace(shipped, format_version=2).save(tmp_path / "new.json")
    with pytest.raises(ValueError, match="format version 2"):
        RelevanceWeights.load(tmp_path / "new.json")
    (tmp_path / "bad.json").write_text('{"format_version": 1, "models": {"text>image": {"a": "x"}}}')
    with pytest.raises(ValueError):
        RelevanceWeights.load(tmp_path / "bad.json")


def test_calibration_types_of_retrained_weights_are_retired():
    shipped = RelevanceWeights.load(WEIGHTS / "relevance_calibration.json")
    keys = dict(shipped.fingerprints)
    assert set(shipped_for(shipped, keys, "bundled").models) == set(shipped.models)
    keys["audio"] = "audio-retrained@0000"
    left = shipped_for(shipped, keys, "bundled").models
    assert left and not any("audio" in name for name in left)
    assert "text>image" in left
    assert not shipped_for(shipped, dict(shipped.fingerprints), "clip:ViT-B-32").models


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
