"""Decoding query and corpus media safely: shared by the indexer, the engine and the web layer."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from search.errors import CrossfindError, PayloadTooLarge, UnsupportedMedia

DEFAULT_MAX_PIXELS = 64_000_000
# greyscale of more than 8 bits (16-bit scans, scientific and medical images, float TIFFs):
# PIL's convert("RGB") clips them at 255, so nearly every one showed as a blank white picture
_WIDE_GREY = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# what a query image or a thumbnail may be: the formats crossfind indexes (indexer.sniff) and
# AVIF (phones; "JPEG" takes cameras' MPO too). Pillow opens some forty more, rarely met and
# less tried, and EPS it hands to Ghostscript: none of that for bytes from the network.
WEB_IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")


def open_image(
    source: bytes | str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_px: int = 1024,
    max_decoded_pixels: int | None = None,
    formats: tuple[str, ...] | None = None,
    reduce_above: int | None = None,
) -> Image.Image:
    """Decode an image fully: EXIF-rotated, RGB. Refuses decompression bombs and corrupt data.

    ``draft_px``: a large JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose
    short side stays >= draft_px; the indexer asks for what its encoder needs (7x faster on
    6-Mpx photos than decoding every pixel).

    ``max_decoded_pixels``: a cap on the pixels actually decoded (after the reduced JPEG scale),
    for query images: memory per decode stays bounded (a 64-Mpx PNG needs ~250 MB) while a
    large JPEG photo, decoded at a fraction of its size, still passes.

    ``formats``: the Pillow formats tried (default: all it has), e.g. ``WEB_IMAGE_FORMATS``.

    ``reduce_above``: an image whose long side is at least twice this is reduced (a box filter,
    by a whole factor) right after decoding, keeping its long side >= reduce_above and its short
    side >= draft_px, before converting copies it: a 64-Mpx PNG then peaks at ~0.4 GB instead
    of ~0.9 GB. (A JPEG gets this from its reduced-scale decode.)

    Raises:
        UnsupportedMedia: not a decodable image (truncated, corrupt, wrong format).
        PayloadTooLarge: more than ``max_pixels`` pixels.
    """
    with (
        io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as fh,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            try:
                img = Image.open(fh, formats=formats)
            except UnidentifiedImageError:
                # Pillow's own message names the file object ("<_io.BytesIO object at 0x…>")
                if formats is None:
                    raise UnsupportedMedia("not a decodable image: not an image format this "
                                           "install reads, or not an image") from None
                raise UnsupportedMedia(
                    "not a decodable image; send JPEG, PNG, GIF, WebP, BMP, TIFF or AVIF"
                ) from None
            w, h = img.size
            if w * h > max_pixels:
                raise PayloadTooLarge(f"image is {w}x{h} pixels, over the cap of {max_pixels}")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP: first frame
            img.draft("RGB", (draft_px, draft_px))  # JPEG: reduced scale when large
            w, h = img.size
            if max_decoded_pixels is not None and w * h > max_decoded_pixels:
                raise PayloadTooLarge(
                    f"query image decodes to {w}x{h} pixels, over the cap of "
                    f"{max_decoded_pixels:,} for query images "
                    "(CROSSFIND_MAX_QUERY_IMAGE_PIXELS); send a smaller image"
                )
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # a copy only when it turns
            pixels: Image.Image = _stretched(img) if img.mode in _WIDE_GREY else img
            if reduce_above is not None:
                pixels = _reduced(pixels, reduce_above, draft_px)
            return pixels.convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PayloadTooLarge(f"image refused as a decompression bomb: {exc}") from None
        except CrossfindError:
            raise
        except Exception as exc:
            # hostile bytes reach Pillow's decoders, which fail in many ways besides OSError
            # (a TIFF whose directory points past its end: TypeError "Missing dimensions")
            raise UnsupportedMedia(f"not a decodable image: {exc}") from None


def _stretched(img: Image.Image) -> Image.Image:
    """8-bit greyscale of a wider one, its value range stretched to 0..255 (as image viewers
    show such files: their range is seldom the full 16 or 32 bits)."""
    values = np.nan_to_num(np.asarray(img, dtype=np.float32), posinf=0.0, neginf=0.0)
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return Image.fromarray(scaled.round().astype(np.uint8), "L")


def _reduced(img: Image.Image, long_px: int, short_px: int) -> Image.Image:
    factor = min(max(img.size) // long_px, min(img.size) // short_px)
    if factor < 2:
        return img
    if img.mode in ("1", "P"):  # reduce takes neither
        img = img.convert("RGB")
    return img.reduce(factor)
