"""The shipped relevance calibration on a judged fixture of training-side photos, clips and
texts that its fit left out (``training.calibration_data.select_fixture``), searched through
the real engine and bundled encoder."""

from __future__ import annotations

import re

import numpy as np
import pytest

from search.audio import iter_windows
from search.calibration import load_shipped
from search.engine import Engine
from search.index import Index
from search.media import open_image
from search.query import Filters, Query
from tests.search.synthetic import add_item
from training.calibration_data import CONCEPTS, SOUNDS, select_fixture

pytestmark = [pytest.mark.models, pytest.mark.shared_data, pytest.mark.slow]

QUERY_TYPES = ("text>image", "text>text", "text>audio", "image>image", "image>text", "image>audio",
               "audio>audio", "audio>image", "audio>text")


@pytest.fixture(scope="module")
def judged(tmp_path_factory, bundled_encoder, shared_data):
    """(engine over the fixture, {path: relevance rule inputs}) for the text queries."""
    caps, docs, clips = select_fixture(shared_data)
    index = Index.open_for_write(tmp_path_factory.mktemp("fixture"), bundled_encoder.id, bundled_encoder.dim)
    truth: dict[str, tuple[str, object]] = {}
    photos = list(caps)
    for path, vec in zip(photos, bundled_encoder.encode_image([open_image(p) for p in photos])):
        add_item(index, vec, str(path), "image")
        truth[str(path)] = ("image", caps[path])
    for i, (doc, vec) in enumerate(zip(docs, bundled_encoder.encode_text(docs))):
        add_item(index, vec, f"/texts/{i}.txt", "text", text=doc)
        truth[f"/texts/{i}.txt"] = ("text", doc)
    for path, label in clips:
        windows = [w.samples for w in iter_windows(path)]
        if windows:
            add_item(index, bundled_encoder.encode_audio(windows[:1])[0], str(path), "audio")
            truth[str(path)] = ("audio", label)
    index.checkpoint()
    yield Engine(index, bundled_encoder), truth
    index.close()


def _relevant(kind: str, value: object, pattern: str, labels: tuple[str, ...]) -> bool:
    if kind == "audio":
        return value in labels
    if not pattern:
        return False
    rx = re.compile(pattern, re.IGNORECASE)
    texts = value if isinstance(value, list) else [value]
    return any(rx.search(t) for t in texts)  # type: ignore[arg-type]


def _judged_hits(engine: Engine, truth: dict) -> dict[str, list[tuple[float, bool]]]:
    """Per result modality: (relevance, relevant?) of every hit of every text query."""
    out: dict[str, list[tuple[float, bool]]] = {"image": [], "text": [], "audio": []}
    for text, pattern, labels in CONCEPTS + SOUNDS:
        for modality in out:
            query = Query.text(text, k=1000, hybrid=False, filters=Filters(modality=[modality]))
            for hit in engine.search(query).hits:
                kind, value = truth[hit.path]
                out[modality].append((hit.extra["relevance"], _relevant(kind, value, pattern, labels)))
    return out


def test_the_shipped_calibration_covers_every_query_type(bundled_encoder):
    # a retrained encoder side retires its types: re-run `crossfind train-calibration`
    assert sorted(load_shipped(bundled_encoder).models) == sorted(QUERY_TYPES)


def _kept_shares(engine: Engine, truth: dict) -> dict[str, float]:
    """Per modality: the share of relevant hits among those at relevance 0.5 or above."""
    shares = {}
    for modality, pairs in _judged_hits(engine, truth).items():
        rel = np.array([r for r, _ in pairs])
        ok = np.array([y for _, y in pairs])
        kept = rel >= 0.5
        assert kept.sum() >= 20, modality  # enough kept hits to measure
        shares[modality] = round(float(ok[kept].mean()), 3)
    return shares


def test_a_threshold_of_one_half_means_the_same_for_photos_clips_and_texts(judged):
    engine, truth = judged
    shares = _kept_shares(engine, truth)
    # of the hits a 0.5 threshold keeps, the same share (within +-0.1) is relevant in every
    # modality, photos, clips and passages alike, and at least half of them, as a probability
    # promises (the index's own calibration alone kept 19 % / 24 % / 7 % relevant here)
    assert max(shares.values()) - min(shares.values()) <= 0.2, shares
    assert min(shares.values()) >= 0.5, shares
