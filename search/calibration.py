"""One relevance scale across modalities: raw cosine -> calibrated 0..1 relevance.

Raw cosines are not comparable across modalities (in the bundled space a text query scores
text passages far higher than photos). For each pair (query modality, result modality) the
index is probed once: text probes are generic phrases embedded with the index's encoder,
image/audio probes are random stored items of that modality (their own match left out). From
the probes' scores against the result modality we keep the null distribution (mean mu, std
sigma over random pairs) and the z-scores of each probe's best match. Relevance is

    z = (cos - mu) / sigma;   relevance = sigmoid((z - center) / spread)

with ``center`` the median best-match z of the probes minus one ``spread`` and ``spread`` their
spread: a generic query's best match lands near 0.73, an average pair near 0. The tables are
computed by the indexer at the end of a run (or lazily), cached in the catalog's meta table,
and recomputed when the index changes: any change below ``REUSE_MIN`` vectors, else a change
of the vector count by more than ``REUSE_FRACTION`` (the scales are statistics of a sample,
stable under small changes; recomputing costs seconds at 1M, never on a user's first query).

These per-index scales are the fallback. Where the encoder ships a relevance calibration
(``RelevanceWeights``, fitted by ``crossfind train-calibration`` on judged training-side data)
for a query type and its weights still match the encoder's, relevance is that model's estimate
of the probability that the hit is relevant, from its cosine and its distance to the query's
best cosine in the same modality.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from search.catalog import Catalog
from search.checkpoints import PlattModel, RelevanceWeights
from search.store.base import VectorStore

META_KEY = "calibration_v1"
PROBES_PER_MODALITY = 48
NULL_SAMPLE = 2000
MIN_SPREAD = 0.5
REUSE_MIN = 10_000
REUSE_FRACTION = 0.1
SHIPPED_FILE = "relevance_calibration.json"
# the auto cutoff's least kept relevance where no shipped calibration says otherwise
AUTO_FLOOR = 0.3

# generic text probes: everyday subjects across photos, documents and sounds
TEXT_PROBES = (
    "a dog", "a cat", "a bird", "a horse", "people", "a man", "a woman", "a child", "a crowd",
    "a car", "a bicycle", "a boat", "a train", "an airplane", "a street", "a city at night",
    "a building", "a house", "a kitchen", "food on a plate", "a cup of coffee", "a beach",
    "the sea", "a mountain", "snow", "a forest", "a garden with flowers", "a field of grass",
    "a river", "the sky", "sports", "a football match", "a ball", "music", "a guitar",
    "someone speaking", "birds singing", "rain", "wind", "a siren", "a clock ticking",
    "the economy", "politics and elections", "science and technology", "a computer",
    "a phone", "a book", "a meeting", "business news", "health and medicine",
)


@dataclass(frozen=True)
class Scale:
    mu: float
    sigma: float
    center: float
    spread: float

    def relevance(self, cos: np.ndarray) -> np.ndarray:
        z = (np.asarray(cos, dtype=np.float64) - self.mu) / self.sigma
        return (1.0 / (1.0 + np.exp(-(z - self.center) / self.spread))).astype(np.float32)

    def relevance_one(self, cos: float, gap: float = 0.0) -> float:
        """``relevance`` of one score, without numpy's per-call overhead (hot path)."""
        z = (cos - self.mu) / self.sigma
        x = min(max(-(z - self.center) / self.spread, -60.0), 60.0)  # math.exp overflows
        return 1.0 / (1.0 + math.exp(x))

    def raw(self, relevance: float) -> float:
        """The cosine at which relevance equals ``relevance`` (the inverse map)."""
        r = min(max(relevance, 1e-6), 1 - 1e-6)
        z = self.center + self.spread * math.log(r / (1 - r))
        return self.mu + self.sigma * z


IDENTITY = Scale(mu=0.0, sigma=1.0, center=0.0, spread=1.0)


@dataclass(frozen=True)
class Shipped:
    """The usable part of an encoder's shipped calibration."""

    models: dict[str, PlattModel] = field(default_factory=dict)  # "text>image" -> model
    auto_floor: float = AUTO_FLOOR


NO_SHIPPED = Shipped()


def shipped_file() -> Path:
    return Path(str(resources.files("search.encoders") / "weights" / SHIPPED_FILE))


