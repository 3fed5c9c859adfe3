"""Encoders by name, as open_clip's ``create_model`` / ``list_models``.

Names: ``bundled`` (offline default), ``clip:<arch>/<pretrained-tag>`` and
``clip:<arch>@<local checkpoint>``. New families register a prefix with ``register_encoder``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from search.encoders.base import Encoder
from search.errors import BadRequest

Factory = Callable[[str, Path | None], Encoder]

_FACTORIES: dict[str, Factory] = {}
_DESCRIPTIONS: dict[str, str] = {}
_CACHE: dict[tuple[str, str], Encoder] = {}


def register_encoder(prefix: str, factory: Factory, description: str = "") -> None:
    """Register ``factory(spec, cache_dir)`` for names ``prefix`` or ``prefix:<spec>``."""
    _FACTORIES[prefix] = factory
    _DESCRIPTIONS[prefix] = description


def list_encoders() -> dict[str, str]:
    """Registered encoder families and what they are."""
    _ensure_builtins()
    return dict(_DESCRIPTIONS)


def create_encoder(name: str, cache_dir: Path | None = None, *, reuse: bool = True) -> Encoder:
    """Build (or reuse) the encoder called ``name``.

    Raises:
        BadRequest: unknown name.
        ModelUnavailable: the weights are not on this machine and cannot be fetched.
    """
    _ensure_builtins()
    prefix, _, spec = name.partition(":")
    if prefix not in _FACTORIES:
        known = ", ".join(sorted(_FACTORIES))
        raise BadRequest(f"unknown encoder {name!r}; known families: {known}")
    key = (name, str(cache_dir))
    if reuse and key in _CACHE:
        return _CACHE[key]
    encoder = _FACTORIES[prefix](spec, cache_dir)
    if reuse:
        _CACHE[key] = encoder
    return encoder


def load_hooks(spec: str) -> None:
    """Call the ``module:function`` hooks listed (comma-separated) in ``spec``, each
    registering encoder families (``settings.extra_encoders``, $CROSSFIND_EXTRA_ENCODERS).

    Raises:
        BadRequest: a hook cannot be imported.
    """
    import importlib

    for item in filter(None, (part.strip() for part in spec.split(","))):
        module, _, func = item.partition(":")
        try:
            hook = getattr(importlib.import_module(module), func or "register")
        except (ImportError, AttributeError) as exc:
            raise BadRequest(
                f"CROSSFIND_EXTRA_ENCODERS names {item!r}, which cannot be loaded ({exc}); "
                "fix PYTHONPATH or unset the variable"
            ) from None
        hook()


def _ensure_builtins() -> None:
    if "bundled" in _FACTORIES:
        return

    # the families load on first use: they pull in the encoders' model code, which imports
    # ``search.audio``, itself a user of this package (an import at the top would be a cycle)
    def bundled(spec: str, cache_dir: Path | None) -> Encoder:
        from search.encoders.bundled import BundledEncoder

        return BundledEncoder(variant=spec or "default", cache_dir=cache_dir)

    def clip(spec: str, cache_dir: Path | None) -> Encoder:
        from search.encoders.clip import ClipEncoder

        return ClipEncoder.from_spec(spec, cache_dir=cache_dir)

    register_encoder(
        "bundled",
        bundled,
        "offline default: MiniLM-L6 text, EfficientNet-Lite0 images mapped into the text space, "
        "projected audio encoder",
    )
    register_encoder(
        "clip",
        clip,
        "open_clip towers: clip:<arch>/<pretrained-tag> (hub cache) or clip:<arch>@<checkpoint>",
    )
