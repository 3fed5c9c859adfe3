"""One frame of a video at a moment (the thumbnail of a video hit), decoded with PyAV."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from search.errors import UnsupportedMedia


def frame_at(path: str | Path, t: float) -> Image.Image:
    """The first frame at or after ``t`` seconds (the last one when ``t`` is past the end).

    Raises:
        UnsupportedMedia: no video stream, or the file cannot be decoded.
    """
    import av  # optional heavy dependency (bundles FFmpeg), loaded on use

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UnsupportedMedia("the video has no picture (a sound track only)")
            stream = container.streams.video[0]
            if t > 0 and stream.time_base:
                container.seek(int(t / stream.time_base), stream=stream, backward=True)
            last = None
            for frame in container.decode(stream):
                last = frame
                if frame.time is None or frame.time >= t - 1e-3:
                    break
            if last is None:
                raise UnsupportedMedia("no frame could be decoded")
            return last.to_image()
    except av.FFmpegError as exc:
        raise UnsupportedMedia(f"not a decodable video: {exc}") from None
