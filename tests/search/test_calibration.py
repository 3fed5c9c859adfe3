"""Calibration: one relevance scale across modalities, cached in the catalog, invalidated."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from search.calibration import META_KEY, TEXT_PROBES, Calibration, Scale
from search.encoders.base import l2_normalize
from search.query import Query, QueryPart
from tests.search.synthetic import add_item, engine_over

DIM = 32


@pytest.fixture()
def skewed(tmp_path):
    """Text items all lean towards the probes' mean direction (raw cosines run high);
    image items do not (raw cosines run low)."""
    engine, index, enc = engine_over(tmp_path, DIM)
    rng = np.random.default_rng(11)
    centre = l2_normalize(enc.encode_text(list(TEXT_PROBES)).mean(axis=0))[0]
    for i in range(150):
        add_item(index, 2.5 * centre + rng.standard_normal(DIM) * 0.6, f"/t/{i}.txt", "text", text=f"t{i}")
        add_item(index, rng.standard_normal(DIM), f"/i/{i}.jpg", "image")
    index.checkpoint()
    yield engine, index, centre
    index.close()


def test_scale_inverse_and_range():
    s = Scale(mu=0.1, sigma=0.05, center=3.0, spread=0.8)
    cos = np.linspace(-1, 1, 41)
    rel = s.relevance(cos)
    assert np.all((rel >= 0) & (rel <= 1)) and np.all(np.diff(rel) >= 0)
    for r in (0.1, 0.5, 0.9):
        assert s.relevance(np.array([s.raw(r)]))[0] == pytest.approx(r, abs=1e-4)


def test_one_threshold_means_the_same_across_modalities(skewed):
    engine, _, centre = skewed
    cal = engine.calibration()
    text_cut = cal.scale("text", "text").raw(0.5)
    image_cut = cal.scale("text", "image").raw(0.5)
    assert text_cut > image_cut + 0.1  # the same relevance needs a far higher raw text cosine
    # the text-probe mean direction scores every text item high in raw cosine, yet a
    # threshold keeps only the items that stand out in their own modality
    query = Query(parts=[QueryPart(text="x")], k=300, min_score=0.5, hybrid=False)
    hits = engine.search_embedded(query, centre[None, :])
    assert hits and all(h.extra["relevance"] >= 0.5 for h in hits)
    raw = Query(parts=[QueryPart(text="x")], k=300, hybrid=False)
    everything = engine.search_embedded(raw, centre[None, :])
    assert len(hits) < len(everything) == 300
    # within a modality relevance follows the raw score
    for modality in ("text", "image"):
        ours = [h for h in everything if h.modality == modality]
        rel = [h.extra["relevance"] for h in ours]
        assert rel == sorted(rel, reverse=True)


def test_cached_in_meta_and_recomputed_when_the_index_changes(skewed):
    engine, index, _ = skewed
    first = engine.calibration()
    stored = json.loads(index.catalog.get_meta(META_KEY))
    assert stored["fingerprint"] == first.fingerprint
    assert engine.calibration() is first  # in-memory cache while unchanged
    assert Calibration.from_json(index.catalog.get_meta(META_KEY)).scales == first.scales
    add_item(index, np.ones(DIM), "/i/new.jpg", "image")
    index.checkpoint()
    second = engine.calibration()
    assert second.fingerprint != first.fingerprint
    assert json.loads(index.catalog.get_meta(META_KEY))["fingerprint"] == second.fingerprint


def test_a_server_engine_keeps_answering_with_the_old_scale_while_recomputing(skewed):
    """Each indexing checkpoint changes the index; concurrent searches must not each stop to
    recompute the probes: the old calibration answers while one background thread works."""
    engine, index, _ = skewed
    engine.background_calibration = True
    first = engine.calibration()
    add_item(index, np.ones(DIM), "/i/new.jpg", "image")
    index.checkpoint()
    with engine._calibration_lock:  # hold the computation back: searches go on meanwhile
        assert engine.calibration() is first
    deadline = time.monotonic() + 30
    while engine.calibration() is first:
        assert time.monotonic() < deadline, "the calibration was never refreshed"
        time.sleep(0.01)
    assert engine.calibration().fingerprint != first.fingerprint


def test_a_stand_in_that_is_not_an_encoder_gets_no_shipped_fits_and_still_searches(tmp_path):
    """The bench's vector-only stand-in (no ``weights_key``) made Engine() raise
    AttributeError; it now falls back to the index's own scale."""
    from search.calibration import load_shipped
    from search.engine import Engine

    class VectorsOnly:
        id = "fake"
        dim = 32

        def encode_text(self, texts):
            return l2_normalize(np.ones((len(texts), 32), dtype=np.float32))

    assert load_shipped(VectorsOnly()).models == {}
    _, index, enc = engine_over(tmp_path)
    add_item(index, np.ones(enc.dim), "/a.png", "image")
    engine = Engine(index, VectorsOnly())  # type: ignore[arg-type]
    assert engine.search(Query(parts=[QueryPart(text="anything")], k=1)).hits
