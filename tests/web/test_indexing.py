"""POST /api/index: the real indexer in a background thread while searches keep working."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from search.settings import Settings
from tests.fakes import FakeEncoder
from tests.web.conftest import API_KEY, TEXTS, png_bytes, wav_bytes
from web.app import create_app

KEY = {"X-API-Key": API_KEY}


def _wait(client: TestClient, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/api/index/status").json()
        if status["state"] != "running":
            return status
        time.sleep(0.1)
    raise AssertionError("indexing did not finish")


def test_index_job_builds_the_index_then_searches_see_it(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    for name, text in TEXTS.items():
        (root / name).write_text(text)
    (root / "red.png").write_bytes(png_bytes((220, 20, 20)))
    (root / "low.wav").write_bytes(wav_bytes(120.0))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    settings = Settings(db=tmp_path / "db", api_key=API_KEY, roots=[root], workers=2)
    app = create_app(settings, encoder=FakeEncoder())
    with TestClient(app) as client:
        # before: no index, a clear 503, and the job refuses without the key
        assert client.post("/api/search", json={"parts": [{"text": "red"}]}).status_code == 503
        assert client.post("/api/index").status_code == 401
        r = client.post("/api/index", headers=KEY)
        assert r.status_code == 202 and r.json()["state"] in ("running", "done")
        status = _wait(client)
        assert status["state"] == "done", status
        report = status["report"]
        assert report["by_modality"]["text"]["added"] == len(TEXTS)
        assert report["by_modality"]["image"]["added"] == 1
        assert any(s["path"].endswith("broken.jpg") for s in report["skipped"]), report["skipped"]
        hits = client.post("/api/search", json={"parts": [{"text": "red"}], "k": 3}).json()
        assert hits["results"][0]["path"] == str(root / "red.png")
        assert client.get("/api/stats").json()["items"] == len(TEXTS) + 2, report["skipped"]

        # a second run picks up a new file; searches during the run still answer
        (root / "extra.txt").write_text("zebras grazing on the savanna")
        assert client.post("/api/index", headers=KEY).status_code == 202
        during = client.post("/api/search", json={"parts": [{"text": "red"}]})
        assert during.status_code == 200
        status = _wait(client)
        assert status["report"]["by_modality"]["text"]["added"] == 1
        top = client.post("/api/search", json={"parts": [{"text": "zebras savanna"}]}).json()
        assert top["results"][0]["path"].endswith("extra.txt")


def test_index_job_needs_roots_and_runs_one_at_a_time(tmp_path):
    import threading

    gate = threading.Event()

    def slow_index(roots, index, encoder, settings):  # stands in for a long run
        gate.wait(10)
        return {"roots": [str(r) for r in roots]}

    settings = Settings(db=tmp_path / "db", api_key=API_KEY)
    with TestClient(create_app(settings, encoder=FakeEncoder(), index_fn=slow_index)) as client:
        r = client.post("/api/index", headers=KEY)
        assert r.status_code == 400 and "CROSSFIND_ROOTS" in r.json()["message"]
    settings = Settings(db=tmp_path / "db", api_key=API_KEY, roots=[tmp_path])
    with TestClient(create_app(settings, encoder=FakeEncoder(), index_fn=slow_index)) as client:
        assert client.post("/api/index", headers=KEY).status_code == 202
        r = client.post("/api/index", headers=KEY)
        assert r.status_code == 409 and "already" in r.json()["message"]
        gate.set()
        assert _wait(client)["state"] == "done"
