"""Hostile requests to the search API: bodies of millions of values, filters SQL cannot take,
images and sounds that decode badly or hugely. Each gets a 4xx naming the problem (never a
500), at a cost bounded by what a real query needs."""

from __future__ import annotations

import base64
import io
import json
import struct
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from search.engine import Engine
from search.index import Index
from search.settings import Settings
from tests.fakes import FakeEncoder
from tests.web.conftest import png_bytes, wav_bytes
from web.app import create_app
from web.json_body import MAX_JSON_VALUES


def _post(client, body: bytes | str, **headers: str):
    raw = body.encode() if isinstance(body, str) else body
    return client.post("/api/search", content=raw, headers={"content-type": "application/json", **headers})


# -- the JSON body ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        # each refused value cost validation an error record: 29 MB of these took 17 GB
        '{"parts": [{"text": "a"}], "filters": {"ext": [' + ",".join(["0"] * 20_000) + "]}}",
        '{"parts": [{"text": "a"}], ' + ",".join(f'"k{i}": 0' for i in range(20_000)) + "}",
        '{"parts": [' + ",".join(['{"text": "a"}'] * 20_000) + "]}",
        '{"parts": [{"text": "a"}], "x": [' + ",".join(['"s"'] * 20_000) + "]}",
    ],
    ids=["list-of-numbers", "unknown-keys", "parts", "list-of-strings"],
)
def test_a_body_of_too_many_values_is_refused_unparsed(client, body):
    for headers in ({}, {"content-type": ""}):  # FastAPI parses JSON also with no type given
        r = _post(client, body, **headers)
        assert r.status_code == 413, r.text[:200]
        assert f"more than {MAX_JSON_VALUES:,} values" in r.json()["message"]


def test_a_large_real_query_is_not_counted_by_the_commas_in_its_strings(client, corpus):
    text = ("apples, [pie] {basket}, " * 500)[:10_000]  # 1,250 commas and brackets a part
    body = {
        "parts": [{"text": text} for _ in range(15)]
        + [{"image_b64": base64.b64encode(png_bytes((220, 30, 30))).decode()}],
        "filters": {"ext": ["txt", *(f"e{i}" for i in range(255))]},
    }
    r = _post(client, json.dumps(body))
    assert r.status_code == 200, r.text[:200]
    assert r.json()["results"][0]["id"] == corpus.ids["apples.txt"]


# -- filters ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filters", "field", "says"),
    [
        # one SQL condition an extension: SQLite stops at 1000 levels (was 500)
        ({"ext": [f"e{i}" for i in range(1100)]}, "filters.ext", "at most 256"),
        ({"ext": ["txt\x00"]}, "filters.ext", "NUL"),  # was 500: NUL in the SQL text
        ({"path_prefix": "/\x00"}, "filters.path_prefix", "NUL"),
        ({"path_glob": "*\x00*"}, "filters.path_glob", "NUL"),
        ({"ext": ["a" * 60_000]}, "filters.ext", "at most 255"),  # was 500: LIKE pattern too complex
        ({"path_glob": "*" + "a" * 60_000}, "filters.path_glob", "at most 4096"),
    ],
)
def test_filters_no_path_can_match_get_422(client, filters, field, says):
    r = _post(client, json.dumps({"parts": [{"text": "apples"}], "filters": filters}))
    assert r.status_code == 422, r.text[:200]
    assert r.json()["message"].startswith(field) and says in r.json()["message"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('"filters": {"min_duration_s": 1e400}', "filters.min_duration_s"),  # was 500: "no such column: inf"
        ('"filters": {"max_duration_s": NaN}', "filters.max_duration_s"),
        ('"min_score": NaN', "min_score"),  # was 200: a NaN threshold kept everything
        ('"min_score": 1e400', "min_score"),
    ],
)
def test_numbers_that_are_not_finite_get_422(client, raw, field):
    r = _post(client, '{"parts": [{"text": "apples"}], ' + raw + "}")
    assert r.status_code == 422, r.text[:200]
    assert r.json()["message"].startswith(field) and "finite" in r.json()["message"]
    r = client.post("/api/search/upload", data={"text": "apples", "min_score": "nan"})
    assert r.status_code == 422 and "finite" in r.json()["message"]


