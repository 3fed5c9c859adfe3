"""Image thumbnails: made once with Pillow, cached as JPEG under ``<db>/thumbnails/``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from search.media import open_image
from search.video import frame_at

SIZE = 384  # long side in pixels: sharp on a 2x screen in a ~190 px grid cell
QUALITY = 82


class Thumbnails:
    """Keyed by content id: identical files share one thumbnail, and ids are never reused."""

    def __init__(self, root: Path, max_pixels: int) -> None:
        self.root = Path(root)
        self.max_pixels = max_pixels

    def path(self, content_id: int) -> Path:
        return self.root / f"{int(content_id)}.jpg"

    def get(self, content_id: int, source: Path) -> Path:
        """The cached thumbnail of ``source``, made on first use.

        Raises:
            UnsupportedMedia / PayloadTooLarge: the image cannot be decoded safely.
        """
        out = self.path(content_id)
        if out.exists():
            return out
        return self._write(out, open_image(source, self.max_pixels))

    def get_frame(self, segment_id: int, t: float, source: Path) -> Path:
        """The cached thumbnail of a video's frame at ``t`` s (keyed by the frame's segment).

        Raises:
            UnsupportedMedia: the video cannot be decoded.
        """
        out = self.root / f"frame-{int(segment_id)}.jpg"
        if out.exists():
            return out
        return self._write(out, frame_at(source, t))

    def _write(self, out: Path, image: Image.Image) -> Path:
        image.thumbnail((SIZE, SIZE))
        self.root.mkdir(parents=True, exist_ok=True)
        # write then rename: two requests making the same thumbnail never see half a file
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                image.save(fh, "JPEG", quality=QUALITY, optimize=True)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out

    def forget(self, content_id: int) -> None:
        self.path(content_id).unlink(missing_ok=True)
