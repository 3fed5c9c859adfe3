import numpy as np
import pytest
from PIL import Image

from indexer.loaders import Loaded, LoaderConfig, Skip, load, probe, set_config
from tests.fakes import FakeEncoder


def test_a_large_rotated_jpeg_is_decoded_reduced_but_stored_at_its_shown_size(tmp_path):
    pixels = np.zeros((1500, 2400, 3), np.uint8)
    pixels[:, :1200] = (220, 20, 30)  # left half red, right half blue
    pixels[:, 1200:] = (20, 40, 230)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated a quarter turn: 1500 wide, 2400 high
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=90, exif=exif)
    seen = []

    def preprocess(image):
        seen.append(image.size)
        return FakeEncoder().preprocess_image(image)

    set_config(LoaderConfig(preprocess_image=preprocess, image_draft_px=448))
    out = load(str(path), "image")
    assert isinstance(out, Loaded)
    assert (out.width, out.height) == (1500, 2400)
    assert seen == [(750, 1200)]  # JPEG decoded at 1/2 scale: short side 750 >= 448, rotated
    assert out.sha256 == probe(str(path)).sha256


def test_text_is_split_into_overlapping_passages_with_offsets(tmp_path):
    words = [f"w{i}" for i in range(250)]
    path = tmp_path / "a.txt"
    path.write_text("  " + " ".join(words))
    set_config(LoaderConfig(preprocess_image=FakeEncoder().preprocess_image,
                            passage_words=100, passage_overlap=20))
    out = load(str(path), "text")
    assert isinstance(out, Loaded)
    assert [s["text"].split()[0] for s in out.segments] == ["w0", "w80", "w160"]
    raw = path.read_text()
    for seg in out.segments:
        assert raw[seg["char_start"] : seg["char_end"]] == seg["text"]
    assert isinstance(load(str(tmp_path / "missing.txt"), "text"), Skip)


def test_text_over_the_character_cap_is_skipped_without_decoding(tmp_path):
    set_config(LoaderConfig(preprocess_image=FakeEncoder().preprocess_image, max_text_chars=100))
    (tmp_path / "long.txt").write_text("word " * 30)  # 150 characters
    (tmp_path / "huge.txt").write_text("word " * 200)  # 1000 bytes: over 4 bytes x 100
    for name in ("long.txt", "huge.txt"):
        out = load(str(tmp_path / name), "text")
        assert isinstance(out, Skip) and out.reason == "text over the cap of 100 characters"


def test_a_long_recording_keeps_its_first_windows_and_says_so(tmp_path):
    pytest.importorskip("search.audio")
    from tests.indexer.corpus import wav

    path = wav(tmp_path / "long.wav", seconds=20.0)
    set_config(LoaderConfig(preprocess_image=FakeEncoder().preprocess_image, max_audio_windows=3))
    out = load(str(path), "audio")
    assert isinstance(out, Loaded)
    assert [s["start_s"] for s in out.segments] == pytest.approx([0.0, 2.5, 5.0], abs=0.05)
    assert out.note == "only the first 10 s of the recording are indexed (window cap)"
    assert out.duration_s == pytest.approx(20.0, abs=0.01)


def test_a_long_recording_is_left_to_the_writer_to_stream(tmp_path):
    pytest.importorskip("search.audio")
    from tests.indexer.corpus import wav

    path = wav(tmp_path / "long.wav", seconds=20.0)
    set_config(LoaderConfig(preprocess_image=FakeEncoder().preprocess_image, stream_audio_after=2))
    out = load(str(path), "audio")
    assert isinstance(out, Loaded) and out.streamed is not None
    assert out.inputs == [] and out.segments == []  # no samples travel back from the worker
    spans = [(w.start_s, w.end_s) for w in out.streamed.windows()]
    assert spans[0] == pytest.approx((0.0, 5.0), abs=0.05) and len(spans) == 7
    assert out.note is None and out.duration_s == pytest.approx(20.0, abs=0.01)


def test_streamed_recordings_are_indexed_window_by_window(tmp_path, monkeypatch):
    pytest.importorskip("search.audio")
    from indexer import loaders
    from indexer.pipeline import index_paths
    from search.index import Index
    from search.settings import get_settings
    from tests.indexer.corpus import wav

    wav(tmp_path / "c" / "long.wav", seconds=20.0)
    wav(tmp_path / "c" / "short.wav", freq=300.0, seconds=3.0)
    monkeypatch.setattr(loaders.LoaderConfig, "__init__", _with_stream_after(2))
    enc = FakeEncoder()
    index = Index.open_for_write(tmp_path / "db", enc.id, enc.dim)
    report = index_paths([tmp_path / "c"], index, enc, get_settings(workers=0, batch_size=3),
                         progress=False)
    assert report.skipped == []
    infos = index.catalog.segments(index.catalog.segment_ids().tolist())
    starts = sorted(i.start_s for i in infos.values() if i.path.endswith("long.wav"))
    assert starts == pytest.approx([0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0], abs=0.05)
    assert sorted(index.store.ids().tolist()) == sorted(infos)  # one vector per window
    index.close()


def _with_stream_after(n: int):
    original = LoaderConfig.__init__

    def init(self, *args, **kwargs):
        kwargs.setdefault("stream_audio_after", n)
        original(self, *args, **kwargs)

    return init
