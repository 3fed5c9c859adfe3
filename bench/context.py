"""Shared state of one benchmark run: paths, a scratch directory, measurement helpers."""

from __future__ import annotations

import resource
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from search.settings import get_settings

REPO = Path(__file__).resolve().parent.parent


@dataclass
class BenchContext:
    quick: bool = False
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="crossfind-bench-")))

    @property
    def shared_data(self) -> Path | None:
        data = get_settings().shared_data
        return data if data.is_dir() else None

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def rss_mb() -> float:
    """Current resident set size of this process in MB (from /proc, Linux)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def percentile_ms(samples_s: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(np.asarray(samples_s) * 1000, q)), 3)


def run_standalone(prog: str, figures: Callable[[BenchContext], dict], argv: list[str] | None = None) -> int:
    """``python -m bench.<module> [--json] [--quick]``: one module's figures on their own."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args(argv)
    ctx = BenchContext(quick=args.quick)
    try:
        out = figures(ctx)
    finally:
        ctx.cleanup()
    show(out, args.json)
    return 0


def show(figures: dict, as_json: bool) -> None:
    """The figures as one JSON object, or one aligned ``key: value`` line each."""
    import json

    if as_json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>48}: {value}")
