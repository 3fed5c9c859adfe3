"""Audio decoding, trimming and streaming windows (no model needed)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from search.audio import (
    SR,
    audio_duration,
    decode_audio_bytes,
    iter_windows,
    load_audio,
    window_spans,
    windows_of,
)
from search.encoders.audio import TARGET_RMS_DB, normalize_loudness
from search.errors import UnsupportedMedia


def tone(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def padded(sound: np.ndarray, sr: int, lead_s: float, tail_s: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead_s * sr), np.float32), sound, np.zeros(int(tail_s * sr), np.float32)])


def test_window_spans_cover_the_clip_and_end_flush():
    assert window_spans(0.0, 3.0, 5.0, 2.5) == [(0.0, 3.0)]
    spans = window_spans(1.0, 13.0, 5.0, 2.5)
    assert spans[0] == (1.0, 6.0) and spans[-1] == (8.0, 13.0)
    assert all(b - a == pytest.approx(5.0) for a, b in spans)
    assert window_spans(0.0, 10.0, 5.0, 2.5) == [(0.0, 5.0), (2.5, 7.5), (5.0, 10.0)]


@pytest.mark.parametrize("sr,channels,fmt", [(44_100, 2, "wav"), (8_000, 1, "flac"), (22_050, 2, "ogg"),
                                             (44_100, 1, "mp3")])
def test_odd_rates_and_stereo_become_16k_mono_windows_in_file_time(tmp_path, sr, channels, fmt):
    sound = padded(tone(8.0, sr), sr, lead_s=2.0, tail_s=2.0)
    data = np.stack([sound] * channels, axis=1) if channels > 1 else sound
    path = tmp_path / f"a.{fmt}"
    sf.write(path, data, sr)
    windows = list(iter_windows(path, 5.0, 2.5))
    # the 2 s of leading and trailing silence are trimmed; times stay in the file's timeline
    # (mp3 encoders add a little padding in front, hence the tolerance)
    assert windows[0].start_s == pytest.approx(2.0, abs=0.1)
    assert windows[-1].end_s == pytest.approx(10.0, abs=0.1)
    assert [len(w.samples) for w in windows] == [5 * SR] * len(windows)
    assert audio_duration(path) == pytest.approx(12.0, abs=0.1)
    mono = load_audio(path)
    assert mono.ndim == 1 and len(mono) == pytest.approx(12 * SR, abs=0.02 * SR)
    # the streamed windows hold the same samples as decoding the whole file at once
    if fmt in ("wav", "flac"):
        start = round(windows[0].start_s * SR)
        np.testing.assert_allclose(windows[0].samples, mono[start : start + 5 * SR], atol=2e-3)


def test_in_memory_clip_windows_are_trimmed_and_timed():
    clip = padded(tone(3.0, SR), SR, lead_s=1.0, tail_s=0.5)
    (window,) = windows_of(clip)
    assert window.start_s == pytest.approx(1.0, abs=0.02)
    assert window.end_s == pytest.approx(4.0, abs=0.02)


def test_clipped_input_is_decoded_and_normalised(tmp_path):
    square = np.clip(tone(4.0, SR, amp=3.0), -1.0, 1.0)  # hard-clipped, full scale
    path = tmp_path / "clipped.wav"
    sf.write(path, square, SR, subtype="PCM_16")
    (window,) = list(iter_windows(path))
    out = normalize_loudness(window.samples)
    rms_db = 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    assert np.isfinite(out).all() and rms_db == pytest.approx(TARGET_RMS_DB, abs=0.1)


def test_quiet_input_gain_is_capped():
    quiet = tone(1.0, SR, amp=1e-3)  # -63 dBFS RMS: would need +43 dB
    gain = np.abs(normalize_loudness(quiet)).max() / np.abs(quiet).max()
    assert gain == pytest.approx(10 ** (30 / 20), rel=1e-3)
    capped = np.abs(normalize_loudness(quiet, max_gain_db=6.0)).max() / np.abs(quiet).max()
    assert capped == pytest.approx(10 ** (6 / 20), rel=1e-3)


@pytest.mark.parametrize("name,content,reason", [
    ("silent.flac", "silent", "silent"),
    ("zero.wav", "zero", "no samples"),
    ("empty.wav", b"", "empty"),
    ("corrupt.wav", b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 20, "corrupt"),
    ("truncated.flac", "truncated", "truncated.flac"),
])
def test_bad_files_raise_unsupported_media_with_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    if content == "silent":
        sf.write(path, np.zeros(SR * 2, np.float32), SR)
    elif content == "zero":
        sf.write(path, np.zeros((0, 1), np.float32), SR)
    elif content == "truncated":
        sf.write(tmp_path / "full.flac", tone(3.0, SR), SR)
        path.write_bytes((tmp_path / "full.flac").read_bytes()[:100])
    else:
        path.write_bytes(content)
    with pytest.raises(UnsupportedMedia, match=reason):
        list(iter_windows(path))


def test_unknown_container_is_refused_with_a_fix(tmp_path):
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))
    with pytest.raises(UnsupportedMedia) as err:
        list(iter_windows(path))
    assert "voice.m4a" in err.value.message


def test_query_bytes_decode_and_bad_bytes_are_refused(tmp_path):
    path = tmp_path / "q.wav"
    sf.write(path, np.stack([tone(1.0, 44_100)] * 2, axis=1), 44_100)
    wave = decode_audio_bytes(path.read_bytes())
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == SR
    for bad in (b"", b"not audio at all" * 10):
        with pytest.raises(UnsupportedMedia):
            decode_audio_bytes(bad)
    with pytest.raises(UnsupportedMedia, match="silent"):
        windows_of(np.zeros(SR, np.float32))


def test_long_file_streams_with_bounded_memory(tmp_path):
    """10 minutes at 44.1 kHz: decoded whole it would take 106 MB (float32, 16 kHz: 38 MB);
    streaming keeps the peak allocation to a few windows and blocks."""
    path = tmp_path / "long.wav"
    sr, minutes = 44_100, 10
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 1, "PCM_16") as fh:
        for _ in range(minutes):
            fh.write((0.1 * rng.standard_normal(sr * 60)).astype(np.float32))
    tracemalloc.start()
    count, last_end = 0, 0.0
    for w in iter_windows(path, 5.0, 2.5):
        count += 1
        last_end = w.end_s
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == (minutes * 60 - 5) / 2.5 + 1
    assert last_end == pytest.approx(minutes * 60, abs=0.05)
    assert peak < 12e6, f"peak {peak / 1e6:.1f} MB while streaming"


def test_query_decoding_stops_at_the_cap_and_says_so(tmp_path):
    from search.audio import decode_audio_prefix

    path = tmp_path / "long.mp3"
    sf.write(path, tone(180.0, 8000), 8000, format="MP3")
    wave, more = decode_audio_prefix(path.read_bytes(), 10.0)
    assert more and len(wave) == 10 * SR
    wave, more = decode_audio_prefix(path.read_bytes(), 200.0)
    assert not more and abs(len(wave) / SR - 180.0) < 0.2  # MP3 frames pad the end a little
    short = tmp_path / "short.flac"
    sf.write(short, tone(4.0, 16_000), 16_000)
    wave, more = decode_audio_prefix(short.read_bytes(), 4.0)  # exactly the cap: nothing cut
    assert not more and len(wave) == 4 * SR


def test_a_cut_decoder_is_closed_not_drained():
    """audioread's ffmpeg process ends when its block generator is closed: the prefix reader
    must close it rather than read an hour it will not use."""
    from search.audio import _read_prefix
    from search.deadline import NO_DEADLINE

    pulled, closed = [], []

    def endless():
        try:
            while True:
                pulled.append(1)
                yield np.ones((1000, 2), np.float32)
        finally:
            closed.append(True)

    samples, more = _read_prefix(endless(), 1000, 2.5, NO_DEADLINE)
    assert more and samples.shape == (40_000,)  # 2.5 s, as 16 kHz mono
    assert len(pulled) == 3 and closed == [True]


def test_cancelled_query_audio_stops_between_batches():
    from search.audio import embed_clip
    from search.deadline import Deadline
    from search.errors import RequestTimeout
    from tests.fakes import FakeEncoder

    calls = []

    class Counting(FakeEncoder):
        def encode_audio(self, waveforms):
            calls.append(len(waveforms))
            deadline.cancel()  # the web layer gave up while this batch ran
            return super().encode_audio(waveforms)

    deadline = Deadline(None)
    with pytest.raises(RequestTimeout):
        embed_clip(Counting(), tone(120.0, SR), deadline=deadline)
    assert calls == [2]  # one batch of 2 windows, not the clip's 47
