"""``crossfind train-calibration``'s fitting on synthetic judged pairs with known answers."""

from __future__ import annotations

import numpy as np

from training.calibration import Judged, choose_auto_floor, fit_models, fit_platt


def test_fit_platt_recovers_a_known_model():
    rng = np.random.default_rng(0)
    cos = rng.uniform(-0.2, 0.8, 40_000)
    gap = -rng.uniform(0, 0.5, 40_000)
    p = 1 / (1 + np.exp(-(12 * cos + 3 * gap - 5)))
    y = (rng.random(40_000) < p).astype(float)
    beta = fit_platt(np.stack([cos, gap], axis=1), y, np.ones_like(y))
    np.testing.assert_allclose(beta, [12, 3, -5], atol=0.6)


def test_models_are_calibrated_per_query_type():
    # photos score lower than texts for the same evidence: the fitted models differ so that
    # the same relevance means the same chance of a relevant hit in both
    rng = np.random.default_rng(1)
    judged = {}
    for name, shift in (("text>image", 0.0), ("text>text", 0.3)):
        labels = rng.random((60, 300)) < 0.1
        scores = 0.1 + shift + 0.25 * labels + rng.normal(0, 0.06, labels.shape)
        judged[name] = Judged(scores.astype(np.float32), labels)
    models = fit_models(judged)
    assert models["text>text"].raw(0.5) - models["text>image"].raw(0.5) > 0.2
    for name, j in judged.items():
        cos, gap, y, _ = j.features()
        p = models[name].probability(cos, gap)
        kept = p >= 0.5
        assert abs(y[kept].mean() - p[kept].mean()) < 0.05  # calibrated where it keeps


def test_auto_floor_is_chosen_by_mean_f1():
    rng = np.random.default_rng(2)
    lists = []
    for _ in range(50):
        y = rng.random(200) < 0.05
        p = np.clip(np.where(y, 0.7, 0.1) + rng.normal(0, 0.1, 200), 0, 1)
        lists.append((p, y))
    floor, report = choose_auto_floor(lists)
    assert 0.2 <= floor <= 0.6 and report["auto_f1"] > 0.8 and report["global_f1"] > 0.8
