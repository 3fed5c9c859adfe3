"""The CLI over videos and documents: ``--ocr``, the report's OCR counts, ``info`` counting
videos, ``search --modality video --json`` with the stream and moment, a PDF hit's page."""

from __future__ import annotations

import json

import pytest

import cli
from tests.indexer.documents import pdf, text_image
from tests.indexer.videos import colour_scene, make_video, tone


def _run(capsys, *argv: object) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().out


def test_index_info_and_search_over_videos_and_documents(tmp_path, capsys, monkeypatch):
    pytest.importorskip("av", reason="PyAV is not installed")
    monkeypatch.setenv("CROSSFIND_EXTRA_ENCODERS", "tests.fakes:register")
    root = tmp_path / "c"
    scenes = [colour_scene(c, seed=i) for i, c in enumerate([(220, 20, 30), (30, 200, 40)])]
    make_video(root / "clip.mp4", scenes, sounds=[tone(300), tone(3000)])
    pdf(root / "paper.pdf", ["first page", "the narwhal section"])
    db = tmp_path / "db"
    code, out = _run(capsys, "index", root, "--db", db, "--model", "fake", "--ocr", "off", "--json")
    report = json.loads(out)
    assert code == 0 and report["skipped"] == []
    assert (
        report["by_modality"]["video"]["added"] == 1 and report["by_modality"]["text"]["added"] == 1
    )
    assert report["ocr"] == {"checked": 0, "read": 0, "seconds": 0.0}
    code, out = _run(capsys, "info", "--db", db, "--json")
    assert json.loads(out)["by_modality"]["video"] == {"items": 1, "vectors": 2 + 2}
    code, out = _run(capsys, "search", "green", "--modality", "video", "--db", db, "--json")
    hit = json.loads(out)["results"][0]
    assert (hit["modality"], hit["stream"], round(hit["start_s"]), round(hit["end_s"])) == (
        "video",
        "frame",
        3,
        6,
    )
    code, out = _run(capsys, "search", "narwhal", "--db", db, "--json")
    assert json.loads(out)["results"][0]["page"] == 2
    code, out = _run(capsys, "search", "narwhal", "--db", db)
    assert "(page 2)" in out


@pytest.mark.slow
def test_index_with_ocr_on_reports_what_it_read(tmp_path, capsys, monkeypatch):
    pytest.importorskip("rapidocr_onnxruntime", reason="rapidocr-onnxruntime is not installed")
    monkeypatch.setenv("CROSSFIND_EXTRA_ENCODERS", "tests.fakes:register")
    root = tmp_path / "c"
    root.mkdir()
    text_image("MOUNTAIN CABIN RENTALS").save(root / "poster.png")
    db = tmp_path / "db"
    code, out = _run(capsys, "index", root, "--db", db, "--model", "fake", "--ocr", "on", "--json")
    assert code == 0 and json.loads(out)["ocr"]["read"] == 1
    code, out = _run(capsys, "search", "cabin rentals", "--db", db, "--json")
    hit = json.loads(out)["results"][0]
    assert hit["ocr"] is True and hit["modality"] == "image" and "CABIN" in hit["snippet"].upper()