def test_path_filters_of_undecodable_names_are_searched_and_echoed_escaped(client, corpus):
    # "\udcff" is byte 0xff of a name that is not UTF-8 (search.paths); JSON can carry it
    for filters in ({"path_prefix": f"{corpus.files}/\udcff"}, {"path_glob": "*\udcff*"},
                    {"ext": ["\udcff"]}):
        r = _post(client, json.dumps({"parts": [{"text": "apples"}], "filters": filters}))
        assert r.status_code == 200, r.text[:200]  # was 500: the filter could not be encoded
        assert r.json()["results"] == []
        echo = r.json()["query"]["filters"]
        assert "\\xff" in json.dumps(echo) and "\udcff" not in json.dumps(echo, ensure_ascii=False)


def test_extension_filters_take_like_wildcards_literally(client):
    for ext, found in ((["_xt"], 0), (["%"], 0), (["TXT"], 4)):
        r = _post(client, json.dumps({"parts": [{"text": "apples"}], "k": 20,
                                      "filters": {"ext": ext}, "hybrid": False}))
        assert r.status_code == 200 and len(r.json()["results"]) == found, ext


# -- query text ---------------------------------------------------------------------------------
def test_long_query_words_leave_no_memory_behind(client):
    """Every query word's rarity was cached (65,536 of them): 16 parts of 10,000-character
    words a request, and 4,096 requests kept 650 MB for good. Words longer than any in the
    vocabulary are rare without a lookup and are not kept."""
    import gc
    import random

    rng = random.Random(7)

    def word(n: int) -> str:
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=n))

    r = _post(client, json.dumps({"parts": [{"text": word(9_999)} for _ in range(16)]}))
    assert r.status_code == 200, r.text[:200]  # such queries answer; here they cost nothing
    from search.lexicon import rarity

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert all(rarity(word(2_000)) == rarity(word(2_000)) for _ in range(1_000))
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 500_000, f"{kept / 1e6:.1f} MB kept"  # was 4 MB: 2,000 words of 2 kB


# -- query media --------------------------------------------------------------------------------
def tiff_pointing_past_its_end() -> bytes:
    """A valid TIFF whose next-directory pointer leads past the end of the file: Pillow opens it,
    then fails with TypeError ("Missing dimensions") rather than an OSError."""
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (200, 30, 30)).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, ifd)[0]
    struct.pack_into("<I", data, ifd + 2 + 12 * entries, len(data) + 1000)
    return bytes(data)


def test_an_image_that_breaks_the_decoder_in_an_odd_way_is_415(client):
    r = client.post("/api/search/upload", files={"image": ("x.tif", tiff_pointing_past_its_end(), "image/tiff")})
    assert r.status_code == 415, r.text[:200]  # was 500 (TypeError)
    assert r.json()["message"].startswith("not a decodable image")


