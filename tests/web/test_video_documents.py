"""The API over videos and documents: video hits carry their stream and moment, the media
route serves the video with ranges, the thumbnail is the matching frame; a PDF hit its page."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.web.conftest import full_disk_for_new_files, make_client
from tests.web.media_corpus import build

pytest.importorskip("av", reason="PyAV is not installed")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("media"))


def test_a_video_hit_has_its_moment_media_with_ranges_and_a_frame_thumbnail(db):
    with make_client(db) as client:
        body = client.post(
            "/api/search",
            json={"parts": [{"text": "green"}], "k": 5, "filters": {"modality": ["video"]}},
        ).json()
        hit = body["results"][0]
        assert (hit["modality"], hit["stream"], round(hit["start_s"])) == ("video", "frame", 3)
        assert len(body["results"]) == 1  # one hit per video
        whole = client.get(hit["media_url"])
        assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
        part = client.get(hit["media_url"], headers={"Range": "bytes=10-109"})
        assert part.status_code == 206 and part.content == whole.content[10:110]
        thumb = client.get(hit["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        pixels = np.asarray(Image.open(io.BytesIO(thumb.content)).convert("RGB"), dtype=float)
        r, g, b = pixels.reshape(-1, 3).mean(axis=0)
        assert g > 150 and r < 90  # the green scene's frame, not the red one
        item = client.get(hit["item_url"]).json()
        assert item["stream"] == "frame" and item["modality"] == "video"
        sound = client.post(
            "/api/search",
            json={
                "parts": [{"text": "high"}],
                "k": 1,
                "group": False,
                "filters": {"modality": ["video"]},
            },
        ).json()
        assert (
            sound["results"][0]["stream"] == "sound" and "thumbnail_url" not in sound["results"][0]
        )


def test_a_pdf_hit_has_its_page_and_is_served_as_pdf(db):
    with make_client(db) as client:
        hit = client.post(
            "/api/search", json={"parts": [{"text": "walrus chapter"}], "k": 1}
        ).json()["results"][0]
        assert Path(hit["path"]).name == "paper.pdf" and hit["page"] == 2
        r = client.get(hit["media_url"])
        assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF")


def test_a_frame_thumbnail_that_cannot_be_cached_is_still_served(tmp_path, monkeypatch):
    db = build(tmp_path)
    full_disk_for_new_files(monkeypatch)
    with make_client(db) as client:
        hit = client.post(
            "/api/search",
            json={"parts": [{"text": "green"}], "k": 1, "filters": {"modality": ["video"]}},
        ).json()["results"][0]
        r = client.get(hit["thumbnail_url"])
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    assert list((db / "thumbnails").iterdir()) == []
