"""What each trainer can be told, with its defaults written once (the CLI reads them from here).

Light on purpose: ``crossfind --help`` imports this module, the trainers' heavy imports (torch)
stay in their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from search.settings import get_settings

# splits never trained on by default: test sets (ESC-50 fold 4, UrbanSound8K fold 10, FSDD test)
HELD_OUT_SPLITS = ("test", "fold4", "fold10")


def _cache_dir() -> Path:
    return get_settings().cache_dir


def _shared_data() -> Path:
    return get_settings().shared_data


@dataclass
class TrainConfig:
    """``crossfind train-audio``: the projected audio encoder."""

    manifests: list[Path]
    out: Path
    model: str = "bundled"
    cache_dir: Path = field(default_factory=_cache_dir)
    epochs: int = 6
    seed: int = 0
    val_split: str | None = None
    val_fraction: float = 0.1
    val_seed: int | None = None  # which rows are held out (default: ``seed``); fix it to compare runs
    exclude_splits: tuple[str, ...] = HELD_OUT_SPLITS
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    crop_s: float = 2.5
    per_epoch_clips: int = 320  # clips per epoch from each manifest after the first (CPU time)
    patience: int = 3
    threads: int = 1
    top_k: int = 10
    init: Path | None = None  # start from this checkpoint instead of ImageNet
    # loudness normalisation's gain cap; None (default) keeps recorded levels: a large gain on
    # quiet 8-bit training clips makes their quantisation noise a cue
    max_gain_db: float | None = None
    select_on_first: bool = True  # early-stop on the first manifest's validation accuracy only
    digits_from: Path | None = None  # reuse this checkpoint's digit expert (with its front end)
    # add a noise floor of 4x 8-bit quantisation noise to the mel power (``noise_floor``), so
    # the 8-bit ESC-50 training copy and 16-bit recordings look alike; False: the 1e-6 floor
    floor: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def holdout_seed(self) -> int:
        return self.seed if self.val_seed is None else self.val_seed


@dataclass
class ProjectionConfig:
    """``crossfind train-image-projection``: the bundled encoder's image projection.

    The list-valued fields are grids: every combination is trained, the best on dev is kept.
    """

    out: Path
    data: Path = field(default_factory=_shared_data)
    cache_dir: Path = field(default_factory=_cache_dir)
    seed: int = 0
    epochs: int = 40
    hidden: list[int] = field(default_factory=lambda: [1024])  # 0 = linear
    temperature: list[float] = field(default_factory=lambda: [0.03])
    lr: list[float] = field(default_factory=lambda: [1e-3])
    weight_decay: float = 0.05
    dropout: list[float] = field(default_factory=lambda: [0.6])
    # share of photos paired each epoch with a noun phrase of their captions ("a red ball")
    # instead of a whole caption; 0.3 lifted concept P@5 on dev but not enough on held-out
    # sets to pay for what it costs caption recall (MODEL_CARD_bundled.md): 0 is shipped
    phrase_share: list[float] = field(default_factory=lambda: [0.0])
    # the bridge's pull of each ImageNet class towards its parents, chosen on dev (0 shipped)
    hierarchy_weight: list[float] = field(default_factory=lambda: [0.0])
    # the label bridge's weight on its top-5 sentence embedding (costs a MiniLM pass per photo)
    sentence_weight: float = 0.0
    threads: int = 1  # torch threads (1 is fastest under load)


@dataclass
class AttentionConfig:
    """``crossfind train-attention``: the learned attention fusion."""

    out: Path
    data: Path = field(default_factory=_shared_data)
    cache_dir: Path = field(default_factory=_cache_dir)
    epochs: int = 40
    seeds: int = 1  # query sets built per training photo
    extra: bool = True  # also train on flickr8k_extra (False: flickr8k_1k train only)
    threads: int = 1
