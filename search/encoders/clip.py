"""CLIP encoders through open_clip: its text and image towers share one space natively.

Names (after ``clip:``):

* ``<arch>/<pretrained-tag>``, e.g. ``clip:ViT-B-32/laion2b_s34b_b79k``: weights from the
  Hugging Face cache (``$HF_HUB_CACHE``, or ``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``)
  or, for URL-only tags, open_clip's ``~/.cache/clip``. They are downloaded only when the network
  allows; offline (``HF_HUB_OFFLINE=1``, or the hub unreachable within ~1.5 s) a missing weight
  fails at once with ``ModelUnavailable`` instead of open_clip's long retries.
* ``<arch>@<checkpoint>``, e.g. ``clip:ViT-B-32@/models/vitb32.pt``: a local file holding a
  state_dict of ``open_clip.create_model(<arch>)`` (``torch.save(model.state_dict(), path)``;
  ``.safetensors`` works too). No network is ever used.

Custom architectures: when ``<arch>`` is not one of open_clip's built-in configs, a model
config named ``<arch>.json`` must sit beside the checkpoint (the JSON open_clip's
``model_configs/`` use: ``embed_dim``, ``vision_cfg``, ``text_cfg``); it is registered with
``open_clip.add_model_config``. Example: ``/models/Tiny.json`` + ``/models/tiny.pt`` ->
``clip:Tiny@/models/tiny.pt``.

The encoder ``id`` is the full registry name with the checkpoint path made absolute, so an index
remembers exactly which weights built it.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from search.encoders.audio import load_audio_head
from search.encoders.base import AudioHead, Encoder, l2_normalize
from search.errors import BadRequest, ModelUnavailable
from search.settings import get_settings

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

log = logging.getLogger(__name__)

TEXT_BATCH = 256
_PROBE_TIMEOUT_S = 1.5
_URL_CACHE = Path("~/.cache/clip")  # open_clip's folder for URL-only (non-hub) weights
_SEE_ARCHS = "run `crossfind models --archs` to see them"
_lock = threading.Lock()  # open_clip's config registry is a module global


class ClipEncoder(Encoder):
    """open_clip's text and image towers; vectors are ``embed_dim``-d, L2-normalised."""

    def __init__(self, id: str, model: torch.nn.Module, preprocess: Any, tokenizer: Any, dim: int):
        self.id = id
        self.dim = dim
        self.model: Any = model.eval()  # open_clip: encode_text/encode_image are untyped
        self.preprocess = preprocess
        self.tokenizer = tokenizer

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str, cache_dir: Path | None = None) -> ClipEncoder:
        """Build from ``<arch>/<tag>`` or ``<arch>@<checkpoint>``.

        ``cache_dir`` (crossfind's derived-cache folder) is not used: CLIP weights live in the
        Hugging Face / open_clip caches so that a cache copied from another machine just works.

        Raises:
            BadRequest: malformed spec, unknown architecture or tag.
            ModelUnavailable: weights not on this machine and not fetchable, or unloadable.
        """
        import open_clip

        if "@" in spec:
            arch, _, raw = spec.partition("@")
            arch = arch.strip()
            if not arch or not raw:
                raise BadRequest(_usage(spec))
            checkpoint = Path(os.path.abspath(os.path.expanduser(raw)))
            if not checkpoint.is_file():
                raise ModelUnavailable(
                    f"CLIP checkpoint {checkpoint} does not exist; pass clip:<arch>@<path to a saved "
                    "open_clip state_dict>, or --model bundled"
                )
            with _lock:
                _register_custom_config(arch, checkpoint)
                _check_arch(arch, open_clip)
                return cls._build(f"clip:{arch}@{checkpoint}", arch, checkpoint, {})
        arch, sep, tag = spec.partition("/")
        if not sep or not arch or not tag:
            raise BadRequest(_usage(spec))
        with _lock:
            _check_arch(arch, open_clip)
        pcfg = open_clip.get_pretrained_cfg(arch, tag)
        if not pcfg:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise BadRequest(
                f"open_clip has no pretrained tag {tag!r} for {arch!r}; known tags: "
                f"{', '.join(tags) or 'none (use clip:<arch>@<checkpoint>)'}"
            )
        weights = _cached_weights(pcfg) or _download(arch, tag, pcfg)
        with _lock:
            return cls._build(f"clip:{arch}/{tag}", arch, weights, pcfg)

    @classmethod
    def _build(cls, id: str, arch: str, weights: Path, pcfg: dict[str, Any]) -> ClipEncoder:
        import open_clip

        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch,
                pretrained=str(weights),
                # a tag's own preprocessing and activation, as open_clip would use for the tag
                force_quick_gelu=bool(pcfg.get("quick_gelu", False)),
                image_mean=pcfg.get("mean"),
                image_std=pcfg.get("std"),
                image_interpolation=pcfg.get("interpolation"),
                image_resize_mode=pcfg.get("resize_mode"),
            )
        except Exception as exc:  # corrupt file, wrong arch, foreign pickle: all one fix
            raise ModelUnavailable(
                f"cannot load CLIP weights {weights} as {arch!r}: {_first_line(exc)}. The file must "
                f"be a state_dict of open_clip.create_model({arch!r}) (torch.save(model.state_dict(), "
                "path)); check the architecture name and that the file is complete"
            ) from None
        try:
            tokenizer = open_clip.get_tokenizer(arch)
        except Exception as exc:  # HF tokenizers may want the hub
            raise ModelUnavailable(
                f"cannot load the text tokenizer of {arch!r}: {_first_line(exc)}; copy its Hugging "
                "Face cache from a networked machine, or use --model bundled"
            ) from None
        dim = int(open_clip.get_model_config(arch)["embed_dim"])
        return cls(id, model, preprocess, tokenizer, dim)

    # -- encoding -----------------------------------------------------------------------------
    def _load_audio_head(self) -> AudioHead | None:
        return load_audio_head(self)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), TEXT_BATCH):
                tokens = self.tokenizer(list(texts[i : i + TEXT_BATCH]))
                out.append(self.model.encode_text(tokens).float().numpy())
        return l2_normalize(np.concatenate(out))

    def preprocess_image(self, image: Image) -> np.ndarray:
        """open_clip's eval transform (resize, centre crop, normalise) -> float32[3, H, W]."""
        return self.preprocess(image.convert("RGB")).numpy().astype(np.float32, copy=False)

    def encode_image_arrays(self, arrays: np.ndarray) -> np.ndarray:
        import torch

        if len(arrays) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = torch.from_numpy(np.ascontiguousarray(arrays, dtype=np.float32))
        with torch.inference_mode():
            return l2_normalize(self.model.encode_image(batch).float().numpy())


