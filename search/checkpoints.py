"""The files of the learned parts, one typed and versioned format each, written and read here.

* ``ProjectionWeights``: the bundled encoder's image projection (``.npz``, numpy);
* ``AttentionWeights``: the learned attention fusion (``.npz``, numpy);
* ``AudioCheckpoint``: the audio encoder (``.pt``, torch tensors, read with ``weights_only``);
* ``RelevanceWeights``: the shipped relevance calibration (``.json``, a few numbers per query type).

``training/`` writes them with ``save``; ``search/`` reads them with ``load``. Files written
before a field existed load with the value that was in force then (named at each default).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch


def _float32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _npz_version(data: Any, readable: int) -> int:
    """The file's format version (files before the key: 1); a newer one than this code reads
    is refused."""
    version = int(data["format_version"]) if "format_version" in data else 1
    if version > readable:
        raise ValueError(f"format version {version} is newer than this crossfind reads")
    return version


@dataclass(frozen=True)
class ProjectionWeights:
    """Affine layers with ReLU between, over standardised 1,280-d EfficientNet features; fp16
    on disk. ``alpha`` is the label bridge's share in the mix with the projection."""

    FORMAT_VERSION: ClassVar[int] = 1

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (w [in, out], b [out]) per layer
    mean: np.ndarray
    std: np.ndarray
    alpha: float
    sentence_weight: float = 0.5  # the bridge setting the head was tuned with; files before it: 0.5
    # the bridge's pull of each class towards its parents (imagenet_hierarchy); files before it: 0
    hierarchy_weight: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)  # how it was trained
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        """A head that cannot run, or mix settings out of range, is refused (ValueError)."""
        if not self.layers:
            raise ValueError("a projection needs at least one layer")
        width = self.mean.shape[-1]
        if self.std.shape != self.mean.shape or not np.all(self.std > 0):
            raise ValueError("projection std must match mean and be positive")
        for i, (w, b) in enumerate(self.layers):
            if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise ValueError(f"projection layer {i} has shape {w.shape} / {b.shape}, "
                                 f"expected ({width}, n) / (n,)")
            width = w.shape[1]
        for name in ("alpha", "sentence_weight", "hierarchy_weight"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0 or (name == "alpha" and value > 1):
                raise ValueError(f"projection {name} {value} out of range")

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "format_version": np.array(self.format_version), "n_layers": np.array(len(self.layers)),
            "alpha": np.array(self.alpha), "sentence_weight": np.array(self.sentence_weight),
            "hierarchy_weight": np.array(self.hierarchy_weight),
            "mean": self.mean.astype(np.float16), "std": self.std.astype(np.float16),
            "meta": np.array(json.dumps(self.meta)),
        }
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"] = w.astype(np.float16)
            arrays[f"b{i}"] = b.astype(np.float16)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> ProjectionWeights:
        """Raises OSError, ValueError or KeyError for a missing, corrupt or foreign file."""
        with np.load(path, allow_pickle=False) as data:
            version = _npz_version(data, cls.FORMAT_VERSION)
            layers = tuple((_float32(data[f"w{i}"]), _float32(data[f"b{i}"]))
                           for i in range(int(data["n_layers"])))
            return cls(
                layers=layers, mean=_float32(data["mean"]), std=_float32(data["std"]),
                alpha=float(data["alpha"]),
                sentence_weight=float(data["sentence_weight"]) if "sentence_weight" in data else 0.5,
                hierarchy_weight=float(data["hierarchy_weight"]) if "hierarchy_weight" in data else 0.0,
                meta=json.loads(str(data["meta"])) if "meta" in data else {},
                format_version=version,
            )