def flac_of(seconds: float, rate: int, channels: int) -> bytes:
    """A loud constant in FLAC: FLAC stores it in a few bytes a block, whatever the rate."""
    import soundfile as sf

    buf = io.BytesIO()
    block = np.full((1 << 20, channels), 8000, np.int16)
    with sf.SoundFile(buf, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as fh:
        left = int(seconds * rate)
        while left > 0:
            fh.write(block[:left])
            left -= len(block)
    return buf.getvalue()


def test_a_sound_of_many_channels_at_a_high_rate_is_decoded_in_bounded_memory(corpus):
    """8 channels at 655 kHz, cut at the query cap (4 s here): the source's samples are never
    held whole, only the 16 kHz mono the model reads (was 170 MB for these 4 s, and 1.2 GB for
    the default 30 s, from a 176 kB upload)."""
    data = flac_of(4.5, 655_350, 8)
    assert len(data) < 100_000
    engine = Engine(Index.open(corpus.db), FakeEncoder(), max_query_audio_s=4.0)
    from fastapi.testclient import TestClient

    with TestClient(create_app(Settings(db=corpus.db), engine=engine)) as client:
        tracemalloc.start()
        try:
            r = client.post("/api/search/upload", files={"audio": ("bomb.flac", data, "audio/flac")})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert r.status_code == 200, r.text[:200]
    assert r.json()["query"]["parts"][0]["audio_used_s"] == 4.0
    assert peak < 30_000_000, f"{peak / 1e6:.0f} MB"


@pytest.mark.parametrize("channels", [3, 18_177, 9_633_793])
def test_a_sound_whose_header_lies_about_its_channels_is_415(client, channels):
    """An AU header's channel count, which libsndfile refuses over 1024 and audioread's
    reader then believes: its blocks no longer divide into frames (was ValueError, 500), or a
    block of 1024 frames is gigabytes (MemoryError)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, (np.sin(np.arange(32_000) / 5) * 0.4).astype(np.float32), 16_000, format="AU", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    struct.pack_into(">I", data, 20, channels)  # magic, offset, size, encoding, rate, channels
    r = client.post("/api/search/upload", files={"audio": ("x.au", bytes(data), "audio/basic")})
    if channels == 3:  # a plausible header: the samples are read as 3 channels
        assert r.status_code == 200, r.text[:200]
    else:
        assert r.status_code == 415, r.text[:200]
        assert "not decodable audio" in r.json()["message"]


@pytest.mark.parametrize("fmt", ["PCX", "SGI", "TGA", "PPM", "IM", "EPS"])
def test_query_images_are_decoded_only_by_the_common_decoders(client, fmt):
    """Pillow opens some forty formats, EPS through Ghostscript (when installed); a query
    from the network may use the ones crossfind indexes (and AVIF): the rest are refused by
    name before any decoder runs (PCX, SGI, TGA, PPM and IM were decoded: 200)."""
    image = Image.new("RGB", (40, 30), (220, 30, 30))
    buf = io.BytesIO()
    image.save(buf, fmt)
    r = client.post("/api/search/upload", files={"image": (f"x.{fmt.lower()}", buf.getvalue(), "image/x-any")})
    assert r.status_code == 415, r.text[:200]
    assert "send JPEG, PNG, GIF, WebP, BMP, TIFF or AVIF" in r.json()["message"]
    for ok in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"):
        buf = io.BytesIO()
        image.save(buf, ok)
        r = client.post("/api/search/upload", files={"image": (f"x.{ok.lower()}", buf.getvalue(), "image/x-any")})
        assert r.status_code == 200, (ok, r.text[:200])


# -- cached thumbnails ---------------------------------------------------------------------------
def test_a_thumbnail_left_by_another_catalog_is_never_served_for_this_one(tmp_path):
    """Content ids restart with a new catalog (--reindex, a restored backup) while thumbnails
    made for the old one may linger, e.g. one rendered as the reindex began. Another image that
    got the same id must show itself, not the old picture (was: the old one, by id alone)."""
    from tests.web.conftest import build_corpus, make_client

    corpus = build_corpus(tmp_path)
    with make_client(corpus.db, api_key="k") as client:
        item = client.get(f"/api/items/{corpus.ids['green.png']}").json()
        stale = corpus.db / "thumbnails"
        stale.mkdir()
        lingering = {f"{item['content_id']}.jpg", f"{item['content_id']}-0000000000000000.jpg"}
        for name in lingering:
            Image.new("RGB", (32, 24), (220, 30, 30)).save(stale / name, "JPEG")  # someone red
        r = client.get(f"/api/items/{item['id']}/thumbnail")
        assert r.status_code == 200
        red, green, _ = Image.open(io.BytesIO(r.content)).convert("RGB").resize((1, 1)).getpixel((0, 0))
        assert green > 150 and red < 100, (red, green)
        made = {p.name for p in stale.iterdir()} - lingering
        assert len(made) == 1
        assert client.delete(f"/api/items/{item['id']}", headers={"X-API-Key": "k"}).status_code == 200
        assert {p.name for p in stale.iterdir()} == lingering  # its own is forgotten with it


def test_a_sound_whose_header_says_zero_hertz_is_415(client):
    """libsndfile refuses a WAV at 0 Hz and audioread's reader takes it (resampling from 0 Hz
    was ValueError, 500)."""
    data = bytearray(wav_bytes(440.0, seconds=2.0))
    struct.pack_into("<II", data, 24, 0, 0)  # sample rate, byte rate
    r = client.post("/api/search/upload", files={"audio": ("x.wav", bytes(data), "audio/wav")})
    assert r.status_code == 415, r.text[:200]
    assert "not decodable audio" in r.json()["message"]


# -- who may ask ---------------------------------------------------------------------------------
def _app(corpus, **settings):
    return create_app(Settings(db=corpus.db, **settings), engine=Engine(Index.open(corpus.db), FakeEncoder()))


def test_a_page_renamed_to_localhost_cannot_read_the_files(corpus):
    """DNS rebinding: another site's name made to resolve to 127.0.0.1 is same-origin with the
    open API in the user's browser, but its requests carry that name in Host (was: served)."""
    from fastapi.testclient import TestClient

    media = f"/api/items/{corpus.ids['ocean.txt']}/media"
    with TestClient(_app(corpus, allowed_hosts=None), base_url="http://127.0.0.1:8000") as c:
        assert c.get(media).status_code == 200
        for host in ("localhost:8000", "[::1]:8000", "LOCALHOST"):
            assert c.get(media, headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
            r = c.get(media, headers={"host": host})
            assert r.status_code == 400 and "waves" not in r.text, host
            assert "CROSSFIND_ALLOWED_HOSTS" in r.json()["message"]
        assert c.get("/?q=ocean", headers={"host": "evil.example"}).status_code == 400
    # listening on the network the names are the admin's to set; by default any is answered
    with TestClient(_app(corpus, host="0.0.0.0", allowed_hosts=None)) as c:
        assert c.get(media, headers={"host": "photos.lan"}).status_code == 200
    with TestClient(_app(corpus, host="0.0.0.0", allowed_hosts=["photos.lan"])) as c:
        assert c.get(media, headers={"host": "photos.lan:8000"}).status_code == 200
        assert c.get(media, headers={"host": "other.lan"}).status_code == 400


def test_serve_workers_answer_to_the_names_of_the_address_given(monkeypatch):
    """Worker processes build their app from the environment: --host must reach them, or a
    server on 0.0.0.0 would answer loopback names only (every request from the network: 400)."""
    import uvicorn

    import cli
    from web.app import allowed_hosts

    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    monkeypatch.delenv("CROSSFIND_ALLOWED_HOSTS")
    for name in ("CROSSFIND_HOST", "CROSSFIND_DB", "CROSSFIND_ONNX_THREADS"):  # serve sets them:
        monkeypatch.delenv(name, raising=False)  # restored after the test
    monkeypatch.setenv("CROSSFIND_API_KEY", "k")
    assert cli.main(["serve", "--host", "0.0.0.0", "--workers", "2", "--db", "/nonexistent"]) == 0
    assert ran["app"] == "web.app:create_app" and ran["workers"] == 2
    assert allowed_hosts(Settings()) is None  # what each worker builds: any name answered


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-32"])
def test_values_cannot_hide_in_a_body_sent_as_utf16_or_utf32(client, encoding):
    """json.loads reads UTF-16 and UTF-32 too, where U+2200's bytes hold a quote (00 22): two
    such characters hid 20,000 values between them from a byte scan."""
    body = '{"parts": [{"text": "a"}], "filters": {"ext": ["\u2200", ' + ",".join(["0"] * 20_000) + ', "\u2200"]}}'
    r = _post(client, body.encode(encoding))
    assert r.status_code == 413, r.text[:200]
    ok = '{"parts": [{"text": "apples \u2200"}], "filters": {"ext": ["txt"]}}'
    assert _post(client, ok.encode(encoding)).status_code == 200