# -- architecture and config ------------------------------------------------------------------
def _usage(spec: str) -> str:
    return (
        f"bad CLIP model name 'clip:{spec}'; use clip:<arch>/<pretrained-tag> "
        "(e.g. clip:ViT-B-32/laion2b_s34b_b79k) or clip:<arch>@<path to a local checkpoint>"
    )


def _check_arch(arch: str, open_clip: Any) -> None:
    if arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise BadRequest(
            f"unknown open_clip architecture {arch!r}{hint}; {_SEE_ARCHS}, or put a model config "
            f"{arch}.json beside your checkpoint"
        )


def _builtin_archs() -> set[str]:
    import open_clip

    return {p.stem for p in (Path(open_clip.__file__).parent / "model_configs").glob("*.json")}


def _register_custom_config(arch: str, checkpoint: Path) -> None:
    """Register ``<arch>.json`` beside the checkpoint, unless ``arch`` is an open_clip built-in."""
    import open_clip

    config = checkpoint.parent / f"{arch}.json"
    if arch in _builtin_archs() or not config.is_file():
        return
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise BadRequest(f"model config {config} is not readable JSON: {exc}") from None
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise BadRequest(f"model config {config} lacks {', '.join(missing)} (open_clip's format)")
    # appended last, so it wins over an earlier config of the same name from another folder
    open_clip.add_model_config(config)


