"""The files of the learned parts, one typed and versioned format each, written and read here.

* ``ProjectionWeights``: the bundled encoder's image projection (``.npz``, numpy);
* ``AttentionWeights``: the learned attention fusion (``.npz``, numpy);
* ``AudioCheckpoint``: the audio encoder (``.pt``, torch tensors, read with ``weights_only``).

``training/`` writes them with ``save``; ``search/`` reads them with ``load``. Files written
before a field existed load with the value that was in force then (named at each default).
"""

from __future__ import annotations

import json
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
    meta: dict[str, Any] = field(default_factory=dict)  # how it was trained
    format_version: int = FORMAT_VERSION

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "format_version": np.array(self.format_version), "n_layers": np.array(len(self.layers)),
            "alpha": np.array(self.alpha), "sentence_weight": np.array(self.sentence_weight),
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
