"""OCR figures: ``ocr_images_per_s`` (full reads), the ``--ocr auto`` check (its cost, what it
misses, what it saves), indexing wall time with OCR off / auto / on, and the share of rendered
phrases found at #1 by keyword and by meaning (bundled encoder).

Phrases are rendered with DejaVu Sans onto white and onto Flickr8k *train* photos; photos
without rendered text are Flickr8k train photos too (some hold incidental text: signs, shirts).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.context import BenchContext

PHRASES = (
    "Platform seven departures", "Fresh bread baked daily", "Closed for renovation",
    "Invoice number 4711", "Welcome to Lisbon", "No parking after midnight",
    "Happy birthday Clara", "Exit only", "Organic coffee beans", "Museum of modern art",
    "Ticket valid until June", "Caution wet floor", "Annual report 2023", "Lost cat reward",
    "Pizza slices two dollars", "Bicycle repair shop", "Meeting room B", "Library opening hours",
    "Vote for change", "Harbour ferry timetable", "Keep calm and carry on", "Hot chocolate inside",
    "Garage sale Saturday", "Password reset required", "Dinner menu tonight",
    "Mountain trail closed", "Grand opening sale", "Fire exit keep clear", "Quarterly sales chart",
    "Thank you for shopping",
)
T = TypeVar("T")
_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def _render(phrase: str, background: np.ndarray | None) -> Image.Image:
    face = ImageFont.truetype(_FONT, 34)
    width = int(face.getlength(phrase)) + 80
    if background is None:
        image, fill = Image.new("RGB", (width, 160), "white"), "black"
    else:
        image, fill = Image.fromarray(background).resize((width, max(160, width * 3 // 4))), "white"
    draw = ImageDraw.Draw(image)
    y = image.height // 2 - 20
    if background is not None:
        draw.rectangle((30, y - 8, width - 30, y + 50), fill=(20, 20, 20))
    draw.text((40, y), phrase, font=face, fill=fill)
    return image


def _train_photos(data: Path, n: int) -> list[Path]:
    folder = data / "flickr8k_1k"
    with open(folder / "manifest.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("split") == "train"]
    return sorted({folder / r["path"] for r in rows})[:n]


def run(ctx: BenchContext) -> dict[str, object]:
    if not Path(_FONT).exists():
        return {"ocr_skipped": "DejaVu fonts missing (scripts/ensure-fonts.sh)"}
    if ctx.shared_data is None:
        return {"ocr_skipped": "../shared/data missing"}
    from indexer import ocr

    n = 10 if ctx.quick else len(PHRASES)
    photos = _train_photos(ctx.shared_data, 2 * n)
    folder = ctx.scratch / "ocr_corpus"
    folder.mkdir(parents=True, exist_ok=True)
    texts, plain = [], []
    for i, phrase in enumerate(PHRASES[:n]):
        bg = np.asarray(Image.open(photos[i]).convert("RGB")) if i % 2 else None
        path = folder / f"text_{i:02d}.png"
        _render(phrase, bg).save(path)
        texts.append(path)
    for photo in photos[n : 2 * n]:
        plain.append(folder / photo.name)
        plain[-1].write_bytes(photo.read_bytes())
    pixels = {p: np.asarray(Image.open(p).convert("RGB")) for p in texts + plain}
    # camera-sized copies (upscaled to a 1280 px long side; the indexer decodes large JPEGs
    # at >= 448 px short side, so a 12-Mpx photo reaches OCR at ~1000 px)
    big = [p.with_name("big_" + p.name) for p in plain]
    for src, dst in zip(plain, big):
        im = Image.open(src).convert("RGB")
        scale = 1280 / max(im.size)
        pixels[dst] = np.asarray(im.resize((round(im.width * scale), round(im.height * scale))))
    ocr.read_text(pixels[texts[0]])  # load the models before the clock

    def timed(fn: Callable[[np.ndarray], T], items: list[Path]) -> tuple[list[T], float]:
        t0 = time.perf_counter()
        out = [fn(pixels[p]) for p in items]
        return out, (time.perf_counter() - t0) / len(items)

    read_texts, read_s = timed(ocr.read_text, texts)
    _, read_plain_s = timed(ocr.read_text, plain)
    checks_text, check_s = timed(ocr.has_text, texts)
    checks_plain, _ = timed(ocr.has_text, plain)
    words_ok = np.mean([
        all(w.lower() in got.lower() for w in phrase.split())
        for phrase, got in zip(PHRASES, read_texts)
    ])
    _, read_big_s = timed(ocr.read_text, big)
    checks_big, check_big_s = timed(ocr.has_text, big)
    # auto on camera-sized photos without text: the check, plus a read where it fires
    saved_big = 1 - (check_big_s + read_big_s * float(np.mean(checks_big))) / read_big_s
    out: dict[str, object] = {
        "ocr_images_per_s": round(1.0 / read_s, 2),
        "ocr_photo_read_ms": round(read_plain_s * 1000, 1),
        "ocr_check_ms": round(check_s * 1000, 1),
        "ocr_phrases_read_exactly": round(float(words_ok), 3),
        "ocr_auto_recall": round(float(np.mean(checks_text)), 3),
        "ocr_auto_photos_read": round(float(np.mean(checks_plain)), 3),
        "ocr_photo_1280px_read_ms": round(read_big_s * 1000, 1),
        "ocr_check_1280px_ms": round(check_big_s * 1000, 1),
        "ocr_auto_photos_1280px_read": round(float(np.mean(checks_big)), 3),
        "ocr_auto_cost_saved_1280px_photos": round(saved_big, 3),
    }
    out.update(_index_and_search(ctx, folder, texts))
    return out


def _index_and_search(ctx: BenchContext, folder: Path, texts: list[Path]) -> dict[str, object]:
    """Index the folder with OCR off, auto and on (bundled encoder); query each phrase."""
    from indexer.pipeline import index_paths
    from search.encoders import create_encoder
    from search.engine import Engine
    from search.hybrid import keyword_ids
    from search.index import Index
    from search.query import Query
    from search.settings import get_settings

    encoder = create_encoder("bundled", get_settings().cache_dir)
    out: dict[str, object] = {}
    for mode in ("off", "auto", "on"):
        settings = get_settings(db=ctx.scratch / f"ocr_index_{mode}", ocr=mode,
                                cache_dir=get_settings().cache_dir)
        with Index.open_for_write(settings.db, encoder.id, encoder.dim) as index:
            report = index_paths([folder], index, encoder, settings, progress=False)
        out[f"ocr_{mode}_index_s"] = round(report.seconds, 2)
        if mode == "on":
            out["ocr_share_of_worker_time"] = round(
                report.ocr_seconds / max(1e-9, report.seconds * max(1, settings.workers)), 3)
    with Index.open(ctx.scratch / "ocr_index_on") as index:
        engine = Engine(index, encoder)
        by_keyword = by_meaning = 0
        for phrase, path in zip(PHRASES, texts):
            ids = keyword_ids(index.catalog, phrase, 5)
            infos = index.catalog.segments(ids[:1])
            by_keyword += bool(ids) and infos[ids[0]].path == str(path)
            hits = engine.search(Query.text(phrase.lower(), hybrid=False, k=1)).hits
            by_meaning += bool(hits) and hits[0].path == str(path)
    out["ocr_found_at_1_keyword"] = round(by_keyword / len(texts), 3)
    out["ocr_found_at_1_meaning"] = round(by_meaning / len(texts), 3)
    return out
