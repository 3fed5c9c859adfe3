"""The ``crossfind`` command: the one place that wires ``search``, ``indexer`` and ``web``.

Each subcommand lives in its own module with a ``register(subparsers)`` function; heavy imports
happen inside the command, so ``crossfind --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cli.common import load_extra_encoders
from search.errors import CrossfindError

# modules under cli/ that register subcommands, in help order
_COMMAND_MODULES = ("index", "search", "evaluate", "audio", "serve", "bench", "models", "fusion", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossfind",
        description="Cross-media semantic search over your text, images and audio, offline.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        load_extra_encoders()
        return int(args.func(args) or 0)
    except CrossfindError as exc:
        print(f"crossfind: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crossfind: interrupted", file=sys.stderr)
        return 130
