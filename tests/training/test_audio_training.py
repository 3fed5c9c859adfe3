"""``train-audio`` end to end on a small synthetic manifest, and the training front end."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from search.audio import SR
from search.encoders.audio import LogMel, load_audio_head, noise_floor, read_checkpoint
from search.errors import BadRequest
from training.audio import TrainConfig, combine_runs, split_sets, train_audio
from training.audio_data import augment, load_clipset, with_floor

LABELS = ("siren", "rain", "clock_tick")


def _clip(label: str, rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    """A clip anyone would tell apart: a swept tone, broadband hiss, or a train of clicks."""
    t = np.arange(int(seconds * SR)) / SR
    level = rng.uniform(0.05, 0.3)
    if label == "siren":
        f = rng.uniform(500, 700) + 300 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t)
        x = np.sin(2 * np.pi * np.cumsum(f) / SR)
    elif label == "rain":
        x = rng.standard_normal(len(t))
    else:
        x = np.zeros(len(t))
        period = int(SR * rng.uniform(0.2, 0.4))
        for start in range(int(rng.integers(0, period)), len(t) - 80, period):
            x[start : start + 80] = np.hanning(80) * np.sign(rng.standard_normal())
    return (level * x / np.abs(x).max()).astype(np.float32)


def _manifest(folder: Path, per_class: dict[str, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "audio").mkdir(parents=True)
    rows = []
    for split, n in per_class.items():
        for label in LABELS:
            for i in range(n):
                name = f"audio/{split}-{label}-{i}.flac"
                sf.write(folder / name, _clip(label, rng), SR)
                rows.append({"path": name, "label": label, "split": split})
    path = folder / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return _manifest(tmp_path_factory.mktemp("synth"), {"train": 20, "test": 4}, seed=0)


def _config(synthetic: Path, folder: Path, **kw) -> TrainConfig:
    return TrainConfig(manifests=[synthetic], out=folder / f"audio-{kw.get('seed', 0)}.pt", cache_dir=folder / "cache",
                       crop_s=1.0, batch=8, threads=2, **{"epochs": 6, **kw})


@pytest.fixture(scope="module")
def trained(synthetic, bundled_encoder, tmp_path_factory) -> tuple[TrainConfig, dict, list[str]]:
    cfg = _config(synthetic, tmp_path_factory.mktemp("run"), seed=0)
    lines: list[str] = []
    return cfg, train_audio(cfg, lines.append, encoder=bundled_encoder), lines


@pytest.mark.models
def test_train_audio_writes_a_checkpoint_that_classifies_unseen_clips(synthetic, bundled_encoder, trained):
    cfg, summary, lines = trained
    train, val = split_sets(cfg)
    assert set(train[0].splits) == {"train"}, "test rows are never trained or validated on"
    assert sorted(val[0].labels) == sorted(LABELS * 2)  # 10 % of each label

    assert summary["epochs_run"] == len(summary["history"]) >= 2
    first = summary["history"][0]["val"][synthetic.parent.name]
    assert {"accuracy", "macro_f1", "macro_recall", "t2a"} <= set(first) and set(first["t2a"]) == {"R@1", "R@5"}
    assert any(line.startswith("epoch 1: loss") for line in lines)
    assert 0.0 <= summary["alpha"] <= 1.0 and summary["temperature"] in (0.5, 1.0, 2.0)

    ckpt = read_checkpoint(cfg.out)
    assert ckpt.labels == sorted(LABELS) and ckpt.text_space == bundled_encoder.id
    assert ckpt.mel_floor is not None and ckpt.min_seconds == 2.5 and ckpt.format_version == 1
    np.testing.assert_allclose(ckpt.mel_floor.numpy(), noise_floor(LogMel().fb.numpy()), rtol=1e-6)

    head = load_audio_head(bundled_encoder, cfg.out)
    assert head is not None and head.projection_fits
    rows = [r for r in csv.DictReader(synthetic.open()) if r["split"] == "test"]
    waves = [sf.read(synthetic.parent / r["path"], dtype="float32")[0] for r in rows]
    logits, _, _ = head.forward(waves)
    predicted = [head.labels[i] for i in logits.argmax(axis=1)]
    accuracy = np.mean([p == r["label"] for p, r in zip(predicted, rows)])
    assert accuracy >= 0.75, list(zip(predicted, [r["label"] for r in rows]))  # chance: 1/3
    # and the vectors land nearest their own label's prompts in the text space
    vectors = head.encode(waves)
    nearest = (vectors @ head.label_vectors.T).argmax(axis=1)
    assert np.mean([head.labels[i] == r["label"] for i, r in zip(nearest, rows)]) >= 0.9


def test_noise_floor_makes_8_bit_and_16_bit_copies_look_alike():
    """The 8-bit ESC-50 training copy against 16-bit recordings: quiet detail differs, the
    floor hides it (FINDINGS-sized gap: 18 % of bins off by more than a factor e)."""
    rng = np.random.default_rng(3)
    t = np.arange(SR * 2) / SR
    decay = np.exp(-3 * t)  # a struck sound fading into the quantisation noise
    x = (0.5 * decay * np.sin(2 * np.pi * 440 * t) + 0.002 * decay * rng.standard_normal(len(t))).astype(np.float32)
    eight_bit = (np.round(x * 128) / 128).astype(np.float32)
    plain = LogMel()
    floored = LogMel(floor=noise_floor(plain.fb.numpy()))

    def gap(front: LogMel) -> float:
        a, b = front.raw(torch.from_numpy(x)[None]), front.raw(torch.from_numpy(eight_bit)[None])
        return float((a - b).abs().mean())

    assert gap(plain) > 1.0
    assert gap(floored) < 0.2 * gap(plain)


def test_cached_mels_moved_onto_the_floor_match_the_floored_front_end(synthetic, tmp_path):
    clips = load_clipset(synthetic, tmp_path, splits={"test"}, max_gain_db=None)
    floor = noise_floor(LogMel().fb.numpy())
    moved = with_floor(clips, floor)
    wave = np.zeros(int(clips.mels.shape[2] - 1) * 320, np.float32)
    data, _ = sf.read(clips.rows[0]["path"], dtype="float32")
    wave[: len(data)] = data[: len(wave)]
    direct = LogMel(floor=floor).raw(torch.from_numpy(wave)[None])[0].numpy()
    n = min(direct.shape[1], moved.mels.shape[2])
    np.testing.assert_allclose(moved.mels[0, :, : n - 2].astype(np.float32), direct[:, : n - 2], atol=0.02)


def test_augment_masks_with_the_per_band_silence():
    rng = np.random.default_rng(0)
    silence = torch.linspace(-8.0, -7.0, 16)[:, None]
    x = torch.zeros(4, 16, 40)
    out = augment(x, None, rng, silence)
    masked = out == silence.expand(16, 40)[None]
    assert masked.any(), "SpecAugment masks write the floor's value, band by band"
    # where a whole frame is masked, every band holds its own silence value
    frames = masked.all(dim=1)
    assert frames.any()


@pytest.mark.models
def test_runs_on_the_same_rows_combine_into_an_ensemble(synthetic, bundled_encoder, trained, tmp_path):
    cfg, _, _ = trained
    other = _config(synthetic, cfg.out.parent, seed=1, val_seed=0, epochs=2)
    train_audio(other, lambda line: None, encoder=bundled_encoder)
    out = tmp_path / "ensemble.pt"
    lines: list[str] = []
    summary = combine_runs(replace(cfg, out=out, val_seed=0), [cfg.out, other.out], lines.append,
                           encoder=bundled_encoder)
    assert set(summary["members"]) == {cfg.out.name, other.out.name}
    assert any(line.startswith("ensemble |") for line in lines)

    head = load_audio_head(bundled_encoder, out)
    assert head is not None and len(head.net.members) == 2
    rng = np.random.default_rng(5)
    waves = [_clip(label, rng) for label in LABELS]
    members = [load_audio_head(bundled_encoder, c.out).forward(waves)[0] for c in (cfg, other)]
    np.testing.assert_allclose(head.forward(waves)[0], (members[0] + members[1]) / 2, atol=1e-4)

    # a run trained on other rows (its log-mel statistics differ) is refused, not averaged in
    foreign = read_checkpoint(other.out)
    replace(foreign, mel_mean=foreign.mel_mean + 0.5).save(tmp_path / "foreign.pt")
    with pytest.raises(BadRequest, match="other rows"):
        combine_runs(cfg, [cfg.out, tmp_path / "foreign.pt"], encoder=bundled_encoder)
    with pytest.raises(BadRequest, match="two or more"):
        combine_runs(cfg, [cfg.out], encoder=bundled_encoder)


@pytest.mark.models
def test_eval_audio_prints_the_contract_and_honours_exclusions(synthetic, trained, tmp_path, capsys):
    from cli import main

    cfg, _, _ = trained
    rows = list(csv.DictReader(synthetic.open()))
    for i, r in enumerate(rows):  # mark two test rows as sharing a source with some test set
        r["same_source"] = str(r["split"] == "test" and i % 6 == 0)
    manifest = synthetic.parent / "marked.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    n_marked = sum(r["same_source"] == "True" for r in rows)
    assert n_marked >= 1

    argv = ["eval-audio", "--manifest", str(manifest), "--split", "test", "--weights", str(cfg.out), "--json"]
    assert main(argv) == 0
    full = json.loads(capsys.readouterr().out)
    assert {"accuracy", "macro_f1", "macro_recall", "t2a", "n"} <= set(full) and set(full["t2a"]) == {"R@1", "R@5"}
    assert full["n"] == 12 and full["accuracy"] >= 0.9 and full["t2a"]["R@1"] == 1.0

    assert main([*argv, "--exclude", "same_source=True"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert kept["n"] == 12 - n_marked and kept["excluded"] == n_marked

    assert main([*argv, "--exclude", "no_such_column=1"]) == 2
    assert "no column 'no_such_column'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--exclude", "no-equals-sign"])


@pytest.mark.models
def test_tune_open_set_chooses_the_power_on_the_runs_validation_rows(trained, bundled_encoder, tmp_path):
    from training.audio_openset import POWERS, tune_open_set, validation_rows

    cfg, _, _ = trained
    _, val = split_sets(cfg)
    assert sorted(r["path"] for r in validation_rows(cfg)) == sorted(r["path"] for r in val[0].rows)
    lines: list[str] = []
    out = tmp_path / "open.pt"
    summary = tune_open_set(replace(cfg, out=out), cfg.out, bundled_encoder, lines.append)
    assert [row["power"] for row in summary["open_set_on_val"]] == [None, *POWERS]
    assert summary["validation_clips"] == len(val[0].labels) and len(lines) == 1 + len(POWERS)
    best = max(row["auc"] for row in summary["open_set_on_val"])
    chosen = next(row for row in summary["open_set_on_val"] if row["power"] == summary["confidence_power"])
    assert chosen["auc"] == best
    tuned, before = read_checkpoint(out), read_checkpoint(cfg.out)
    assert tuned.confidence_power == summary["confidence_power"] and before.confidence_power is None
    assert tuned.labels == before.labels and all(bool((tuned.state[k] == v).all()) for k, v in before.state.items())


@pytest.mark.models
def test_eval_audio_reports_absent_and_unknown_sounds(synthetic, trained, tmp_path, capsys):
    from cli import main

    cfg, _, _ = trained
    weights = tmp_path / "open.pt"
    replace(read_checkpoint(cfg.out), confidence_power=0.25).save(weights)
    argv = ["eval-audio", "--manifest", str(synthetic), "--split", "test", "--weights", str(weights), "--json"]
    assert main([*argv, "--absent"]) == 0
    out = json.loads(capsys.readouterr().out)
    absent = out["absent_class"]
    assert absent["confidence_power"] == 0.25 and "-open:" in out["audio_head"]
    for key in ("cosine", "closed_set_cosine"):
        report = absent[key]
        assert report["queries"] == len(LABELS)
        assert set(report["best_absent_hit"]) == {"q10", "q25", "q50", "q75", "q90"}
        assert 0.0 <= report["present_vs_absent_auc"] <= 1.0
    # the abstention scales label cosines down, never up
    assert absent["cosine"]["best_absent_hit"]["q90"] <= absent["closed_set_cosine"]["best_absent_hit"]["q90"] + 1e-6
    assert set(absent["engine"]) == {"relevance", "score"}
    assert absent["engine"]["relevance"]["queries"] == len(LABELS)

    assert main([*argv, "--absent", "--drop-label", "rain"]) == 0
    unseen = json.loads(capsys.readouterr().out)["absent_class"]["unseen"]
    assert unseen["unseen_clips"] == 4 and "unseen_clip_best_hit" in unseen
    assert main([*argv, "--drop-label", "no_such_sound"]) == 2
    assert "no_such_sound" in capsys.readouterr().err
