"""Videos: a frame per scene and sound-track windows, each with its time; hits say
``modality: video``, the stream that matched and ``start_s``/``end_s``; one hit per video by
default; incremental; corrupt, truncated and one-stream videos handled."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from search.engine import Engine
from search.index import Index
from search.query import Filters, Query
from tests.indexer.corpus import CountingEncoder, image
from tests.indexer.videos import colour_scene, make_video, tone

pytest.importorskip("av", reason="PyAV is not installed")

RGB = {"red": (220, 20, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}


def _scenes(*names: str) -> list:
    return [colour_scene(RGB[n], seed=i) for i, n in enumerate(names)]


def _corpus(root: Path) -> dict[str, Path]:
    return {
        "main": make_video(
            root / "main.mp4",
            _scenes("red", "green", "blue"),
            sounds=[tone(300), tone(300), tone(3000)],
        ),
        "mute": make_video(root / "mute.mkv", _scenes("blue", "red"), codec="libvpx"),
        "radio": make_video(root / "radio.mp4", [], sounds=[tone(3000), tone(3000)], video=False),
    }


def _segments(db: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with Index.open(db) as index:
        for seg in sorted(
            index.catalog.segments(index.catalog.segment_ids("video")).values(), key=lambda s: s.id
        ):
            out.setdefault(Path(seg.path).name, []).append(seg)
    return out


def test_a_video_is_frames_per_scene_and_sound_windows_with_times(run_index, settings, tmp_path):
    files = _corpus(tmp_path / "v")
    image(tmp_path / "v" / "photo.png", "green")
    report = run_index(CountingEncoder(), tmp_path / "v")
    assert report.skipped == []
    assert report.by_modality["video"].added == 3 and report.by_modality["image"].added == 1
    segs = _segments(settings.db)
    frames = [(s.start_s, s.end_s) for s in segs["main.mp4"] if s.stream == "frame"]
    assert [round(a) for a, _ in frames] == [0, 3, 6]  # one frame per scene, at its cut
    assert [round(b) for _, b in frames] == [3, 6, 9]
    sound = [(s.start_s, s.end_s) for s in segs["main.mp4"] if s.stream == "sound"]
    assert [a for a, _ in sound] == [0.0, 2.5, 5.0] and sound[-1][1] == pytest.approx(9.0, abs=0.1)
    assert {s.stream for s in segs["mute.mkv"]} == {"frame"}  # no sound track: frames only
    assert {s.stream for s in segs["radio.mp4"]} == {"sound"}  # no picture: sound only
    with Index.open(settings.db) as index:
        engine = Engine(index, CountingEncoder())
        hits = engine.search(Query.text("green", hybrid=False)).hits
        video_hits = [h for h in hits if h.modality == "video"]
        names = [Path(h.path).name for h in video_hits]
        assert names[0] == "main.mp4" and len(names) == len(set(names)) == 3  # one hit per video
        top = video_hits[0]
        assert (top.stream, round(top.start_s), round(top.end_s)) == ("frame", 3, 6)
        out = top.to_json()
        assert out["modality"] == "video" and out["stream"] == "frame" and "start_s" in out
        only = engine.search(
            Query.text("red", hybrid=False, filters=Filters(modality=["video"]))
        ).hits
        assert {h.modality for h in only} == {"video"}
        assert {Path(h.path).name for h in only[:2]} == {"main.mp4", "mute.mkv"}
        assert [round(h.start_s) for h in only if h.path == str(files["main"])] == [0]
        assert [round(h.start_s) for h in only if h.path == str(files["mute"])] == [3]
        high = engine.search(
            Query.text("high", hybrid=False, filters=Filters(modality=["video"]))
        ).hits
        assert high[0].stream == "sound" and high[0].path in (
            str(files["main"]),
            str(files["radio"]),
        )
        ungrouped = engine.search(
            Query.text("blue", hybrid=False, group=False, k=50, filters=Filters(modality=["video"]))
        ).hits
        assert (
            len([h for h in ungrouped if h.path == str(files["main"])]) == 6
        )  # 3 frames, 3 windows
        info = index.info()
        assert info["by_modality"]["video"] == {"items": 3, "vectors": (3 + 3) + 2 + 2}


def test_videos_are_incremental_and_deduplicated(run_index, settings, tmp_path):
    files = _corpus(tmp_path / "v")
    run_index(CountingEncoder(), tmp_path / "v")
    shutil.copy(files["main"], tmp_path / "v" / "copy.mp4")
    enc = CountingEncoder()
    report = run_index(enc, tmp_path / "v")
    assert enc.embedded == {"text": 0, "image": 0, "audio": 0}
    assert (report.by_modality["video"].linked, report.by_modality["video"].unchanged) == (1, 3)
    files["mute"].unlink()
    report = run_index(CountingEncoder(), tmp_path / "v")
    assert report.by_modality["video"].removed == 1
    assert "mute.mkv" not in _segments(settings.db)


def test_a_long_video_streams_through_the_model_with_the_same_segments(
    run_index, settings, tmp_path
):
    names = ["red", "green", "blue"] * 5  # 15 scenes, 45 s: more inputs than a worker decodes
    make_video(tmp_path / "v" / "long.mp4", _scenes(*names), sounds=[tone(300)] * 15)
    report = run_index(CountingEncoder(), tmp_path / "v")
    assert report.skipped == [] and report.by_modality["video"].added == 1
    segs = _segments(settings.db)["long.mp4"]
    frames = [round(s.start_s) for s in segs if s.stream == "frame"]
    assert frames == list(range(0, 45, 3))
    assert len([s for s in segs if s.stream == "sound"]) == 17


def test_bad_videos_are_skipped_with_a_reason(run_index, tmp_path):
    root = tmp_path / "bad"
    good = make_video(root / "good.mp4", _scenes("red", "blue"), sounds=[tone(300), tone(300)])
    (root / "truncated.mp4").write_bytes(good.read_bytes()[:2000])
    (root / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 20)
    (root / "noise.avi").write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST" + b"\x01" * 500)
    report = run_index(CountingEncoder(), root)
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    for name in ("truncated.mp4", "garbage.mp4", "noise.avi"):
        assert reasons.pop(name).startswith(
            ("corrupt or truncated video", "no video to index", "no video or audio stream")
        ), name
    assert reasons == {}
    assert report.by_modality["video"].added == 1


def test_without_an_audio_model_a_video_indexes_its_frames(run_index, settings, tmp_path):
    make_video(tmp_path / "v" / "a.mp4", _scenes("red", "green"), sounds=[tone(300), tone(3000)])
    names = ["red", "green", "blue"] * 5  # long: streamed by the writer
    make_video(tmp_path / "v" / "long.mp4", _scenes(*names), sounds=[tone(300)] * 15)
    enc = CountingEncoder(audio=False)
    report = run_index(enc, tmp_path / "v")
    assert report.skipped == [] and enc.embedded["audio"] == 0
    segs = _segments(settings.db)
    assert {s.stream for s in segs["a.mp4"]} == {"frame"} and len(segs["a.mp4"]) == 2
    assert {s.stream for s in segs["long.mp4"]} == {"frame"} and len(segs["long.mp4"]) == 15


def test_frames_over_the_pixel_cap_are_never_decoded(run_index, settings, tmp_path):
    """The image pixel cap holds for video frames: a video with sound indexes its sound alone,
    one without is skipped naming the cap (a 10,000 x 10,000 video took ~3 s a frame)."""
    root = tmp_path / "big"
    make_video(root / "talk.mp4", _scenes("red", "blue"), sounds=[tone(300), tone(3000)])
    make_video(root / "silent.mkv", _scenes("green", "red"), codec="libvpx")
    report = run_index(CountingEncoder(), root, max_image_pixels=100 * 100)
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons == {"silent.mkv": "video frames of 192x144 are over the cap of 10,000 pixels "
                       "(CROSSFIND_MAX_IMAGE_PIXELS)"}
    assert {s.stream for s in _segments(settings.db)["talk.mp4"]} == {"sound"}