@dataclass(frozen=True)
class AttentionWeights:
    """A one-hidden-layer MLP on standardised part features -> one logit per part; fp16 on disk."""

    FORMAT_VERSION: ClassVar[int] = 1

    mean: np.ndarray  # [features]
    std: np.ndarray
    w1: np.ndarray  # [features, hidden]
    b1: np.ndarray  # [hidden]
    w2: np.ndarray  # [hidden]
    encoder: str = ""  # the encoder whose vectors it was trained on
    format_version: int = FORMAT_VERSION

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {k: getattr(self, k).astype(np.float16)
                                  for k in ("mean", "std", "w1", "b1", "w2")}
        np.savez_compressed(path, format_version=np.array(self.format_version),
                            encoder=np.array(self.encoder), **arrays)

    @classmethod
    def load(cls, path: Path) -> AttentionWeights:
        """Raises OSError, ValueError or KeyError for a missing, corrupt or foreign file."""
        with np.load(path, allow_pickle=False) as data:
            version = _npz_version(data, cls.FORMAT_VERSION)
            return cls(mean=_float32(data["mean"]), std=_float32(data["std"]), w1=_float32(data["w1"]),
                       b1=_float32(data["b1"]), w2=_float32(data["w2"]),
                       encoder=str(data["encoder"]) if "encoder" in data else "", format_version=version)


@dataclass(frozen=True)
class FrontEnd:
    """How waveforms became the network's input: log(mel power + floor), standardised."""

    mel_mean: float
    mel_std: float
    mel_floor: torch.Tensor | None = None  # per-band noise floor; None: the first files' 1e-6
    max_gain_db: float | None = None  # loudness normalisation's gain cap; None: recorded levels


@dataclass(frozen=True)
class AudioCheckpoint:
    """The audio encoder: EfficientNet-Lite0 state dict(s) over log-mels, its label vocabulary,
    the text space its projection was trained for, the bridge/projection mix, and an optional
    spoken-digit expert with its own front end. fp16 state on disk.

    On disk it is a dict of plain values and tensors (``torch.load(weights_only=True)`` reads it);
    its ``format`` key is ``format_version``.
    """

    FORMAT_VERSION: ClassVar[int] = 1

    labels: list[str]
    mel_mean: float
    mel_std: float
    state: dict[str, torch.Tensor]
    members: list[dict[str, torch.Tensor]] = field(default_factory=list)  # ensemble: more states
    min_seconds: float = 1.0  # windows are zero-padded to this; files before the key: 1 s
    max_gain_db: float | None = 30.0  # loudness gain cap (None: recorded levels); files before it: 30
    mel_fb: torch.Tensor | None = None  # the mel filterbank (None: computed by librosa)
    mel_floor: torch.Tensor | None = None
    text_space: str | None = None  # the encoder id whose text space the projection targets
    text_probe: torch.Tensor | None = None  # its label-prompt embeddings, to recognise that space
    alpha: float = 0.5  # the bridge's share in the mix
    temperature: float = 1.0  # of the bridge's softmax
    top_k: int = 10  # labels the bridge mixes
    # open set: a window keeps (max softmax) ** this of its direction (``search.encoders.audio.
    # abstain``); None, and files before the key: closed set, every window at full strength
    confidence_power: float | None = None
    digit_state: dict[str, torch.Tensor] | None = None
    digit_front: FrontEnd | None = None  # None: the digit expert reads the main front end
    summary: dict[str, Any] = field(default_factory=dict)  # how it was trained (not read back)
    manifests: list[str] = field(default_factory=list)
    seed: int | list[Any] | None = None  # an ensemble: its members' seeds
    val_seed: int | None = None
    format_version: int = FORMAT_VERSION

    @property
    def front(self) -> FrontEnd:
        return FrontEnd(self.mel_mean, self.mel_std, self.mel_floor, self.max_gain_db)

    def save(self, path: Path) -> None:
        import torch  # heavy: only the audio encoder needs it

        stored = asdict(self)
        stored["format"] = stored.pop("format_version")
        if self.digit_front is not None:
            stored["digit_front"] = {k: v for k, v in asdict(self.digit_front).items() if v is not None
                                     or k == "max_gain_db"}
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(stored, path)

    @classmethod
    def load(cls, path: Path) -> AudioCheckpoint:
        """Raises ``ValueError`` naming what is wrong with the file."""
        import torch  # heavy: only the audio encoder needs it

        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist") from None
        except Exception as exc:  # pickle/zip errors come in many types
            raise ValueError(f"{path} is not a readable audio checkpoint ({exc})") from None
        if not isinstance(stored, dict) or stored.get("format") != cls.FORMAT_VERSION:
            raise ValueError(f"{path} is not a format-{cls.FORMAT_VERSION} crossfind audio checkpoint")
        return cls.from_stored(stored)

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> AudioCheckpoint:
        known = {k: v for k, v in stored.items() if k in cls.__dataclass_fields__}
        known["format_version"] = stored["format"]
        df = stored.get("digit_front")
        if df is not None:
            known["digit_front"] = FrontEnd(float(df["mel_mean"]), float(df["mel_std"]),
                                            df.get("mel_floor"), df.get("max_gain_db"))
        try:
            return cls(**{**known, "mel_mean": float(known["mel_mean"]), "mel_std": float(known["mel_std"]),
                          "labels": list(known["labels"])})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a complete audio checkpoint ({exc})") from None


