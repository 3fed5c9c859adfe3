"""The encoder contract: every modality maps into one L2-normalised float32 space."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from search.errors import ModalityNotSupported
from search.types import Modality

if TYPE_CHECKING:
    from PIL.Image import Image

AUDIO_SAMPLE_RATE = 16_000


class AudioHead(Protocol):
    """What ``search.encoders.audio.load_audio_head(encoder)`` returns."""

    id: str

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """16 kHz mono windows -> float32[n, encoder.dim], L2-normalised."""


def force_offline() -> None:
    """Make Hugging Face libraries fail at once instead of reaching for a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation as float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class Encoder(ABC):
    """Embeds text, images and (where supported) audio into one shared space.

    ``id`` names the encoder and its weights; it is stored with an index, and an index can only
    be searched with the encoder that built it. Images go through two steps so that decoding
    and preprocessing can run in worker processes while the model runs batches:
    ``preprocess_image`` (cheap, picklable result) then ``encode_image_arrays``.
    """

    id: str
    dim: int
    _audio_head: object = None
    _audio_loaded: bool = False

    @property
    def modalities(self) -> frozenset[Modality]:
        base = {Modality.TEXT, Modality.IMAGE}
        if self.audio_head() is not None:
            base.add(Modality.AUDIO)
        return frozenset(base)

    def supports(self, modality: Modality | str) -> bool:
        return Modality(modality) in self.modalities

    def audio_head(self) -> AudioHead | None:
        """The audio model that maps sounds into this encoder's space, loaded once; None when
        no audio weights fit this encoder's text space (audio is then skipped, not an error)."""
        if not self._audio_loaded:
            self._audio_loaded = True
            self._audio_head = self._load_audio_head()
        return self._audio_head  # type: ignore[return-value]

    def _load_audio_head(self) -> AudioHead | None:
        """The encoder's audio model (called once); encoders with audio weights override it."""
        return None

    def fingerprint(self, modality: Modality | str) -> str | None:
        """What identifies the model that embeds ``modality`` beyond ``id`` (which an index is
        bound to): the audio weights, which may be replaced under the same encoder. An index
        re-embeds content whose fingerprint changed; None: nothing beyond ``id``."""
        if Modality(modality) in (Modality.AUDIO, Modality.VIDEO):  # a video's sound track
            head = self.audio_head()
            return getattr(head, "fingerprint", None) if head is not None else None
        return None

    def weights_key(self, modality: str) -> str:
        """What identifies the weights that embed ``modality`` (the shipped relevance
        calibration is fitted for these): ``fingerprint`` where there is one, else ``id``."""
        if modality == "text":
            return self.id
        return self.fingerprint(modality) or self.id

    def _require(self, modality: Modality) -> None:
        if modality not in self.modalities:
            raise ModalityNotSupported(f"encoder {self.id!r} has no {modality.value} encoder")

    @abstractmethod
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32[n, dim], L2-normalised."""

    @abstractmethod
    def preprocess_image(self, image: Image) -> np.ndarray:
        """One RGB PIL image -> the float32 array the image model takes."""

    @abstractmethod
    def encode_image_arrays(self, arrays: np.ndarray) -> np.ndarray:
        """A batch of ``preprocess_image`` outputs -> float32[n, dim], L2-normalised."""

    def encode_image(self, images: Sequence[Image]) -> np.ndarray:
        """RGB PIL images -> float32[n, dim], L2-normalised."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_image_arrays(np.stack([self.preprocess_image(i) for i in images]))

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """16 kHz mono float32 waveforms (one window each) -> float32[n, dim], L2-normalised."""
        head = self.audio_head()
        if head is None:
            raise ModalityNotSupported(f"encoder {self.id!r} has no audio encoder")
        return head.encode(waveforms)

    def encode(self, modality: Modality | str, batch: Sequence) -> np.ndarray:
        modality = Modality(modality)
        self._require(modality)
        if modality is Modality.TEXT:
            return self.encode_text(batch)
        if modality is Modality.IMAGE:
            return self.encode_image(batch)
        return self.encode_audio(batch)
