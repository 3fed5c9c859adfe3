"""``crossfind search`` and ``crossfind info``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.common import add_db_arg, add_model_arg, print_json, print_mapping, settings_from
from search.paths import shown

_PART_HELP = (
    "Query parts: the positional TEXT and repeatable --text/--image/--audio/--like; "
    "--weight W after a part sets that part's weight (default 1; negative pushes results "
    "away; before any part option it applies to TEXT). Example: "
    'crossfind search "a beach" --text people --weight -0.5 --image dog.jpg --weight 0.5'
)
_FILTER_KEYS = {
    "modality": "modality", "path": "path_prefix", "prefix": "path_prefix",
    "path_prefix": "path_prefix", "glob": "path_glob", "path_glob": "path_glob", "ext": "ext",
    "after": "modified_after", "modified_after": "modified_after", "before": "modified_before",
    "modified_before": "modified_before", "min_size": "min_size", "max_size": "max_size",
    "min_duration": "min_duration_s", "min_duration_s": "min_duration_s",
    "max_duration": "max_duration_s", "max_duration_s": "max_duration_s",
}
_SIZE_UNITS = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


class _Part(argparse.Action):
    """Appends (kind, value, weight) to ``args.parts`` in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parts = list(getattr(namespace, "parts", None) or [])
        parts.append([self.dest, values, 1.0])
        namespace.parts = parts


