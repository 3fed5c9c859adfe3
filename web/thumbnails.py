"""Image thumbnails (and video frames'): made once with Pillow, cached as JPEG under
``<db>/thumbnails/``."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from search.errors import DiskFull, is_disk_full
from search.media import WEB_IMAGE_FORMATS, open_image
from search.video import frame_at

SIZE = 384  # long side in pixels: sharp on a 2x screen in a ~190 px grid cell
QUALITY = 82


class Thumbnails:
    """Keyed by content (id and hash): identical files share one thumbnail. The hash too, as ids
    restart with a new catalog (``--reindex``, a restored backup) while a thumbnail made for the
    old one may linger (one being made as the reindex began): it must never be served for
    another image that got its id."""

    def __init__(self, root: Path, max_pixels: int) -> None:
        self.root = Path(root)
        self.max_pixels = max_pixels

    def path(self, content_id: int, sha256: str) -> Path:
        return self.root / f"{_key(content_id, sha256)}.jpg"

    def get(self, content_id: int, sha256: str, source: Path) -> Path:
        """The cached thumbnail of ``source``, made on first use.

        Raises:
            UnsupportedMedia / PayloadTooLarge: the image cannot be decoded safely.
            DiskFull: no room to cache it (``render`` still makes it, in memory).
        """
        return self._cached(self.path(content_id, sha256), lambda: self.render(source))

    def get_frame(self, segment_id: int, sha256: str, t: float, source: Path) -> Path:
        """The cached thumbnail of a video's frame at ``t`` s (keyed by the frame's segment).

        Raises:
            UnsupportedMedia: the video cannot be decoded.
            DiskFull: no room to cache it (``render_frame`` still makes it, in memory).
        """
        return self._cached(self.root / f"frame-{_key(segment_id, sha256)}.jpg",
                            lambda: self.render_frame(source, t))

    def _cached(self, out: Path, render: Callable[[], bytes]) -> Path:
        if out.exists():
            return out
        data = render()
        # write then rename: two requests making the same thumbnail never see half a file
        tmp: str | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, out)
        except BaseException as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if is_disk_full(exc):
                raise DiskFull.writing(self.root) from exc
            raise
        return out

    def render(self, source: Path) -> bytes:
        """The JPEG bytes of ``source``'s thumbnail, not cached."""
        return _jpeg(open_image(source, self.max_pixels, formats=WEB_IMAGE_FORMATS))

    def render_frame(self, source: Path, t: float) -> bytes:
        """The JPEG bytes of a video's frame at ``t`` s, not cached."""
        return _jpeg(frame_at(source, t))

    def forget(self, content_id: int, sha256: str) -> None:
        self.path(content_id, sha256).unlink(missing_ok=True)


def _key(row_id: int, sha256: str) -> str:
    return f"{int(row_id)}-{''.join(c for c in sha256[:16] if c in '0123456789abcdef')}"


def _jpeg(image: Image.Image) -> bytes:
    image.thumbnail((SIZE, SIZE))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=QUALITY, optimize=True)
    return buf.getvalue()
