"""``crossfind serve``: the search page and JSON API (uvicorn)."""

from __future__ import annotations

import argparse
import functools
import sys

from cli.common import add_db_arg, settings_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="web search page and JSON API",
        description=(
            "Serve the search page at / and the JSON API at /api (docs at /docs). Writes "
            "(POST /api/index, DELETE /api/items/ID) need CROSSFIND_API_KEY; POST /api/index "
            "indexes CROSSFIND_ROOTS."
        ),
    )
    add_db_arg(p)
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument(
        "--workers",
        dest="http_workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes, each loading the models (default 1)",
    )
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from web.app import create_app

    settings = settings_from(args)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        print(
            f"crossfind: serving on {settings.host} with open reads and writes disabled "
            "(set CROSSFIND_API_KEY to allow writes)",
            file=sys.stderr,
        )
    print(
        f"crossfind: http://{settings.host}:{settings.port}/  (index: {settings.db})",
        file=sys.stderr,
    )
    # query-time model calls are small and concurrent: one ONNX thread each uses the cores
    # better than two (see search.encoders.onnx_text.default_threads)
    os.environ.setdefault("CROSSFIND_ONNX_THREADS", "1")
    workers = max(1, args.http_workers or 1)
    common = functools.partial(uvicorn.run, host=settings.host, port=settings.port, log_level="warning",
                               timeout_keep_alive=5)
    if workers == 1:
        common(create_app(settings))
        return 0
    # worker processes build their own app from the environment: pass the flags on there
    os.environ["CROSSFIND_DB"] = str(settings.db)
    os.environ["CROSSFIND_HOST"] = settings.host  # the Host check answers the names of this address
    if settings.catalog:
        os.environ["CROSSFIND_CATALOG"] = settings.catalog
    common("web.app:create_app", factory=True, workers=workers)
    return 0
