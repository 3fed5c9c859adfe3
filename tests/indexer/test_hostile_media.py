"""Hostile and unusual media files: each is indexed, indexed in part with a note, or skipped
with its reason, in bounded memory; never a lost run."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tracemalloc
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from indexer.documents import DocumentError, read_document
from indexer.embedder import Embedder
from indexer.loaders import Loaded, LoaderConfig, load, set_config
from tests.indexer.corpus import CountingEncoder
from tests.indexer.documents import costly_pdf, docx, image_pages_pdf, pdf
from tests.indexer.videos import colour_scene, make_video, tone


def _pages_read(calls: list[tuple[int, int]]):
    """What reads scanned pages here (the OCR engine's place): records each call's page
    count and the traced memory at that moment, and "reads" a page's size as its words."""

    def read(images: list[np.ndarray]) -> list[str]:
        calls.append((len(images), tracemalloc.get_traced_memory()[0]))
        return [f"scanned page of {im.shape[1]} by {im.shape[0]} pixels" for im in images]

    return read


def test_a_scanned_book_is_read_a_page_at_a_time_in_bounded_memory(tmp_path: Path) -> None:
    """OCR of a scanned PDF held every page image at once (and pypdf kept each decoded one):
    60 A4 pages at 300 dpi took 2.2 GB, a 300-page book would need ~10 GB."""
    pages = 16
    data = image_pages_pdf(tmp_path / "book.pdf", [(1000, 1400)] * pages).read_bytes()
    page_rgb = 1000 * 1400 * 3
    calls: list[tuple[int, int]] = []
    tracemalloc.start()
    try:
        segments, note = read_document("PDF", data, 5_000_000, 120, 30, ocr_pages=_pages_read(calls))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * page_rgb, f"peak {peak / 2**20:.0f} MB for {pages} pages"
    assert [s["page"] for s in segments] == list(range(1, pages + 1)) and note is None
    assert all(s["ocr"] for s in segments)
    assert [n for n, _ in calls] == [1] * pages  # one page image at a time


def test_a_page_image_that_cannot_be_decoded_leaves_out_that_page_only(tmp_path: Path) -> None:
    """A page image past pypdf's decompression limit (75 MB) cost the whole document with
    --ocr on ("corrupt or truncated PDF"); now that page alone is left out, and said so."""
    data = image_pages_pdf(tmp_path / "mixed.pdf", [(800, 600), (9000, 9000), (800, 600)]).read_bytes()
    segments, note = read_document("PDF", data, 5_000_000, 120, 30, ocr_pages=_pages_read([]))
    assert [s["page"] for s in segments] == [1, 3]
    assert note == "1 page(s) without a text layer left out (OCR read no text off them)"


def test_a_scan_without_text_under_ocr_does_not_ask_for_ocr(tmp_path: Path) -> None:
    data = image_pages_pdf(tmp_path / "blank.pdf", [(400, 300)] * 2).read_bytes()
    with pytest.raises(DocumentError) as refused:
        read_document("PDF", data, 5_000_000, 120, 30, ocr_pages=lambda images: [""] * len(images))
    assert str(refused.value) == "no text in the document: no text layer, and OCR read none off its pages"


def test_a_pdf_locked_with_aes_against_editing_only_is_indexed(run_index, tmp_path: Path) -> None:
    """AES-256 with an empty user password (a PDF locked against editing, not reading) needs
    the cryptography package, which pypdf does not install: it was skipped
    ("failed to decode: DependencyError")."""
    from pypdf import PdfReader, PdfWriter

    plain = pdf(tmp_path / "plain.pdf", ["a report about glaciers and fjords"])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    root = tmp_path / "locked"
    root.mkdir()
    with open(root / "aes.pdf", "wb") as fh:
        writer.write(fh)
    report = run_index(CountingEncoder(), root)
    assert report.skipped == [] and report.by_modality["text"].added == 1


def _long_video(path: Path) -> Path:
    """Six 3-second scenes, each with its own tone: more frames and sound than a cap of 3."""
    colours = [(220, 20, 30), (30, 200, 40), (20, 40, 230)] * 2
    return make_video(
        path, [colour_scene(c, seed=i) for i, c in enumerate(colours)],
        sounds=[tone(300 + 400 * i) for i in range(6)],
    )


@pytest.mark.parametrize("stream_after", [100, 2])  # decoded in the worker / streamed by the writer
def test_a_video_past_its_frame_and_sound_caps_says_what_was_left_out(
    tmp_path: Path, stream_after: int
) -> None:
    """Frames and sound windows stop at a cap per video (1,440); a longer one was indexed
    only in part without a word (a two-hour film: its first hour of sound), and decoded to
    its end for nothing."""
    pytest.importorskip("av")
    path = _long_video(tmp_path / "film.mp4")
    set_config(LoaderConfig(
        preprocess_image=lambda im: np.zeros((4, 4, 3), np.float32),
        max_audio_windows=3, stream_audio_after=stream_after,
    ))
    loaded = load(str(path), "video")
    assert isinstance(loaded, Loaded), loaded
    if loaded.streamed is not None:
        Embedder(CountingEncoder(), 4, lambda: True).stream(loaded)
    streams = [s.get("stream") for s in loaded.segments]
    assert streams.count("frame") == 3 and streams.count("sound") == 3
    assert loaded.note == (
        "only the first 9 s of the frames are indexed (cap of 3 per video); "
        "only the first 10 s of the sound are indexed (cap of 3 per video)"
    )
    last_frame = [s for s in loaded.segments if s.get("stream") == "frame"][-1]
    assert last_frame["end_s"] == pytest.approx(9.0, abs=0.3)  # not the video's end (18 s)


def test_a_pdf_that_is_slow_to_read_stops_at_the_time_cap(run_index, tmp_path: Path) -> None:
    """pypdf bounds the work of one page, not of a document: 2,000 pages sharing one costly
    content stream (a 320 KB file) kept a worker ~5 s a page, hours in all. Past
    CROSSFIND_MAX_DOCUMENT_S no page is begun; what was read is indexed, and the rest said."""
    root = tmp_path / "slow"
    root.mkdir()
    costly_pdf(root / "slow.pdf", 80, 10_000, words="glacier report")
    costly_pdf(root / "blank.pdf", 80, 10_000)
    pdf(root / "fine.pdf", ["a report about fjords"])
    report = run_index(CountingEncoder(), root, max_document_s=0.3, workers=0)
    assert [(Path(s.path).name, s.reason) for s in report.skipped] == [
        ("blank.pdf", "no text read from the PDF within the time cap of 0.3 s (CROSSFIND_MAX_DOCUMENT_S)")
    ]
    (partial,) = report.partial
    assert Path(partial.path).name == "slow.pdf"
    unread = int(partial.reason.split(" of 80 ")[0])
    assert 0 < unread < 80
    assert partial.reason == f"{unread} of 80 page(s) not read within the time cap of 0.3 s (CROSSFIND_MAX_DOCUMENT_S)"
    assert report.by_modality["text"].added == 2


def _white_png(path: Path, width: int, height: int) -> Path:
    """A white RGB PNG written row by row (never held in memory): a few hundred KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(1)
    row = b"\x00" + b"\xff" * (3 * width)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


_RSS_CHILD = """
import sys
import numpy as np
from indexer.loaders import Loaded, LoaderConfig, load, set_config

def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

set_config(LoaderConfig(preprocess_image=lambda im: np.zeros((4, 4, 3), np.float32)))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
before = status_kb("VmRSS")
loaded = load(sys.argv[1], "image")
assert isinstance(loaded, Loaded), loaded
print(loaded.width, loaded.height, (status_kb("VmHWM") - before) // 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_large_png_is_reduced_right_after_decoding(tmp_path: Path) -> None:
    """A PNG within the pixel cap was decoded, rotated and converted at full size (and OCR'd
    from a full copy): a 64-Mpx one took 0.9 GB of a worker. The encoder needs ~448 px and OCR
    1,280, so it is box-reduced first: a 36-Mpx one grew RSS by 412 MB, now 172 (64 Mpx:
    798 -> 337 MB)."""
    path = _white_png(tmp_path / "poster.png", 6000, 6000)
    child = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(path)], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[2], timeout=60,
    )
    assert child.returncode == 0, child.stderr
    width, height, grown_mb = map(int, child.stdout.split())
    assert (width, height) == (6000, 6000)  # the stored size is the file's
    assert grown_mb < 300, f"decoding grew RSS by {grown_mb} MB"


