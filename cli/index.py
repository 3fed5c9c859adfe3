"""``crossfind index PATH...``: bring an index up to date with files and folders."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import add_db_arg, add_model_arg, print_json, settings_from
from search.paths import shown
from search.settings import Settings, get_settings

if TYPE_CHECKING:
    from indexer.ray_embed import RayExecutor

# skipped files listed in the table; --json lists all
_SHOW_SKIPPED = 40


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="index files and folders (incremental: unchanged files are skipped)",
        description="Index text (.txt .md), documents (.pdf .html .htm .docx), images (jpg png "
        "webp gif bmp tiff), audio (wav flac ogg mp3) and video (mp4 m4v mkv webm mov avi) under "
        "PATHs. Re-running updates the index: changed files are "
        "re-embedded, vanished ones removed, identical files stored once.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    add_db_arg(p)
    add_model_arg(p)
    p.add_argument("--batch-size", type=int, help="items per model batch (default 32)")
    p.add_argument("--workers", type=int,
                   help="decoding processes (default 2; 0 decodes in the main process)")
    p.add_argument("--reindex", action="store_true",
                   help="delete the index and rebuild it (needed to change --model)")
    p.add_argument(
        "--store", metavar="BACKEND:SPEC",
        help="vector index: faiss:auto (default: exact while small, then an ANN index sized for "
        "the collection), faiss:Flat (always exact) or any FAISS factory string (faiss:HNSW32, "
        "faiss:IVF4096,PQ48); also $CROSSFIND_STORE. Changing it rebuilds the vector index "
        "from the stored vectors, no re-embedding",
    )
    p.add_argument("--include-hidden", action="store_true",
                   help="also index hidden files and folders (names starting with '.')")
    p.add_argument("--ocr", choices=["auto", "on", "off"],
                   help="read text inside images, video frames and scanned PDF pages: on, off, "
                   "or auto (only where a quick check sees text); default $CROSSFIND_OCR or off")
    p.add_argument("--follow-links", action="store_true",
                   help="also follow links that lead outside the given folders (recorded in "
                   "the index: the server then serves files those links reach)")
    p.add_argument(
        "--executor", default="local", metavar="local|ray|ray:ADDRESS",
        help="where files are decoded and embedded: local (default: worker processes here), "
        "ray (a local Ray with --workers CPUs, default all cores), ray:auto (the Ray cluster "
        "this machine belongs to) or ray:HOST:PORT / ray:ray://HOST:10001; every Ray node must "
        "see the files at the same paths (docs/scale-out.md)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, one summary line")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run_index)


def _encoder_name(args: argparse.Namespace, default: str, db: Path) -> str:
    """--model (or $CROSSFIND_MODEL); else the encoder the index was built with; else default."""
    from search.errors import Conflict
    from search.index import MANIFEST, Index, Manifest

    if args.model or "model" in get_settings().model_fields_set:
        return default  # settings already hold the flag or the environment's choice
    if not args.reindex and Index.exists(db):
        try:
            return Manifest.read(db / MANIFEST).encoder
        except (OSError, ValueError, TypeError) as exc:
            raise Conflict(
                f"the index at {db} has an unreadable {MANIFEST} ({exc}); rebuild it with --reindex"
            ) from None
    return default


def _check_db(db: Path) -> None:
    from search.errors import BadRequest

    if db.exists() and not db.is_dir():
        raise BadRequest(f"--db {db} is a file; give a folder (it is created if missing)")
    try:
        db.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadRequest(f"cannot create the index folder --db {db}: {exc.strerror}") from None
    if not os.access(db, os.W_OK):
        raise BadRequest(f"the index folder --db {db} is not writable; pick another with --db")


def _executor(args: argparse.Namespace, settings: Settings, encoder: str) -> RayExecutor | None:
    """None for --executor local; else the Ray to embed on, checked (installed, reachable)
    before any work."""
    if args.executor == "local":
        return None
    from indexer.ray_embed import RayExecutor

    executor = RayExecutor(
        address=RayExecutor.parse(args.executor), encoder=encoder,
        num_cpus=args.workers if args.workers and args.workers > 0 else None,
        hooks=settings.extra_encoders, verbose=getattr(args, "verbose", False),
    )
    executor.check()
    return executor


def run_index(args: argparse.Namespace) -> int:
    from indexer import index_paths
    from search.encoders import create_encoder
    from search.errors import DiskFull
    from search.index import Index
    from search.store import StoreOptions, StoreSpec

    settings = settings_from(args)
    store = args.store or settings.store
    spec = StoreSpec.parse(store) if store else None  # a bad spec fails before any work
    if args.include_hidden:
        settings.include_hidden = True
    if args.ocr:
        settings.ocr = args.ocr
    if args.follow_links:
        settings.follow_links = True
    _check_db(settings.db)
    name = _encoder_name(args, settings.model, settings.db)
    executor = _executor(args, settings, name)
    encoder = create_encoder(name, settings.cache_dir)
    try:
        with Index.open_for_write(
            settings.db, encoder.id, encoder.dim, reindex=args.reindex, store=spec,
            options=StoreOptions.from_settings(settings),
        ) as index:
            report = index_paths(
                args.paths, index, encoder, settings,
                progress=not args.quiet and sys.stderr.isatty(), executor=executor,
            )
            info = index.info()
    except DiskFull as exc:
        if args.reindex:  # "nothing indexed so far is lost" would hide that the old index went
            raise DiskFull(
                f"no space left on device writing {settings.db}; --reindex had removed the old "
                "index: free space and re-run (what this run indexed so far is kept)"
            ) from exc
        raise
    if args.json:
        print_json({**report.to_json(), "index": {k: info[k] for k in ("path", "items", "vectors")}})
    elif args.quiet:
        t = report.totals()
        refreshed = f"{t.refreshed} re-embedded by a new model, " if t.refreshed else ""
        print(
            f"{t.added} added, {t.updated} updated, {t.linked} linked, {t.removed} removed, "
            f"{t.unchanged} unchanged, {refreshed}{len(report.skipped)} skipped in {report.seconds:.1f} s"
        )
    else:
        _print_table(report, info)
    return 0


def _print_table(report, info: dict) -> None:
    cols: tuple[str, ...] = ("added", "updated", "unchanged", "linked", "removed", "vectors")
    if report.totals().refreshed:  # re-embedded because the model that made them was replaced
        cols = (*cols[:5], "refreshed", "vectors")
    print(f"{'modality':<9}" + "".join(f"{c:>10}" for c in cols))
    for modality, counts in report.by_modality.items():
        values = [getattr(counts, c) for c in cols]
        if any(values):
            print(f"{modality:<9}" + "".join(f"{v:>10}" for v in values))
    t = report.totals()
    print(f"{'total':<9}" + "".join(f"{getattr(t, c):>10}" for c in cols))
    if report.skipped:
        print(f"\nskipped {len(report.skipped)} file(s):")
        for s in report.skipped[:_SHOW_SKIPPED]:
            print(f"  {shown(s.path)}: {s.reason}")
        if len(report.skipped) > _SHOW_SKIPPED:
            print(f"  ... and {len(report.skipped) - _SHOW_SKIPPED} more (--json lists all)")
    for s in report.partial:
        print(f"  partly indexed {shown(s.path)}: {s.reason}")
    if report.ocr_checked or report.ocr_read:
        print(f"\nOCR: {report.ocr_read} image(s) read, {report.ocr_checked} checked for text, "
              f"{report.ocr_seconds:.1f} s in the decoding workers")
    if report.ignored:
        print(f"\nignored {report.ignored} file(s) of types crossfind does not index")
    print(
        f"\n{info['items']} files, {info['vectors']} vectors in {info['path']}; "
        f"took {report.seconds:.1f} s, model busy {report.model_busy_fraction:.0%} of it"
    )
