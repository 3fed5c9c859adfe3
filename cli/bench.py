"""``crossfind bench``: the benchmark figures (same as ``python -m bench``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure indexing and query speed (python -m bench)")
    p.add_argument("--json", action="store_true", help="print one flat JSON object")
    p.add_argument("--only", nargs="*", help="run only these sections")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.__main__ import main

    argv = (["--json"] if args.json else []) + (["--quick"] if args.quick else [])
    if args.only:
        argv += ["--only", *args.only]
    return main(argv)
