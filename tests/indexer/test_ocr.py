"""Text inside images (RapidOCR): stored as passages of the image, found by keyword and by
meaning, hits say ``ocr: true``; ``--ocr auto`` reads only images its quick check sees text in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.engine import Engine
from search.index import Index
from search.query import Query
from tests.indexer.corpus import CountingEncoder, image
from tests.indexer.documents import text_image

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _needs_rapidocr() -> None:
    pytest.importorskip("rapidocr_onnxruntime", reason="rapidocr-onnxruntime is not installed")


def _corpus(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    sign = root / "sign.png"
    text_image("PLATFORM SEVEN DEPARTURES").save(sign)
    receipt = root / "receipt.jpg"
    text_image("Total amount 42 euros", font_px=36).save(receipt, quality=92)
    return {
        "sign": sign,
        "receipt": receipt,
        "plain": image(root / "plain.png", "green", (320, 240)),
    }


def test_text_in_images_is_found_by_keyword_and_meaning_and_says_ocr(run_index, settings, tmp_path):
    files = _corpus(tmp_path / "pics")
    report = run_index(CountingEncoder(), tmp_path / "pics", ocr="on")
    assert report.skipped == [] and report.ocr_read == 3 and report.ocr_seconds > 0
    with Index.open(settings.db) as index:
        engine = Engine(index, CountingEncoder())
        hit = engine.search(Query.text("platform seven")).hits[0]
        assert hit.path == str(files["sign"]) and hit.modality == "image"
        assert hit.ocr and "PLATFORM SEVEN" in hit.snippet.upper() and hit.extra.get("keyword")
        assert hit.to_json()["ocr"] is True
        meaning = engine.search(Query.text("amount euros total", hybrid=False)).hits[0]
        assert meaning.path == str(files["receipt"]) and meaning.ocr
        # the image itself is still a vector of its own: a colour query finds the green photo
        green = engine.search(Query.text("green", hybrid=False)).hits[0]
        assert green.path == str(files["plain"]) and not green.ocr
        assert "ocr" not in green.to_json()


def test_ocr_auto_reads_only_images_with_text_and_off_reads_none(run_index, settings, tmp_path):
    _corpus(tmp_path / "pics")
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(3):  # camera-sized smooth gradients with noise: no text to find
        ramp = np.linspace(0, 255, 1280)[None, :, None] * np.ones((960, 1, 3))
        Image.fromarray(np.clip(ramp + rng.normal(0, 6, ramp.shape), 0, 255).astype(np.uint8)).save(
            tmp_path / "pics" / f"gradient{i}.png"
        )
    report = run_index(CountingEncoder(), tmp_path / "pics", ocr="auto")
    # large images are checked first (nothing found on the gradients); small ones are read at
    # once, since reading an image without text costs no more than the check
    assert report.ocr_checked == 3 and report.ocr_read == 3
    with Index.open(settings.db) as index:
        texts = [
            s.text for s in index.catalog.segments(index.catalog.segment_ids()).values() if s.ocr
        ]
    assert len(texts) == 2


def test_ocr_off_reads_nothing(run_index, tmp_path):
    _corpus(tmp_path / "pics")
    report = run_index(CountingEncoder(), tmp_path / "pics", ocr="off")
    assert (report.ocr_checked, report.ocr_read, report.by_modality["image"].vectors) == (0, 0, 3)


def test_text_in_a_video_frame_is_found_at_its_moment(run_index, settings, tmp_path):
    pytest.importorskip("av", reason="PyAV is not installed")
    from tests.indexer.videos import colour_scene, make_video

    sign = np.asarray(text_image("HARBOUR FERRY TIMETABLE", (640, 240)))
    make_video(
        tmp_path / "v" / "trip.mp4",
        [colour_scene((30, 200, 40)), sign],
        scene_s=2.0,
        size=(640, 240),
    )
    report = run_index(CountingEncoder(), tmp_path / "v", ocr="on")
    assert report.skipped == [] and report.ocr_read == 2
    with Index.open(settings.db) as index:
        hit = Engine(index, CountingEncoder()).search(Query.text("ferry timetable")).hits[0]
    assert (hit.modality, hit.stream, hit.ocr, round(hit.start_s)) == ("video", "frame", True, 2)
    assert "FERRY" in hit.snippet.upper()
