"""API abuse: long audio, huge text and images at the caps, against a real ``crossfind serve``
(uvicorn in its own process, the bundled models), watching the server's CPU after each answer:
no query may leave work running once it has been answered (a 504 included)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

TIMEOUT_S = 6.0  # the server's request timeout in this suite
AUDIO_CAP_S = 900.0  # high on purpose: 15 min of windows take far longer than TIMEOUT_S
PIXEL_CAP = 4000 * 4000
IDLE_CPU_S_PER_S = 0.1

pytestmark = [pytest.mark.models, pytest.mark.slow]


def cpu_after(pid: int, wait_s: float = 2.0, window_s: float = 2.0) -> float:
    """CPU seconds per second the process spends in the ``window_s`` starting ``wait_s`` after
    now (call it right after the answer arrived)."""
    from bench.api import cpu_s

    time.sleep(wait_s)
    before = cpu_s(pid)
    time.sleep(window_s)
    return (cpu_s(pid) - before) / window_s


def flac_bytes(seconds: float, sr: int = 8000) -> bytes:
    """A loud two-tone recording in FLAC. The tones repeat exactly every 40 samples, which
    FLAC's predictor all but removes: an hour at 8 kHz is about 16 MB, written in a second."""
    import soundfile as sf

    t = np.arange(40) / sr
    period = 8000 * (0.5 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 400 * t))
    x = np.tile(np.round(period).astype(np.int16), int(seconds * sr) // 40)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def flat_png(width: int, height: int) -> bytes:
    """A large but tiny-on-the-wire PNG (a flat colour compresses to almost nothing)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 200)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``crossfind serve`` over a small real index stamped with the bundled encoder."""
    from bench.api import serving
    from bench.store import build_index, clustered

    db = tmp_path_factory.mktemp("abuse") / "index"
    build_index(db, clustered(200, seed=5))
    env = {
        "CROSSFIND_REQUEST_TIMEOUT_S": str(TIMEOUT_S),
        "CROSSFIND_MAX_QUERY_AUDIO_S": str(AUDIO_CAP_S),
        "CROSSFIND_MAX_IMAGE_PIXELS": str(PIXEL_CAP),
    }
    with serving(db, env=env) as running:
        yield running


def _post(base: str, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{base}/api/search/upload", timeout=60, **kwargs)  # type: ignore[arg-type]


def test_an_hour_of_audio_past_the_timeout_is_cancelled(server):
    base, pid = server
    data = flac_bytes(3600)
    assert len(data) < 20_000_000  # under the upload cap: the server must take it
    t0 = time.monotonic()
    r = _post(base, files={"audio": ("hour.flac", data, "audio/flac")})
    took = time.monotonic() - t0
    assert r.status_code == 504, r.text
    assert "CROSSFIND_REQUEST_TIMEOUT_S" in r.json()["message"]
    assert took < TIMEOUT_S + 5  # the upload and a loaded machine
    # the 15 minutes it was allowed would take far longer to embed: the work must have stopped
    assert cpu_after(pid) < IDLE_CPU_S_PER_S
    assert httpx.get(f"{base}/healthz").status_code == 200


def test_text_over_the_cap_is_refused_and_at_the_cap_answered(server):
    base, pid = server
    words = " ".join(f"w{i}" for i in range(2000))  # every word a distinct keyword
    at_cap = (words * 5)[:10_000]
    r = _post(base, data={"text": at_cap})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{base}/api/search", json={"parts": [{"text": "x" * 10_001}]})
    assert r.status_code == 422
    assert "10000 characters" in r.json()["message"]
    r = httpx.post(f"{base}/api/search", json={"parts": [{"text": "y" * 5_000_000}]}, timeout=60)
    assert r.status_code == 422
    assert cpu_after(pid) < IDLE_CPU_S_PER_S


def test_images_at_the_pixel_cap_are_answered_and_over_it_refused(server):
    base, pid = server
    r = _post(base, files={"image": ("cap.png", flat_png(4000, 4000), "image/png")})
    assert r.status_code == 200, r.text
    r = _post(base, files={"image": ("over.png", flat_png(4001, 4000), "image/png")})
    assert r.status_code == 413
    assert "over the cap" in r.json()["message"]
    assert cpu_after(pid) < IDLE_CPU_S_PER_S


def test_long_query_audio_uses_the_first_seconds_and_reports_it(corpus):
    """In-process (the fake encoder): the cap and its report in the query echo, also when the
    vector comes from the server's cache the second time."""
    from fastapi.testclient import TestClient

    from search.engine import Engine
    from search.index import Index
    from search.settings import Settings
    from tests.fakes import FakeEncoder
    from tests.web.conftest import wav_bytes
    from web.app import create_app

    engine = Engine(Index.open(corpus.db), FakeEncoder(), max_query_audio_s=3.0)
    with TestClient(create_app(Settings(db=corpus.db), engine=engine)) as client:
        for _ in range(2):
            r = client.post(
                "/api/search/upload", files={"audio": ("a.wav", wav_bytes(120.0, 20.0), "audio/wav")}
            )
            assert r.status_code == 200, r.text
            part = r.json()["query"]["parts"][0]
            assert part["audio_truncated"] is True and part["audio_used_s"] == 3.0
        short = client.post(
            "/api/search/upload", files={"audio": ("b.wav", wav_bytes(120.0, 2.0), "audio/wav")}
        )
        assert "audio_truncated" not in short.json()["query"]["parts"][0]


def test_query_images_have_their_own_lower_cap_on_decoded_pixels(corpus):
    """In-process: a 20-Mpx PNG (60 KB on the wire, ~90 MB to decode; 64 Mpx: ~250 MB, and 32
    searches may run at once) is refused as a query though under the index's 64-Mpx cap; a
    24-Mpx JPEG photo passes (it decodes at a quarter of its size)."""
    from fastapi.testclient import TestClient

    from search.engine import Engine
    from search.index import Index
    from search.settings import Settings
    from tests.fakes import FakeEncoder
    from web.app import create_app

    png = flat_png(5000, 4000)
    buf = io.BytesIO()
    Image.new("RGB", (6000, 4000), (90, 140, 200)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    default = Settings().max_query_image_pixels
    assert default == 16_000_000  # the documented default
    for cap, png_status in [(default, 413), (21_000_000, 200)]:
        engine = Engine(Index.open(corpus.db), FakeEncoder(), max_query_image_pixels=cap)
        with TestClient(create_app(Settings(db=corpus.db), engine=engine)) as client:
            r = client.post("/api/search/upload", files={"image": ("big.png", png, "image/png")})
            assert r.status_code == png_status, r.text
            if png_status == 413:
                assert "CROSSFIND_MAX_QUERY_IMAGE_PIXELS" in r.json()["message"]
            files = {"image": ("photo.jpg", jpeg, "image/jpeg")}
            assert client.post("/api/search/upload", files=files).status_code == 200
