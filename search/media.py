"""Decoding query and corpus media safely: shared by the indexer, the engine and the web layer."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from search.errors import CrossfindError, PayloadTooLarge, UnsupportedMedia

DEFAULT_MAX_PIXELS = 64_000_000
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
) -> Image.Image:
    """Decode an image fully: EXIF-rotated, RGB. Refuses decompression bombs and corrupt data.

    ``draft_px``: a large JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose
    short side stays >= draft_px; the indexer asks for what its encoder needs (7x faster on
    6-Mpx photos than decoding every pixel).

    ``max_decoded_pixels``: a cap on the pixels actually decoded (after the reduced JPEG scale),
    for query images: memory per decode stays bounded (a 64-Mpx PNG needs ~250 MB) while a
    large JPEG photo, decoded at a fraction of its size, still passes.

    ``formats``: the Pillow formats tried (default: all it has), e.g. ``WEB_IMAGE_FORMATS``.

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
                if formats is None:
                    raise
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
            return ImageOps.exif_transpose(img).convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PayloadTooLarge(f"image refused as a decompression bomb: {exc}") from None
        except CrossfindError:
            raise
        except Exception as exc:
            # hostile bytes reach Pillow's decoders, which fail in many ways besides OSError
            # (a TIFF whose directory points past its end: TypeError "Missing dimensions")
            raise UnsupportedMedia(f"not a decodable image: {exc}") from None
