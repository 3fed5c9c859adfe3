"""``crossfind search`` and ``crossfind info``."""

from __future__ import annotations

import argparse
import sys

from cli.common import add_db_arg, add_model_arg, print_json, settings_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index by text, image, audio or item")
    p.add_argument("query", nargs="?", help="query text")
    p.add_argument("--text", action="append", default=[], help="another text part (repeatable)")
    p.add_argument("--image", action="append", default=[], metavar="FILE", help="image query part")
    p.add_argument("--audio", action="append", default=[], metavar="FILE", help="audio query part")
    p.add_argument("--like", action="append", default=[], type=int, metavar="ID",
                   help="an indexed result id: more like this")
    p.add_argument("--queries", metavar="FILE", help="one text query per line; JSON lines out")
    p.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--modality", choices=["image", "text", "audio"], action="append",
                   help="only results of this modality (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_db_arg(p)
    add_model_arg(p)
    p.set_defaults(func=run_search)

    p = sub.add_parser("info", help="what an index holds")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_db_arg(p)
    p.set_defaults(func=run_info)


def _open_engine(args: argparse.Namespace):  # noqa: ANN202 - returns (engine, settings)
    from search.encoders import create_encoder
    from search.engine import Engine
    from search.index import Index

    settings = settings_from(args)
    index = Index.open(settings.db, encoder=args.model)
    encoder = create_encoder(index.manifest.encoder, settings.cache_dir)
    return Engine(index, encoder, settings.max_image_pixels), settings


def build_query(args: argparse.Namespace, text: str | None = None):  # noqa: ANN201
    from search.errors import BadRequest
    from search.query import Filters, Query, QueryPart

    parts = []
    for t in ([text] if text else []) + list(args.text):
        parts.append(QueryPart(text=t))
    parts += [QueryPart(image_path=f) for f in args.image]
    parts += [QueryPart(audio_path=f) for f in args.audio]
    parts += [QueryPart(item_id=i) for i in args.like]
    if not parts:
        raise BadRequest("nothing to search for: give TEXT, --image, --audio, --like or --queries")
    return Query(parts=parts, k=args.k, filters=Filters(modality=args.modality))


def run_search(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from search.errors import BadRequest

    try:
        if args.queries:
            engine, _ = _open_engine(args)
            with open(args.queries, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if not line:
                        continue
                    result = engine.search(build_query(args, line))
                    print_json(result.to_json())
            return 0
        query = build_query(args, args.query)
    except ValidationError as exc:
        raise BadRequest(exc.errors()[0]["msg"]) from None
    except OSError as exc:
        raise BadRequest(f"cannot read {args.queries}: {exc.strerror}") from None
    engine, _ = _open_engine(args)
    result = engine.search(query)
    if args.json:
        print_json(result.to_json())
    else:
        _print_table(result)
    return 0


def _print_table(result) -> None:  # noqa: ANN001
    if not result.hits:
        print("no results")
        return
    print(f"{'#':>3}  {'score':>6}  {'id':>7}  {'modality':<8}  path")
    for rank, hit in enumerate(result.hits, 1):
        where = ""
        if hit.start_s is not None:
            where = f"  [{hit.start_s:.1f}-{hit.end_s:.1f} s]"
        print(f"{rank:>3}  {hit.score:6.3f}  {hit.id:>7}  {hit.modality:<8}  {hit.path}{where}")
        if hit.snippet:
            snippet = hit.snippet if len(hit.snippet) <= 100 else hit.snippet[:97] + "..."
            print(f"{'':>32}{snippet}")
    print(f"({len(result.hits)} results in {result.took_ms:.1f} ms)", file=sys.stderr)


def run_info(args: argparse.Namespace) -> int:
    from search.index import Index

    settings = settings_from(args)
    with Index.open(settings.db) as index:
        info = index.info()
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:>12}: {value}")
    return 0
