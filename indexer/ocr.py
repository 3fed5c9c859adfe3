"""Text inside images: RapidOCR (PP-OCRv4 detection + recognition, ONNX models inside the
``rapidocr-onnxruntime`` wheel; nothing is downloaded) run in the decoding workers.

Modes (``--ocr``): ``off``; ``on`` reads every image, video frame and scanned PDF page;
``auto`` first runs the detection network alone on a small copy of the image (``has_text``)
and reads only where it finds text. One engine per process, made on first use, one thread
(the worker pool gives the parallelism; the model process keeps its cores).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.text import normalize, split_passages

MODES = ("auto", "on", "off")
# a line read with less confidence than this is noise (RapidOCR's own default)
MIN_LINE_SCORE = 0.5
# the text-presence check: the detector on a copy whose long side is this many pixels
CHECK_SIDE = 480
# and text is "present" when it finds a box at least this confident
CHECK_BOX_SCORE = 0.6
# images are read at most at this long side (full OCR cost grows with the pixels)
READ_SIDE = 1280

# a gap between characters wider than this share of the median character width is a space
SPACE_GAP = 0.75

_engine: Any = None


@dataclass
class OcrStats:
    """What OCR cost in this process (the workers report theirs with each decoded file)."""

    checked: int = 0
    read: int = 0
    seconds: float = 0.0


stats = OcrStats()


def _get_engine() -> Any:
    global _engine
    if _engine is None:
        from rapidocr_onnxruntime import RapidOCR  # optional heavy dependency, loaded on use

        _engine = RapidOCR(
            intra_op_num_threads=1, inter_op_num_threads=1, det_limit_type="max",
            det_limit_side_len=READ_SIDE, max_side_len=READ_SIDE,
        )
    return _engine


def _bgr(pixels: np.ndarray, side: int) -> np.ndarray:
    """RGB pixels -> BGR (what RapidOCR takes), shrunk so the long side is at most ``side``."""
    from PIL import Image

    h, w = pixels.shape[:2]
    if max(h, w) > side:
        scale = side / max(h, w)
        image = Image.fromarray(pixels).resize((max(1, round(w * scale)), max(1, round(h * scale))))
        pixels = np.asarray(image)
    return np.ascontiguousarray(pixels[..., ::-1])


def has_text(pixels: np.ndarray) -> bool:
    """The cheap check of ``--ocr auto``: the detection network alone, on a small copy."""
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    t0 = time.perf_counter()
    det = _get_engine().text_det
    small = _bgr(pixels, CHECK_SIDE)
    pre = DetPreProcess(CHECK_SIDE, "max", det.mean, det.std)(small)
    found = False
    if pre is not None:
        preds = det.infer(pre)[0]
        _, scores = det.postprocess_op(preds, small.shape[:2])
        found = any(float(s) >= CHECK_BOX_SCORE for s in scores)
    stats.checked += 1
    stats.seconds += time.perf_counter() - t0
    return found


def read_text(pixels: np.ndarray) -> str:
    """The text read off an RGB image, lines in reading order, normalised ("" when none)."""
    t0 = time.perf_counter()
    result, _ = _get_engine()(_bgr(pixels, READ_SIDE), return_word_box=True)
    stats.read += 1
    stats.seconds += time.perf_counter() - t0
    lines = [
        _spaced(str(line[1]), line[3] if len(line) > 3 else None)
        for line in result or [] if float(line[2]) >= MIN_LINE_SCORE
    ]
    return normalize(" ".join(lines))


def _spaced(text: str, boxes: Any) -> str:
    """Put back the spaces the recogniser drops between words (it reads "DELIVERY ADDRESS" as
    "DELIVERYADDRESS"): a gap between two characters' boxes wider than most of a character."""
    if not boxes or len(boxes) != len(text) or " " in text:
        return text
    spans = [(min(p[0] for p in box), max(p[0] for p in box)) for box in boxes]
    width = float(np.median([b - a for a, b in spans]))
    out = [text[0]]
    for i in range(1, len(text)):
        if spans[i][0] - spans[i - 1][1] > SPACE_GAP * width:
            out.append(" ")
        out.append(text[i])
    return "".join(out)


def image_text(pixels: np.ndarray, mode: str) -> str:
    """The text of an image under ``mode`` ("" when off, or when auto's check finds none).

    Reading an image without text costs about one detection pass at its size, so auto checks
    only images much larger than the check's own size; smaller ones are read at once."""
    if mode == "off":
        return ""
    if mode == "auto" and max(pixels.shape[:2]) > 2 * CHECK_SIDE and not has_text(pixels):
        return ""
    return read_text(pixels)


def passage_segments(
    pixels: np.ndarray, mode: str, words: int, overlap: int, **fields: object
) -> list[dict[str, Any]]:
    """The text read off an image (``mode``: auto | on | off) as passage segments, each marked
    ``ocr`` and carrying ``fields`` (a video frame's stream and times)."""
    text = image_text(pixels, mode)
    return [
        {**fields, "ocr": True, "text": p.text, "char_start": p.char_start, "char_end": p.char_end}
        for p in (split_passages(text, words, overlap) if text else [])
    ]


def page_reader(mode: str) -> Callable[[list[np.ndarray]], list[str]] | None:
    """What reads scanned PDF pages: only with ``--ocr on`` (a page image is always text)."""
    if mode != "on":
        return None
    return lambda pages: [read_text(p) for p in pages]