@dataclass(frozen=True)
class PlattModel:
    """relevance = sigmoid(a * cos + b * (cos - top) + c); ``top`` is the query's best cosine in
    the hit's modality (so ``cos - top`` <= 0, and b >= 0 lowers hits far below the best)."""

    a: float
    b: float
    c: float

    def probability(self, cos: np.ndarray, gap: np.ndarray | float = 0.0) -> np.ndarray:
        x = self.a * np.asarray(cos, dtype=np.float64) + self.b * np.asarray(gap) + self.c
        return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))

    def probability_one(self, cos: float, gap: float = 0.0) -> float:
        x = min(max(self.a * cos + self.b * gap + self.c, -60.0), 60.0)
        return 1.0 / (1.0 + math.exp(-x))

    relevance_one = probability_one  # the name an index's ``Scale`` answers to

    def raw(self, relevance: float) -> float:
        """The least cosine at which a hit can reach ``relevance`` (at gap 0: the best case)."""
        r = min(max(relevance, 1e-6), 1 - 1e-6)
        return (math.log(r / (1 - r)) - self.c) / self.a if self.a > 0 else -1.0


@dataclass(frozen=True)
class RelevanceWeights:
    """The shipped relevance calibration: a ``PlattModel`` per query type ("text>image"), the
    weights each modality's side was fitted for (``weights_key`` of the encoder: a type whose
    modality's weights changed is not used), and the ``--min-score auto`` rule's setting."""

    FORMAT_VERSION: ClassVar[int] = 1

    encoder: str
    fingerprints: dict[str, str]  # modality -> Encoder.weights_key(modality)
    models: dict[str, PlattModel]
    auto_floor: float  # the auto cutoff keeps no hit below this relevance
    meta: dict[str, Any] = field(default_factory=dict)  # how it was fitted
    format_version: int = FORMAT_VERSION

    def save(self, path: Path) -> None:
        data = asdict(self)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> RelevanceWeights:
        """Raises OSError or ValueError for a missing, corrupt or foreign file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            version = int(data.get("format_version", 0))
            if version < 1 or version > cls.FORMAT_VERSION:
                raise ValueError(f"format version {version} is not one this crossfind reads")
            models = {}
            for name, m in data["models"].items():
                model = PlattModel(float(m["a"]), float(m["b"]), float(m["c"]))
                if ">" not in name or not all(map(math.isfinite, (model.a, model.b, model.c))):
                    raise ValueError(f"bad model {name!r}")
                models[name] = model
            floor = float(data["auto_floor"])
            if not 0.0 <= floor <= 1.0:
                raise ValueError(f"auto_floor {floor} is not in 0..1")
            return cls(encoder=str(data["encoder"]),
                       fingerprints={str(k): str(v) for k, v in data["fingerprints"].items()},
                       models=models, auto_floor=floor, meta=dict(data.get("meta", {})),
                       format_version=version)
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a relevance calibration ({exc!r})") from None