def shipped_for(weights: RelevanceWeights | None, keys: dict[str, str], encoder_id: str) -> Shipped:
    """The query types of ``weights`` fitted for this encoder's weights: a type is dropped when
    either side's modality is now embedded by other weights (``keys``: modality -> weights key),
    and the index's own scale serves it until the calibration is refitted."""
    if weights is None or weights.encoder != encoder_id:
        return NO_SHIPPED
    fresh = {m for m, key in keys.items() if weights.fingerprints.get(m) == key}
    models = {name: model for name, model in weights.models.items()
              if set(name.split(">")) <= fresh}
    return Shipped(models, weights.auto_floor)


def load_shipped(encoder: object, path: Path | None = None) -> Shipped:
    """``shipped_for`` the file shipped with the encoders (absent or unreadable: none)."""
    try:
        weights = RelevanceWeights.load(path or shipped_file())
    except (OSError, ValueError):
        return NO_SHIPPED
    weights_key = getattr(encoder, "weights_key", None)
    if weights_key is None:  # not an Encoder (a stand-in that embeds nothing itself): no fits
        return NO_SHIPPED
    keys = {m: weights_key(m) for m in ("text", "image", "audio")}
    return shipped_for(weights, keys, str(getattr(encoder, "id", "")))


def auto_keep(relevance: np.ndarray, floor: float = AUTO_FLOOR) -> np.ndarray:
    """Which hits the auto cutoff keeps: of those at ``floor`` or above, the most relevant up
    to the count that maximises the expected F1 of the kept set, 2 * sum(kept p) / (kept +
    sum(p)), each relevance p taken as the chance that the hit is relevant (sums over the hits
    at ``floor`` or above). A list where few hits are likely relevant is cut short, one where
    many are stays long."""
    p = np.asarray(relevance, dtype=np.float64)
    keep = np.zeros(len(p), dtype=bool)
    order = np.argsort(-p, kind="stable")
    order = order[p[order] >= floor]
    if len(order) == 0:
        return keep
    gain = 2 * np.cumsum(p[order]) / (np.arange(1, len(order) + 1) + p[order].sum())
    keep[order[: int(np.argmax(gain)) + 1]] = True
    return keep


@dataclass
class Calibration:
    fingerprint: list[object]
    scales: dict[str, Scale]  # "text>image" -> Scale
    shipped: Shipped = NO_SHIPPED

    def scale(self, query_modality: str, result_modality: str) -> Scale | PlattModel:
        """The shipped model of the query type if there is one, else the index's scale."""
        return (
            self.shipped.models.get(f"{query_modality}>{result_modality}")
            or self.scales.get(f"{query_modality}>{result_modality}")
            or self.scales.get(f"text>{result_modality}")
            or IDENTITY
        )

    def relevance_one(self, query_modality: str, result_modality: str, cos: float, gap: float = 0.0) -> float:
        """A hit's relevance; ``gap`` is its cosine minus the best one in its modality (<= 0)."""
        scale = self.scale(query_modality, result_modality)
        if isinstance(scale, PlattModel):
            return scale.probability_one(cos, gap)
        return scale.relevance_one(cos)

    def relevance(self, query_modality: str, result_modality: str, cos: np.ndarray) -> np.ndarray:
        scale = self.scale(query_modality, result_modality)
        if isinstance(scale, PlattModel):
            return scale.probability(cos).astype(np.float32)
        return scale.relevance(cos)

    def floor(self, query_modality: str, relevance: float) -> float:
        """The lowest cosine that can reach ``relevance`` in any result modality."""
        keys = {k for k in self.scales if k.startswith(query_modality + ">")}
        keys |= {k for k in self.shipped.models if k.startswith(query_modality + ">")}
        if not keys:
            keys = set(self.scales)
        if not keys:
            return -1.0
        return min(self.scale(*k.split(">", 1)).raw(relevance) for k in keys)

    def to_json(self) -> str:
        return json.dumps(
            {"fingerprint": self.fingerprint, "scales": {k: asdict(v) for k, v in self.scales.items()}}
        )

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        return cls(data["fingerprint"], {k: Scale(**v) for k, v in data["scales"].items()})