@pytest.mark.parametrize("mode", ["RGB", "P", "1", "I;16", "CMYK"])
def test_a_reduced_image_keeps_its_exif_turn_in_any_mode(mode: str) -> None:
    from PIL import Image

    from search.media import open_image

    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise
    buf = io.BytesIO()
    Image.new(mode, (6000, 2000)).save(buf, "TIFF", exif=exif)
    image = open_image(buf.getvalue(), draft_px=448, reduce_above=2560)
    assert image.size == (1000, 3000) and image.mode == "RGB"  # turned upright, then halved


def _growing_video(path: Path) -> Path:
    """H.264 whose header (its first parameter sets) says 64x48 and whose frames from 10 s on
    are 320x240: a stream may change its size part way, after the pixel cap was checked."""
    import av

    raw = io.BytesIO()
    for (w, h), n in (((64, 48), 10), ((320, 240), 3)):
        part = io.BytesIO()
        with av.open(part, "w", format="h264") as out:
            stream = out.add_stream("libx264", rate=1)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * i % 255, np.uint8), format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        raw.write(part.getvalue())
    raw.seek(0)
    with av.open(raw, format="h264") as src, av.open(str(path), "w") as dst:
        out_stream = dst.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(p for p in src.demux(src.streams.video[0]) if p.size):
            packet.stream, packet.pts, packet.dts, packet.time_base = out_stream, i, i, Fraction(1, 1)
            dst.mux(packet)
    return path


