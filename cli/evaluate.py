"""``crossfind eval``: retrieval recall of an encoder on a captioned image set."""

from __future__ import annotations

import argparse
import sys

from cli.common import add_model_arg, print_json, settings_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="text<->image recall on a captioned set (captions_all.csv) in a temporary index",
    )
    p.add_argument("--captions", required=True, metavar="CSV",
                   help="CSV with path,caption[,split] columns; paths relative to the CSV")
    p.add_argument("--split", help="only rows of this split (default: all rows)")
    p.add_argument("--batch-size", type=int, help="images per model batch")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arg(p)
    p.set_defaults(func=run_eval)


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
