"""``python -m bench [--json] [--only SECTION ...] [--quick]``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench.context import BenchContext, show

# figures of each section come from bench/<name>.py
SECTIONS = ("store", "indexing", "audio", "fusion", "api", "scale", "ocr", "documents", "video", "scaleout")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--json", action="store_true", help="print one flat JSON object")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    ctx = BenchContext(quick=args.quick)
    figures: dict[str, object] = {}
    t0 = time.time()
    for name in args.only or SECTIONS:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                continue
            raise
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            figures.update(module.run(ctx))
        except Exception as exc:  # one section failing must not hide the others' figures
            traceback.print_exc()
            figures[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
    figures["bench_seconds"] = round(time.time() - t0, 1)
    ctx.cleanup()
    show(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
