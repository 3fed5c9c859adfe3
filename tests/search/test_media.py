"""Decoding images of every pixel format into the RGB the encoders take."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from search.media import open_image


def _saved(pixels: np.ndarray, mode: str, fmt: str) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(pixels)
    assert image.mode == mode
    image.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("dtype", "mode", "fmt", "low", "high"),
    [
        (np.uint16, "I;16", "PNG", 1_000, 60_000),  # a 16-bit scan
        (np.uint16, "I;16", "TIFF", 0, 4_095),  # 12-bit camera or medical data in 16 bits
        (np.int32, "I", "TIFF", -50_000, 2_000_000),
        (np.float32, "F", "TIFF", 0.0, 1.0),  # a float TIFF of reflectances
    ],
)
def test_wide_greyscale_keeps_its_picture(dtype, mode, fmt, low, high) -> None:
    """PIL's convert("RGB") clips wide greyscale at 255: every such image came out blank
    (white, or black for floats in 0..1) and was embedded as a blank picture."""
    ramp = np.linspace(low, high, 200, dtype=np.float64)
    pixels = np.tile(ramp, (50, 1)).astype(dtype)  # dark on the left, light on the right
    rgb = np.asarray(open_image(_saved(pixels, mode, fmt)))
    assert rgb.shape == (50, 200, 3) and rgb.dtype == np.uint8
    grey = rgb[..., 0].astype(int)
    assert grey[:, :20].mean() < 30 and grey[:, -20:].mean() > 225
    assert np.all(np.diff(grey[0]) >= 0)  # the ramp's order is kept


@pytest.mark.parametrize("source", [b"this is not an image", "file"])
def test_an_unknown_format_is_named_without_the_file_object(source, tmp_path) -> None:
    """The reason a user reads says what is wrong, not Pillow's repr of a buffer or handle."""
    from search.errors import UnsupportedMedia

    if source == "file":
        source = tmp_path / "notes.jpg"
        source.write_bytes(b"this is not an image")
    with pytest.raises(UnsupportedMedia) as caught:
        open_image(source)
    assert str(caught.value).startswith("not a decodable image")
    assert "<_io" not in str(caught.value) and "0x" not in str(caught.value)
