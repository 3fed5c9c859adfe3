"""The ``crossfind`` command: the one place that wires ``search``, ``indexer`` and ``web``.

Each subcommand lives in its own module with a ``register(subparsers)`` function; heavy imports
happen inside the command, so ``crossfind --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from cli.common import load_extra_encoders
from search.errors import CrossfindError, DiskFull, is_catalog_unreachable, is_disk_full

# modules under cli/ that register subcommands, in help order
_COMMAND_MODULES = ("index", "search", "evaluate", "evalmixed", "audio", "serve", "bench", "models", "fusion", "train")


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
    for command in {id(p): p for p in sub.choices.values()}.values():
        # also after the command (`crossfind index --verbose`); SUPPRESS keeps a -v given
        # before the command from being reset by this flag's default
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="debug logging, with what libraries print (progress bars, "
                             "decoder warnings)")
    return parser


def _quiet_libraries() -> None:
    """Keep libraries' chatter off the terminal: the text model loader's "Loading weights"
    bar (transformers through huggingface_hub) and transformers' warnings. Set before they are
    imported; a value the user set wins. Decoder text on fd 2 goes to the log on its own
    (search.native_output); pypdf's warnings (one per oddity of a broken PDF, which is skipped
    or read with a reason of its own) only with --verbose."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger("pypdf").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        _quiet_libraries()
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
    except Exception as exc:
        if is_catalog_unreachable(exc):  # its server went down mid-run: not a bug, no traceback
            first = str(exc).strip().splitlines()[0][:300]
            print(f"crossfind: error: the catalog cannot be reached ({first}); check its server "
                  "and run the command again (what was committed before is kept)", file=sys.stderr)
            return 2
        if not is_disk_full(exc):
            raise
        # a write the library did not expect to fill the disk (it names its own otherwise)
        where = getattr(args, "db", None) or "the index"
        print(f"crossfind: error: {DiskFull.of(exc, where).message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crossfind: interrupted", file=sys.stderr)
        return 130
