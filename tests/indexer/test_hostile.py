"""Bad input never aborts a run: each hostile file is skipped with its reason, the rest indexed."""

import importlib.util
import os

import numpy as np
import pytest

from search.index import Index
from tests.indexer.corpus import CountingEncoder, image, png_bomb, text, wav

HAVE_AUDIO = importlib.util.find_spec("search.audio") is not None


@pytest.fixture
def hostile(tmp_path):
    c = tmp_path / "c"
    good = [
        image(c / "red.jpg", "red"),
        image(c / "blue.webp", "blue"),
        image(c / "green.gif", "green"),
        image(c / "red.bmp", "red", seed=1),
        image(c / "blue.tiff", "blue", seed=1),
        text(c / "notes.md", "# Notes\n\nplain words about the sea"),
        image(c / "png-named.txt", "green", seed=2),  # content wins: indexed as an image
    ]
    (c / "utf16.txt").write_bytes("words in utf sixteen".encode("utf-16"))
    good.append(c / "utf16.txt")
    bad = {}
    (c / "empty.jpg").write_bytes(b"")
    bad["empty.jpg"] = "empty file"
    whole = image(c / "whole.jpg", "red", size=(400, 300)).read_bytes()
    (c / "whole.jpg").unlink()
    (c / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    bad["truncated.jpg"] = "corrupt or truncated image"
    (c / "random.jpg").write_bytes(np.random.default_rng(7).bytes(4096))
    bad["random.jpg"] = "wrong extension: content is data of no known format, not image"
    (c / "words.png").write_text("this is text, not a picture")
    bad["words.png"] = "wrong extension: content is text, not image"
    (c / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me br\u00fbl\u00e9e".encode("latin-1"))
    bad["latin1.txt"] = "not UTF-8 text"
    png_bomb(c / "bomb.png")
    bad["bomb.png"] = "decompression bomb refused"
    text(c / "huge.txt", "word " * 30_000)  # 150 kB: over the 0.1 MB cap set below
    bad["huge.txt"] = "over the size cap"
    (c / "sound.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64)
    bad["sound.wav"] = "undecodable audio" if HAVE_AUDIO else "no audio encoder"
    os.symlink(c, c / "loop")  # a symlink loop back to the root
    os.symlink(c / "nowhere.jpg", c / "dangling.jpg")
    bad["dangling.jpg"] = "broken symlink"
    text(c / ".hidden.txt", "secret words")  # skipped silently (hidden)
    (c / "sheet.xlsx").write_bytes(b"PK\x03\x04")  # ignored: not a type crossfind indexes
    locked = text(c / "locked.txt", "cannot read me")
    locked.chmod(0)
    readable_anyway = os.access(locked, os.R_OK)  # root reads through chmod 000
    if not readable_anyway:
        bad["locked.txt"] = "unreadable: Permission denied"
    else:
        good.append(locked)
    yield c, good, bad
    locked.chmod(0o644)


def test_hostile_files_are_skipped_with_reasons_and_good_files_indexed(hostile, settings, run_index):
    root, good, bad = hostile
    enc = CountingEncoder()
    report = run_index(enc, root, max_file_mb=0.1)
    reasons = {os.path.basename(s.path): s.reason for s in report.skipped}
    assert set(reasons) == set(bad), reasons
    for name, reason in bad.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert report.ignored == 1
    n_images = sum(p.suffix != ".txt" and p.suffix != ".md" or p.name == "png-named.txt" for p in good)
    assert report.by_modality["image"].added == n_images == enc.embedded["image"]
    assert report.by_modality["text"].added == len(good) - n_images
    with Index.open(settings.db) as index:
        assert index.info()["items"] == len(good)
        kinds = {
            os.path.basename(i.path): i.modality
            for i in index.catalog.segments(index.catalog.segment_ids().tolist()).values()
        }
    assert kinds["png-named.txt"] == "image" and kinds["utf16.txt"] == "text"
    assert ".hidden.txt" not in kinds


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_keeps_the_rest_of_the_run(tmp_path, run_index):
    locked = text(tmp_path / "c" / "locked.txt", "secret")
    text(tmp_path / "c" / "open.txt", "public")
    locked.chmod(0)
    try:
        report = run_index(CountingEncoder(), tmp_path / "c")
    finally:
        locked.chmod(0o644)
    assert [s.reason for s in report.skipped] == ["unreadable: Permission denied"]
    assert report.by_modality["text"].added == 1


def test_audio_is_skipped_without_an_audio_encoder(tmp_path, run_index):
    wav(tmp_path / "c" / "tone.wav")
    text(tmp_path / "c" / "a.txt", "words")
    report = run_index(CountingEncoder(audio=False), tmp_path / "c")
    assert [(os.path.basename(s.path), s.reason) for s in report.skipped] == [
        ("tone.wav", "no audio encoder")
    ]
    assert report.by_modality["text"].added == 1


@pytest.mark.skipif(not HAVE_AUDIO, reason="search.audio is not there yet")
def test_audio_is_windowed_when_the_encoder_has_audio(tmp_path, settings, run_index):
    wav(tmp_path / "c" / "tone.wav", seconds=12.0)
    enc = CountingEncoder()
    report = run_index(enc, tmp_path / "c")
    a = report.by_modality["audio"]
    assert a.added == 1 and a.vectors == enc.embedded["audio"] >= 4  # 5 s windows, 2.5 s hop
    with Index.open(settings.db) as index:
        infos = sorted(index.catalog.segments(index.catalog.segment_ids().tolist()).values(),
                       key=lambda i: i.start_s)
    assert infos[0].start_s == pytest.approx(0.0, abs=0.1)
    assert infos[-1].end_s == pytest.approx(12.0, abs=0.1)
    assert infos[0].duration_s == pytest.approx(12.0, abs=0.01)


class _CrashOnRed(CountingEncoder):
    """Its image preprocessing kills the worker process on red images, as a decoder segfault
    would (never in the test process itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.main_pid = os.getpid()

    def preprocess_image(self, image):
        mean = super().preprocess_image(image)
        if os.getpid() != self.main_pid and int(np.argmax(mean)) == 0:
            os._exit(70)
        return mean


def test_a_file_that_kills_its_decoder_is_skipped_and_the_rest_indexed(tmp_path, run_index):
    image(tmp_path / "c" / "a-red.png", "red")
    for i in range(6):
        image(tmp_path / "c" / f"b-blue{i}.png", "blue", seed=i)
        text(tmp_path / "c" / f"t{i}.txt", f"document number {i}")
    enc = _CrashOnRed()
    report = run_index(enc, tmp_path / "c", workers=2)
    assert [(os.path.basename(s.path), s.reason) for s in report.skipped] == [
        ("a-red.png", "the decoder crashed on this file")
    ]
    assert report.by_modality["image"].added == 6 and report.by_modality["text"].added == 6
