"""Flags and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from search.settings import Settings, get_settings


def add_db_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="index directory (default: $CROSSFIND_DB or ~/.local/share/crossfind/index)")


def add_model_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        help="encoder: bundled (default), clip:<arch>/<tag> or clip:<arch>@<checkpoint>",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the flags this subcommand has on top."""
    keys = ("db", "model", "batch_size", "workers", "host", "port")
    return get_settings(**{k: getattr(args, k, None) for k in keys})


def config_default(config: type, name: str) -> Any:
    """The default of dataclass field ``name`` of ``config`` (flags take their defaults from
    the training configs, so each is written once)."""
    f = next(f for f in dataclasses.fields(config) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise KeyError(f"{config.__name__}.{name} has no default")


def config_kwargs(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The flags of ``args`` that name fields of dataclass ``config`` and were given (not None)."""
    names = {f.name for f in dataclasses.fields(config)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def print_json(obj: Any, *, indent: int | None = None) -> None:
    sys.stdout.write(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def load_extra_encoders() -> None:
    """Call the ``module:function`` hooks listed (comma-separated) in
    ``settings.extra_encoders`` ($CROSSFIND_EXTRA_ENCODERS), each registering encoder families; the tests register their
    fake encoder this way (``tests.fakes:register``) to drive the real CLI in a subprocess."""
    from search.encoders.registry import load_hooks

    load_hooks(get_settings().extra_encoders)


def print_mapping(obj: dict[str, Any], as_json: bool, width: int = 12) -> None:
    """One JSON object, or one ``key: value`` line per entry with the keys right-aligned."""
    if as_json:
        print_json(obj)
        return
    for key, value in obj.items():
        print(f"{key:>{width}}: {value}")