class _Weight(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parts = getattr(namespace, "parts", None) or []
        if parts:
            parts[-1][2] = values
        else:
            namespace.query_weight = values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index by text, image, audio or item",
                       description=_PART_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("query", nargs="?", help="query text")
    p.add_argument("--text", action=_Part, help="another text part (repeatable)")
    p.add_argument("--image", action=_Part, metavar="FILE", help="image query part (repeatable)")
    p.add_argument("--audio", action=_Part, metavar="FILE", help="audio query part (repeatable)")
    p.add_argument("--like", action=_Part, type=int, metavar="ID",
                   help="an indexed result id: more like this (repeatable)")
    p.add_argument("--weight", action=_Weight, type=float, metavar="W",
                   help="weight of the part just before it (negative: push away)")
    p.add_argument("--fusion", default=None,
                   choices=["attention_learned", "attention", "weighted", "rrf", "score_sum"],
                   help="how parts combine: attention_learned (default; learned per-query part "
                   "weights), attention (fixed formula), weighted (plain weighted average), or "
                   "late fusion of per-part results (rrf, score_sum)")
    p.add_argument("--queries", metavar="FILE", help="one text query per line; JSON lines out")
    p.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--offset", type=int, default=0, help="skip this many results (paging)")
    p.add_argument("--modality", choices=["image", "text", "audio", "video"], action="append",
                   help="only results of this modality (repeatable)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="repeatable: modality=image, path=/photos/ (prefix), glob='*/2024/*', "
                   "ext=jpg,png, after=2024-01-01, before=2024-12-31, min_size=10k, max_size=5M, "
                   "min_duration=2, max_duration=30 (seconds)")
    p.add_argument("--min-score", type=_min_score, metavar="R|auto",
                   help="calibrated relevance threshold 0..1, the same across modalities; auto: "
                   "cut each query's list where the evidence ends (short when few items match)")
    p.add_argument("--sort", choices=["relevance", "date", "name"], default="relevance",
                   help="order of the kept hits: relevance (default), date (file modified, "
                   "newest first) or name (path)")
    p.add_argument("--no-hybrid", action="store_true",
                   help="vectors only: no keyword (FTS5) matches fused into text queries")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_db_arg(p)
    add_model_arg(p)
    p.set_defaults(func=run_search, parts=None, query_weight=1.0)

    p = sub.add_parser("info", help="what an index holds")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_db_arg(p)
    p.set_defaults(func=run_info)


def _open_engine(args: argparse.Namespace):
    from search.encoders import create_encoder
    from search.engine import Engine
    from search.index import Index

    settings = settings_from(args)
    index = Index.open(settings.db, encoder=args.model, catalog_url=settings.catalog)
    encoder = create_encoder(index.manifest.encoder, settings.cache_dir)
    engine = Engine(
        index, encoder, settings.max_image_pixels, settings.max_query_audio_s,
        settings.max_query_image_pixels,
    )
    return engine, settings


def _min_score(value: str) -> float | str:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number 0..1 or auto, got {value!r}") from None


def _size(value: str) -> int:
    value = value.strip().lower().rstrip("b")
    unit = _SIZE_UNITS.get(value[-1:], 1)
    return int(float(value[:-1] if unit > 1 else value) * unit)


def parse_filters(items: list[str], modality: list[str] | None = None):
    """``KEY=VALUE`` strings (and --modality) -> ``Filters``."""
    import os

    from search.errors import BadRequest
    from search.query import Filters

    fields: dict[str, Any] = {"modality": list(modality) if modality else None}
    for item in items:
        key, sep, value = item.partition("=")
        name = _FILTER_KEYS.get(key.strip().lower().replace("-", "_"))
        if not sep or name is None:
            raise BadRequest(f"bad --filter {item!r}: use KEY=VALUE with KEY one of "
                             + ", ".join(sorted(set(_FILTER_KEYS))))
        if name in ("modality", "ext"):
            fields[name] = list(fields.get(name) or []) + [v.strip() for v in value.split(",") if v.strip()]
        elif name == "path_prefix":
            fields[name] = os.path.abspath(os.path.expanduser(value)) + ("/" if value.endswith("/") else "")
        elif name in ("min_size", "max_size"):
            try:
                fields[name] = _size(value)
            except ValueError:
                raise BadRequest(f"bad size in --filter {item!r}: use bytes or 10k, 5M, 1G") from None
        else:
            fields[name] = value
    return Filters(**fields)


def build_query(args: argparse.Namespace, text: str | None = None):
    from search.errors import BadRequest
    from search.query import Query, QueryPart

    parts = [QueryPart(text=text, weight=args.query_weight)] if text else []
    for kind, value, weight in args.parts or []:
        if kind == "text":
            parts.append(QueryPart(text=value, weight=weight))
        elif kind == "image":
            parts.append(QueryPart(image_path=value, weight=weight))
        elif kind == "audio":
            parts.append(QueryPart(audio_path=value, weight=weight))
        else:
            parts.append(QueryPart(item_id=value, weight=weight))
    if not parts:
        raise BadRequest("nothing to search for: give TEXT, --image, --audio, --like or --queries")
    return Query(
        parts=parts,
        k=args.k,
        offset=args.offset,
        **({"fusion": args.fusion} if args.fusion else {}),
        filters=parse_filters(args.filter, args.modality),
        min_score=args.min_score,
        sort=args.sort,
        hybrid=not args.no_hybrid,
    )


def run_search(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from search.errors import BadRequest

    try:
        if args.queries:
            engine, _ = _open_engine(args)
            try:
                with open(args.queries, encoding="utf-8") as fh:
                    for line in fh:
                        line = line.strip()
                        if not line:
                            continue
                        result = engine.search(build_query(args, line))
                        print_json(result.to_json())
            finally:
                engine.index.close()  # a Milvus Lite file is then free for another process
            return 0
        query = build_query(args, args.query)
    except ValidationError as exc:
        raise BadRequest(exc.errors()[0]["msg"]) from None
    except OSError as exc:
        raise BadRequest(f"cannot read {args.queries}: {exc.strerror}") from None
    engine, _ = _open_engine(args)
    try:
        result = engine.search(query)
    finally:
        engine.index.close()  # a Milvus Lite file is then free for another process
    if args.json:
        print_json(result.to_json())
    else:
        _print_table(result)
    return 0


def _print_table(result) -> None:
    if not result.hits:
        print("no results")
        return
    print(f"{'#':>3}  {'score':>6}  {'rel':>4}  {'id':>7}  {'modality':<8}  path")
    for rank, hit in enumerate(result.hits, 1):
        where = ""
        if hit.start_s is not None:
            where = f"  [{hit.stream + ' ' if hit.stream else ''}{hit.start_s:.1f}-{hit.end_s:.1f} s]"
        if hit.page is not None:
            where += f"  (page {hit.page})"
        if hit.ocr:
            where += "  (text in the picture)"
        if hit.extra.get("keyword"):
            where += "  (keyword match)"
        rel = hit.extra.get("relevance")
        rel_s = f"{rel:4.2f}" if rel is not None else "   -"
        print(f"{rank:>3}  {hit.score:6.3f}  {rel_s}  {hit.id:>7}  {hit.modality:<8}  {shown(hit.path)}{where}")
        if hit.snippet:
            snippet = hit.snippet if len(hit.snippet) <= 100 else hit.snippet[:97] + "..."
            print(f"{'':>38}{snippet}")
    print(f"({len(result.hits)} results in {result.took_ms:.1f} ms)", file=sys.stderr)


def run_info(args: argparse.Namespace) -> int:
    from search.index import Index

    settings = settings_from(args)
    with Index.open(settings.db, catalog_url=settings.catalog) as index:
        info = index.info()
    print_mapping(info, args.json)
    return 0
