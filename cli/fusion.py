"""``crossfind eval-fusion``: the composed-query benchmark (see ``training.composed_eval``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.common import add_model_arg, print_json, settings_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-fusion",
        help="composed-query benchmark: R@1/5/10 per fusion strategy vs the best single part",
    )
    p.add_argument("--data", type=Path, help="the shared data folder (default: settings.shared_data)")
    p.add_argument("--dataset", default="flickr8k_1k", help="captioned set (default flickr8k_1k)")
    p.add_argument("--split", default="test",
                   help="split(s) joined by '+' (default test; coco_mini: val2017+train2017)")
    p.add_argument("--seed", type=int, default=0, help="query construction seed")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from search.encoders import create_encoder
    from training.composed_eval import build_queries, evaluate, load_corpora

    settings = settings_from(args)
    encoder = create_encoder(settings.model, settings.cache_dir)
    if not hasattr(encoder, "combine"):
        from search.errors import BadRequest

        raise BadRequest("eval-fusion needs the bundled encoder's cached backbone: pass --model bundled")
    corpus = load_corpora(encoder, args.data or settings.shared_data, settings.cache_dir, args.dataset,
                          args.split.split("+"))
    queries = build_queries(corpus, args.seed)
    out: dict[str, Any] = {
        "dataset": corpus.name,
        "encoder": encoder.id,
        "n_photos": len(corpus.images),
        "queries": dict(Counter(q.kind for q in queries)),
        "results": evaluate(corpus, encoder, queries),
    }
    if args.json:
        print_json(out)
        return 0
    for kind, table in out["results"].items():
        print(f"{kind} ({out['queries'][kind]} queries)")
        for name, row in table.items():
            print(f"  {name:<18} R@1 {row['R@1']:.3f}  R@5 {row['R@5']:.3f}  R@10 {row['R@10']:.3f}")
    print(f"{corpus.name}: {len(corpus.images)} photos", file=sys.stderr)
    return 0
