"""Benchmarks: ``python -m bench --json`` prints one flat JSON object of figures from one run.

Each module here named in ``SECTIONS`` has ``run(ctx: BenchContext) -> dict[str, float]``;
its figures are merged into the output. A section that cannot run (e.g. no ../shared/data)
reports ``<section>_skipped: reason`` instead of failing the whole run.
"""