# -- what is on this machine (for `crossfind models`) ------------------------------------------
def cached_pretrained() -> list[str]:
    """``clip:<arch>/<tag>`` names whose weights are already on disk (usable offline)."""
    if not any(_hf_cache().glob("models--*")) and not _URL_CACHE.expanduser().is_dir():
        return []  # nothing cached: spare the open_clip (and torch) import
    import open_clip

    return [
        f"clip:{arch}/{tag}"
        for arch, tag in open_clip.list_pretrained()
        if _cached_weights(open_clip.get_pretrained_cfg(arch, tag)) is not None
    ]


def architectures() -> dict[str, list[str]]:
    """open_clip's architectures and the pretrained tags each has."""
    import open_clip

    return {arch: open_clip.list_pretrained_tags_by_model(arch) for arch in open_clip.list_models()}


def hf_cache_dir() -> Path:
    """Where hub tags' weights are looked for (and downloaded to, when online)."""
    return _hf_cache()


def network_disabled() -> bool:
    """True when the environment forbids hub access (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return _offline_env()


# -- hub weights ------------------------------------------------------------------------------
def _hf_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (not at import time)."""
    return get_settings().hf_cache


def _hub_location(pcfg: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(repo id, candidate file names, preferred first) of a tag's ``hf_hub`` entry."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    hub = pcfg.get("hf_hub") or ""
    if not hub:
        return None
    repo, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return repo, names


def _cached_weights(pcfg: dict[str, Any]) -> Path | None:
    """The weights file of a tag if it is already on disk; looks only at local files."""
    from huggingface_hub import try_to_load_from_cache

    if pcfg.get("file"):
        return Path(pcfg["file"]) if Path(pcfg["file"]).is_file() else None
    hub = _hub_location(pcfg)
    if hub is not None:
        repo, names = hub
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=_hf_cache())
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    url = pcfg.get("url") or ""
    if url:
        target = _URL_CACHE.expanduser() / os.path.basename(urlparse(url).path)
        if target.is_file():
            return target
    return None


def _download(arch: str, tag: str, pcfg: dict[str, Any]) -> Path:
    """Fetch a tag's weights, or fail at once when the network is off."""
    from open_clip.pretrained import download_pretrained

    hub = _hub_location(pcfg)
    host = "huggingface.co" if hub else urlparse(pcfg.get("url") or "").hostname or ""
    where = f"{_hf_cache()}/models--{hub[0].replace('/', '--')}" if hub else "~/.cache/clip/"
    fix = (
        f"CLIP weights for '{arch}/{tag}' are not cached and the network is off; pass --model "
        f"bundled or clip:{arch}@<local checkpoint>, or copy the open_clip/HF cache from a machine "
        f"that has them: run `python -c \"import open_clip; open_clip.create_model_and_transforms("
        f"'{arch}', pretrained='{tag}')\"` there and copy {where} here (same path under "
        "$HF_HOME/hub)"
    )
    if _offline_env() or not _reachable(host):
        raise ModelUnavailable(fix)
    try:
        path = download_pretrained(pcfg)
    except Exception as exc:
        raise ModelUnavailable(f"{fix} (download failed: {_first_line(exc)})") from None
    if not path or not os.path.isfile(path):
        raise ModelUnavailable(fix)
    return Path(path)


def _offline_env() -> bool:
    return get_settings().offline


def _reachable(host: str) -> bool:
    """Can we open a TCP connection to ``host`` within ~1.5 s? DNS has no timeout of its own, so
    the probe runs in a daemon thread that is abandoned when slow."""
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_PROBE_TIMEOUT_S + 0.2)
    return bool(result and result[0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:300]