def fingerprint(store: VectorStore, encoder_id: str) -> list[object]:
    ids = store.ids()
    return [encoder_id, int(store.count()), int(ids.max()) if len(ids) else -1]


def _scale(probe_scores: np.ndarray, null_scores: np.ndarray) -> Scale | None:
    if null_scores.size < 10 or probe_scores.size == 0:
        return None
    mu, sigma = float(null_scores.mean()), float(null_scores.std()) + 1e-6
    top_z = (probe_scores - mu) / sigma
    spread = max(float(top_z.std()), MIN_SPREAD)
    return Scale(mu, sigma, float(np.median(top_z)) - spread, spread)


def compute(
    store: VectorStore,
    catalog: Catalog,
    encoder_id: str,
    embed_text: Callable[[list[str]], np.ndarray],
    seed: int = 0,
) -> Calibration:
    """Probe the index and build the per-modality-pair scales (a second or two at 100k)."""
    rng = np.random.default_rng(seed)
    # rows commit before their vectors reach the store file: while an index is written, a
    # reader's catalog can name segments its store does not hold yet
    stored = store.ids()
    by_modality = {
        m: np.intersect1d(catalog.segment_ids(m), stored) for m in ("text", "image", "audio")
    }
    by_modality = {m: ids for m, ids in by_modality.items() if len(ids)}
    probes: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "text": (embed_text(list(TEXT_PROBES)), np.full(len(TEXT_PROBES), -1, dtype=np.int64))
    }
    for m in ("image", "audio"):
        if m in by_modality:
            ids = rng.choice(by_modality[m], min(PROBES_PER_MODALITY, len(by_modality[m])), replace=False)
            ids, vecs = store.vectors(ids)
            probes[m] = (vecs, ids)
    scales: dict[str, Scale] = {}
    for target, target_ids in by_modality.items():
        sample = rng.choice(target_ids, min(NULL_SAMPLE, len(target_ids)), replace=False)
        sample, sample_vecs = store.vectors(sample)
        for qmod, (qvecs, qids) in probes.items():
            null = qvecs @ sample_vecs.T
            null = null[qids[:, None] != sample[None, :]]  # a probe is never its own null pair
            scores, ids = store.search(qvecs, 2, target_ids)
            best = np.where(ids[:, 0] == qids, scores[:, 1], scores[:, 0])
            best = best[np.isfinite(best)]
            scale = _scale(best, null)
            if scale is not None:
                scales[f"{qmod}>{target}"] = scale
    return Calibration(fingerprint(store, encoder_id), scales)


def current(stored: list[object], now: list[object]) -> bool:
    """Whether a calibration made at ``stored`` still serves the index at ``now``."""
    if stored == now:
        return True
    if len(stored) != 3 or stored[0] != now[0]:
        return False
    then, count = int(stored[1]), int(now[1])  # type: ignore[call-overload]
    return then >= REUSE_MIN and abs(count - then) <= REUSE_FRACTION * then


def load_or_compute(
    store: VectorStore,
    catalog: Catalog,
    encoder_id: str,
    embed_text: Callable[[list[str]], np.ndarray],
    cached: Calibration | None = None,
    shipped: Shipped = NO_SHIPPED,
) -> Calibration:
    """The index's calibration: ``cached`` or the meta table's if still current, else fresh;
    ``shipped``: the encoder's shipped models, which serve the query types they cover."""
    cal = _index_calibration(store, catalog, encoder_id, embed_text, cached)
    cal.shipped = shipped
    return cal


def _index_calibration(
    store: VectorStore,
    catalog: Catalog,
    encoder_id: str,
    embed_text: Callable[[list[str]], np.ndarray],
    cached: Calibration | None,
) -> Calibration:
    fp = fingerprint(store, encoder_id)
    if cached is not None and current(cached.fingerprint, fp):
        return cached
    stored = catalog.get_meta(META_KEY)
    if stored:
        try:
            cal = Calibration.from_json(stored)
        except (ValueError, KeyError, TypeError):
            cal = None
        if cal is not None and current(cal.fingerprint, fp):
            return cal
    cal = compute(store, catalog, encoder_id, embed_text)
    with contextlib.suppress(Exception):
        catalog.set_meta(META_KEY, cal.to_json())
    return cal