def test_video_frames_that_grow_past_the_pixel_cap_part_way_are_not_decoded(tmp_path: Path) -> None:
    """The cap was checked on the header's size only: frames that grew past it later were
    decoded (a 64x48 header, then 8000x8000 frames: 0.7 GB for four frames, seconds each)."""
    pytest.importorskip("av")
    path = _growing_video(tmp_path / "grows.mkv")
    set_config(LoaderConfig(
        preprocess_image=lambda im: np.zeros((4, 4, 3), np.float32), max_image_pixels=100 * 100,
    ))
    loaded = load(str(path), "video")
    assert isinstance(loaded, Loaded), loaded
    assert [s["start_s"] for s in loaded.segments] == [0.0]  # the frames before 10 s
    assert loaded.note == (
        "video frames of 320x240 are over the cap of 10,000 pixels (CROSSFIND_MAX_IMAGE_PIXELS)"
        " from 10 s: the rest is not indexed"
    )


def test_html_with_text_far_over_the_cap_is_refused_before_parsing(run_index, tmp_path: Path) -> None:
    """The text cap was checked only after parsing, which holds ~5 bytes a byte: 150 MB of
    <p>s (under the tag cap) took 780 MB and 7 s to refuse; now 0.7 s and no tree. A page
    heavy in scripts, styles and comments but light in text still parses."""
    root = tmp_path / "pages"
    root.mkdir()
    (root / "wall.html").write_text("<html><body><p>" + "words " * 2_000 + "</p></body></html>")
    script = "<script>var s = '<p>" + "x" * 50_000 + "</p>';</SCRIPT ><style>p {}</style>"
    comment = f"<!-- {'c' * 20_000} -->"
    (root / "app.html").write_text(
        f"<html><head>{script}{comment}</head><body><main>a short note about otters</main></body></html>"
    )
    report = run_index(CountingEncoder(), root, max_text_chars=1_000)
    assert [(Path(s.path).name, s.reason) for s in report.skipped] == [
        ("wall.html", "text over the cap of 1,000 characters (before parsing)")
    ]
    assert report.by_modality["text"].added == 1  # app.html


def _docx_of(path: Path, paragraphs: list[str]) -> Path:
    """A DOCX (python-docx's own template) whose body is ``paragraphs``, one run each."""
    import zipfile

    template = docx(path.with_suffix(".tmp.docx"), ["x"])
    with zipfile.ZipFile(template) as src:
        parts = {name: src.read(name) for name in src.namelist()}
    template.unlink()
    xml = parts["word/document.xml"].decode()
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    start = xml.index("<w:body>") + len("<w:body>")
    parts["word/document.xml"] = (xml[:start] + body + xml[xml.index("<w:sectPr", start):]).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, blob in parts.items():
            out.writestr(name, blob)
    return path


def test_a_docx_too_heavy_for_the_text_cap_is_refused_before_its_tree_is_built(run_index, tmp_path: Path) -> None:
    """python-docx keeps every XML element of the document (~155 bytes each): a 300 KB DOCX of
    2.7 million tiny paragraphs, under the unpacked-size cap, took 2.1 GB and 96 s before the
    text cap refused it; a streaming count now refuses it in 4 s and 90 MB."""
    root = tmp_path / "docs"
    root.mkdir()
    # (python-docx's template unpacks to ~1 MB: the package cap needs a text cap of 100,000)
    _docx_of(root / "crumbs.docx", ["a"] * 20_000)  # 20,000 characters in 60,000 elements
    _docx_of(root / "long.docx", ["words " * 100] * 190)  # 114,000 characters
    _docx_of(root / "note.docx", ["a short note about otters", "and their dams"])
    report = run_index(CountingEncoder(), root, max_text_chars=100_000)
    assert sorted((Path(s.path).name, s.reason) for s in report.skipped) == [
        ("crumbs.docx", "DOCX refused before parsing: over 50,000 XML elements (0.5 a character of the text cap)"),
        ("long.docx", "text over the cap of 100,000 characters (before parsing)"),
    ]
    assert report.by_modality["text"].added == 1
