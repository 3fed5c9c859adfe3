"""``crossfind eval``: retrieval recall of an encoder on a captioned image set;
``crossfind eval-concepts``: precision@5 of short concept queries on its photos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import add_model_arg, print_json, settings_from


def _captioned_set_args(p: argparse.ArgumentParser) -> None:
    """The captioned photo set an evaluation reads: ``--captions CSV [--split S]``."""
    p.add_argument("--captions", required=True, metavar="CSV",
                   help="CSV with path,caption[,split] columns; paths relative to the CSV")
    p.add_argument("--split", help="only rows of this split (default: all rows)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="text<->image recall on a captioned set (captions_all.csv) in a temporary index",
    )
    _captioned_set_args(p)
    p.add_argument("--batch-size", type=int, help="images per model batch")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arg(p)
    p.set_defaults(func=run_eval)

    p = sub.add_parser(
        "eval-concepts",
        help="precision@5 of short concept queries (\"a pet dog\") on a captioned photo set",
    )
    _captioned_set_args(p)
    p.add_argument("--queries", type=Path, metavar="CSV",
                   help="query,pattern CSV; a photo is relevant when a caption matches the "
                        "pattern (default: the shipped training/data/concept_queries.csv)")
    p.add_argument("--min-relevant", type=int, default=5,
                   help="skip queries with fewer relevant photos than this")
    p.add_argument("--batch-size", type=int, help="images per model batch")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arg(p)
    p.set_defaults(func=run_concepts)


def run_eval(args: argparse.Namespace) -> int:
    from search.encoders import create_encoder
    from training.evaluation import evaluate_captions

    settings = settings_from(args)
    encoder = create_encoder(settings.model, settings.cache_dir)
    show = sys.stderr.isatty() and not args.json

    def progress(done: int, total: int) -> None:
        if show:
            print(f"\rembedding images {done}/{total}", end="", file=sys.stderr, flush=True)

    result = evaluate_captions(
        args.captions, args.split, encoder, batch_size=settings.batch_size, progress=progress
    )
    if show:
        print(file=sys.stderr)
    result = {"model": encoder.id, "split": args.split, **result}
    if args.json:
        print_json(result)
        return 0
    print(f"{encoder.id} on {args.captions}" + (f" [{args.split}]" if args.split else ""))
    print(f"{result['n_images']} images, {result['n_captions']} captions")
    print(f"{'':<6}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'median':>8}")
    for key in ("t2i", "i2t"):
        r = result[key]
        print(f"{key:<6}{r['R@1']:>8.3f}{r['R@5']:>8.3f}{r['R@10']:>8.3f}{r['median_rank']:>8.1f}")
    return 0


def run_concepts(args: argparse.Namespace) -> int:
    from search.encoders import create_encoder
    from training.concepts import evaluate_concepts

    settings = settings_from(args)
    encoder = create_encoder(settings.model, settings.cache_dir)
    result = evaluate_concepts(args.captions, args.split, encoder, queries_path=args.queries,
                               min_relevant=args.min_relevant, batch_size=settings.batch_size)
    result = {"model": encoder.id, "split": args.split, **result}
    if args.json:
        print_json(result)
        return 0
    print(f"{encoder.id} on {args.captions}" + (f" [{args.split}]" if args.split else ""))
    print(f"{result['n_images']} images, {result['n_queries']} concept queries: "
          f"mean P@5 {result['P@5']:.3f}")
    for query, r in result["per_query"].items():
        print(f"  {r['P@5']:.1f}  {query}  ({r['relevant']} relevant)")
    return 0
