"""``crossfind eval-mixed``: precision, cutoff F1 and absent-sound relevance of the one ranked
list across media, on a mixed corpus built as a user's folders (see ``training.mixed_eval``)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import add_model_arg, print_json, settings_from

if TYPE_CHECKING:
    from search.encoders.base import Encoder
    from search.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-mixed",
        help="P@10, nDCG@10 and cutoff F1 of mixed-media search on a corpus of photos, sound "
        "clips and news texts from the shared data",
        description="Builds (once) a corpus of flickr8k test photos, ESC-50 fold-4 and "
        "UrbanSound8K fold-10 clips and agnews texts under --work, indexes it (incremental; "
        "--reindex after a model change) and runs the query set, judging hits by captions, "
        "labels and text.",
    )
    p.add_argument("--work", type=Path,
                   help="folder for the corpus and its index (default: <cache dir>/eval-mixed)")
    p.add_argument("--corpus", type=Path,
                   help="an existing corpus folder (with corpus.csv) instead of building one")
    p.add_argument("--data", type=Path, help="the shared data folder (default: ../shared/data)")
    p.add_argument("--queries", type=Path, help="query file (default: the committed set)")
    p.add_argument("--side", choices=("test", "dev"), default="test",
                   help="test: the held-out corpus (report these); dev: its training-side twin "
                   "(flickr8k dev photos, the audio encoder's validation clips, other agnews "
                   "texts) to choose settings on")
    p.add_argument("--reindex", action="store_true", help="rebuild the index from scratch")
    p.add_argument("--per-query", action="store_true", help="also list every query's figures")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arg(p)
    p.set_defaults(func=run_eval_mixed)


def _index(corpus: Path, db: Path, settings: Settings, encoder: Encoder, reindex: bool,
           quiet: bool) -> None:
    from indexer import index_paths
    from search.index import Index

    with Index.open_for_write(db, encoder.id, encoder.dim, reindex=reindex) as index:
        report = index_paths([corpus], index, encoder, settings, progress=not quiet)
    if report.skipped:
        print(f"eval-mixed: {len(report.skipped)} corpus file(s) skipped, e.g. "
              f"{report.skipped[0].path}: {report.skipped[0].reason}", file=sys.stderr)


def run_eval_mixed(args: argparse.Namespace) -> int:
    from search.encoders import create_encoder
    from search.engine import Engine
    from search.index import Index
    from training.mixed_corpus import build_corpus, read_corpus
    from training.mixed_eval import evaluate_mixed
    from training.mixed_queries import QUERIES, read_queries

    settings = settings_from(args)
    work = args.work or settings.cache_dir / "eval-mixed"
    encoder = create_encoder(settings.model, settings.cache_dir)
    queries = read_queries(args.queries or QUERIES)
    if args.corpus:
        corpus = args.corpus
        items = read_corpus(corpus)
    else:
        corpus = work / ("corpus" if args.side == "test" else "dev-corpus")
        items = build_corpus(args.data or settings.shared_data, corpus, args.side)
    prefix = "index-" if args.side == "test" else "dev-index-"
    db = work / (prefix + re.sub(r"[^\w.-]+", "_", encoder.id))
    show = sys.stderr.isatty() and not args.json
    _index(corpus, db, settings, encoder, args.reindex, quiet=not show)

    def progress(done: int, total: int) -> None:
        if show:
            print(f"\rquery {done}/{total}", end="", file=sys.stderr, flush=True)

    index = Index.open(db)
    try:
        result = evaluate_mixed(Engine(index, encoder), corpus, items, queries, progress=progress)
    finally:
        index.close()
    if show:
        print(file=sys.stderr)
    result = {"model": encoder.id, "corpus_path": str(corpus), **result}
    if not args.per_query:
        result.pop("per_query")
        result["absent_audio"].pop("per_query")
    if args.json:
        print_json(result)
        return 0
    _print_table(result)
    return 0


def _print_table(result: dict[str, Any]) -> None:
    c = result["corpus"]
    print(f"{result['model']} on {c['image']} photos, {c['audio']} clips, {c['text']} texts; "
          f"{result['queries']} queries")
    cols = ("P@10", "nDCG@10", "perfect_P@10", "modality_oracle_P@10", "irrelevant_keyword",
            "irrelevant_image", "irrelevant_audio", "irrelevant_text", "oracle_f1")
    heads = ("P@10", "nDCG", "perfect", "mod.orcl", "bad kw", "bad img", "bad aud", "bad txt",
             "oracleF1")
    print(f"{'type':<9}{'n':>5}" + "".join(f"{h:>9}" for h in heads))
    rows = {**result["by_type"], **result["by_split"], "overall": result["overall"]}
    for name, row in rows.items():
        print(f"{name:<9}{row['queries']:>5}" + "".join(f"{row[k]:>9.3f}" for k in cols))
    f1 = result["cutoff_f1"]
    auto = "n/a (the engine has no min_score auto)" if f1["auto"] is None else f"{f1['auto']:.3f}"
    print(f"\ncutoff F1: global relevance {f1['best_global_relevance']['f1']:.3f} "
          f"(t={f1['best_global_relevance']['threshold']}), global cosine "
          f"{f1['best_global_cosine']['f1']:.3f} (t={f1['best_global_cosine']['threshold']}), "
          f"per-query oracle {f1['oracle_per_query']:.3f}, auto {auto}")
    a = result["absent_audio"]
    for key in ("best_absent_relevance", "true_hit_best_relevance", "true_hit_relevance_top10"):
        q = a[key]
        if q:
            print(f"{key:<26}" + "  ".join(f"{k}={v}" for k, v in q.items()))
