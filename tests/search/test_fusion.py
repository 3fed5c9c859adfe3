"""Fusion strategies on hand-made vectors with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from search.attention import HeuristicAttention, LearnedAttention, attention_weights, part_features
from search.encoders.base import l2_normalize
from search.errors import BadRequest
from search.fusion import late_fuse, weighted_average
from search.query import Filters, Query, QueryPart
from tests.search.synthetic import add_item, basis, engine_over

DIM = 32
STRATEGIES = ("weighted", "attention", "attention_learned", "rrf", "score_sum")


def _query(weights: list[float], fusion: str = "weighted", **kw: object) -> Query:
    parts = [QueryPart(text=f"part{i}", weight=w) for i, w in enumerate(weights)]
    return Query(parts=parts, fusion=fusion, hybrid=False, **kw)


def _unit(*pairs: tuple[int, float]) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    for i, x in pairs:
        v[i] = x
    return l2_normalize(v)[0]


@pytest.fixture()
def concept_index(tmp_path):
    """Items mixing concepts e0..e3, plus 40 noise items that every list ranks low."""
    engine, index, _ = engine_over(tmp_path, DIM)
    rng = np.random.default_rng(0)
    ids = {
        "both": add_item(index, _unit((0, 1), (1, 1)), "/c/both.jpg"),
        "only0": add_item(index, _unit((0, 1), (2, -0.1)), "/c/only0.jpg"),
        "only1": add_item(index, _unit((1, 1)), "/c/only1.jpg"),
        "zero_two": add_item(index, _unit((0, 1), (2, 1)), "/c/zero_two.jpg"),
        "three": add_item(index, _unit((3, 1)), "/c/three.jpg"),
    }
    for i in range(40):
        v = rng.standard_normal(DIM).astype(np.float32)
        v[:4] = 0.05 * rng.standard_normal(4)
        add_item(index, v, f"/c/noise{i:02d}.jpg")
    index.checkpoint()
    yield engine, ids
    index.close()


def test_weighted_average_formula_and_negative_total():
    v = np.stack([basis(4, 0), basis(4, 1)])
    assert np.allclose(weighted_average(v, np.array([1.0, 1.0])), l2_normalize(np.array([1, 1, 0, 0]))[0])
    assert np.allclose(weighted_average(v, np.array([3.0, 1.0])), l2_normalize(np.array([3, 1, 0, 0]))[0])
    # sum(w) < 0: the signed sum keeps its direction instead of flipping
    out = weighted_average(v, np.array([1.0, -2.0]))
    assert out[0] > 0 > out[1]
    with pytest.raises(BadRequest):
        weighted_average(v, np.array([-1.0, -1.0]))
    with pytest.raises(BadRequest):
        weighted_average(np.stack([basis(4, 0), basis(4, 0)]), np.array([1.0, -1.0]))


@pytest.mark.parametrize("fusion", STRATEGIES)
def test_two_concepts_find_the_item_with_both(concept_index, fusion):
    engine, ids = concept_index
    hits = engine.search_embedded(_query([1, 1], fusion, k=3), np.stack([_unit((0, 1)), _unit((1, 1))]))
    assert hits[0].id == ids["both"]


@pytest.mark.parametrize("fusion", STRATEGIES)
def test_negative_part_demotes_the_distractor(concept_index, fusion):
    engine, ids = concept_index
    vectors = np.stack([_unit((0, 1), (2, 1)), _unit((2, 1))])
    alone = engine.search_embedded(_query([1], fusion, k=3), vectors[:1])
    assert alone[0].id == ids["zero_two"]
    hits = engine.search_embedded(_query([1, -1], fusion, k=3), vectors)
    order = [h.id for h in hits]
    assert order[0] == ids["only0"]
    assert ids["zero_two"] not in order[:1]


def test_single_part_is_identical_under_every_strategy(tmp_path):
    engine, index, _ = engine_over(tmp_path, DIM)
    rng = np.random.default_rng(1)
    for i in range(300):
        add_item(index, rng.standard_normal(DIM), f"/r/{i:03d}.{'jpg' if i % 3 else 'txt'}",
                 "image" if i % 3 else "text", text=None if i % 3 else f"doc {i}")
    index.checkpoint()
    vec = l2_normalize(rng.standard_normal(DIM))
    for kw in ({}, {"filters": Filters(ext=["txt"])}, {"offset": 5, "min_score": 0.1}):
        outs = []
        for fusion in STRATEGIES:
            q = Query(parts=[QueryPart(text="doc", weight=0.7)], fusion=fusion, k=20, **kw)
            outs.append([h.to_json() for h in engine.search_embedded(q, vec)])
        assert outs[0], kw
        assert all(o == outs[0] for o in outs[1:]), kw
    index.close()


def test_late_fusion_known_ranks():
    # candidates a, b, c; part 1 ranks a>b>c, part 2 ranks c>b>a: b is the compromise
    scores = np.array([[0.9, 0.8, 0.1], [0.1, 0.8, 0.9]], dtype=np.float32)
    rrf = late_fuse(scores, np.array([1.0, 1.0]), "rrf")
    # scaled by the positive weight total (2)
    assert np.isclose(rrf[1], 1 / 62) and np.isclose(rrf[0], (1 / 61 + 1 / 63) / 2)
    summed = late_fuse(scores, np.array([1.0, 1.0]), "score_sum")
    assert np.argmax(summed) == 1
    # a negative part most like c pushes c to the bottom
    neg = late_fuse(scores[:1].repeat(2, 0) * [[1], [0]] + [[0], [1]] * scores[1:], np.array([1.0, -1.0]), "rrf")
    assert np.argmin(neg) == 2


def test_attention_downweights_the_part_that_disagrees():
    vectors = np.stack([_unit((0, 1), (1, 0.1)), _unit((0, 1), (1, -0.1)), _unit((7, 1))])
    weights = np.array([1.0, 1.0, 1.0], dtype=np.float32)
    neighbours = np.tile(np.linspace(0.9, 0.1, 32, dtype=np.float32), (3, 1))
    feats = part_features(vectors, weights, ["text", "text", "text"], neighbours)
    w = attention_weights(weights, HeuristicAttention(agree_scale=2.0, peak_scale=0.25).logits(feats))
    assert np.isclose(w.sum(), 3.0) and w[2] < w[0] and np.isclose(w[0], w[1])
    # peaked neighbour scores raise a part's weight when agreement is equal
    peaked = neighbours.copy()
    peaked[0, 0] = 1.5
    w2 = attention_weights(weights, HeuristicAttention(agree_scale=0).logits(
        part_features(vectors, weights, ["text"] * 3, peaked)))
    assert w2[0] > w2[1]
    # negative parts keep their weight; one positive part keeps its weight
    w3 = attention_weights(np.array([2.0, -0.5]), np.array([5.0, -3.0]))
    assert np.allclose(w3, [2.0, -0.5])


def test_learned_attention_weights_ship_and_give_finite_logits():
    model = LearnedAttention.load()
    feats = part_features(np.stack([_unit((0, 1)), _unit((1, 1))]), np.array([1.0, 1.0]),
                          ["text", "item"], np.tile(np.linspace(0.8, 0.2, 32), (2, 1)))
    logits = model.logits(feats)
    assert logits.shape == (2,) and np.all(np.isfinite(logits))
    w = attention_weights(np.array([1.0, 1.0]), logits)
    assert np.isclose(w.sum(), 2.0) and np.all(w > 0)
