"""Serving: the model loads once in the lifespan, request timeouts, and the serve command."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from search.encoders import registry
from search.settings import Settings
from tests.fakes import FakeEncoder
from web.app import create_app


@pytest.fixture()
def fake_family(monkeypatch):
    """Registers the fake encoder under its id, counting how often one is built."""
    built: list[FakeEncoder] = []

    def factory(spec: str, cache_dir: object) -> FakeEncoder:
        built.append(FakeEncoder())
        return built[-1]

    registry._ensure_builtins()
    monkeypatch.setitem(registry._FACTORIES, "fake", factory)
    monkeypatch.setattr(registry, "_CACHE", {})
    return built


def test_lifespan_opens_the_index_and_loads_the_encoder_once(corpus, fake_family):
    app = create_app(Settings(db=corpus.db))  # nothing injected: the real serving path
    assert fake_family == []  # building the app loads nothing
    with TestClient(app) as client:
        assert len(fake_family) == 1  # loaded at startup, before any request
        assert client.get("/healthz").json() == {"status": "ok", "ready": True, "encoder": "fake"}
        for text in ("red", "green", "blue"):
            r = client.post("/api/search", json={"parts": [{"text": text}]})
            assert r.json()["results"][0]["path"].endswith(
                f"{text}.png" if text != "blue" else "blue.jpg"
            )
        assert len(fake_family) == 1


def test_a_search_over_the_request_timeout_gets_504(corpus, fake_family):
    with TestClient(create_app(Settings(db=corpus.db, request_timeout_s=1e-6))) as client:
        r = client.post("/api/search", json={"parts": [{"text": "red"}]})
        assert r.status_code == 504
        assert "CROSSFIND_REQUEST_TIMEOUT_S" in r.json()["message"]


def test_serve_command_is_registered():
    from cli import build_parser

    args = build_parser().parse_args(["serve", "--db", "/tmp/x", "--port", "8123"])
    assert args.command == "serve" and args.port == 8123 and args.db == "/tmp/x"
    assert args.http_workers == 1


def test_serve_workers_are_server_processes_not_indexing_workers(monkeypatch):
    from cli import build_parser
    from cli.common import settings_from

    monkeypatch.setenv("CROSSFIND_WORKERS", "3")
    args = build_parser().parse_args(["serve", "--workers", "2"])
    assert args.http_workers == 2
    assert settings_from(args).workers == 3  # POST /api/index keeps its own setting


def test_repeated_parts_are_embedded_once(client):
    import base64

    from tests.web.conftest import png_bytes

    cache = client.app.state.services.vectors
    image = base64.b64encode(png_bytes((10, 10, 200))).decode()
    body = {"parts": [{"text": "green forest"}, {"image_b64": image, "weight": 0.5}], "k": 4}
    first = client.post("/api/search", json=body).json()["results"]
    misses, hits = cache.misses, cache.hits
    # the next page and a filter chip reuse both vectors
    client.post("/api/search", json={**body, "offset": 4})
    again = client.post("/api/search", json=body).json()["results"]
    assert (cache.misses, cache.hits) == (misses, hits + 4)
    assert [h["id"] for h in again] == [h["id"] for h in first]
    client.post("/api/search", json={"parts": [{"item_id": first[0]["id"]}]})
    assert cache.misses == misses  # item parts are looked up, never cached


def test_concurrent_text_queries_share_model_calls():
    import threading
    import time

    import numpy as np

    from web.batching import TextBatcher

    enc = FakeEncoder()
    sizes: list[int] = []

    def slow_batch(texts):
        sizes.append(len(texts))
        time.sleep(0.05)
        return enc.encode_text(texts)

    batcher = TextBatcher(slow_batch, max_batch=8)
    texts = [f"query number {i}" for i in range(20)]
    out: dict[str, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda t=t: out.__setitem__(t, batcher.encode(t))) for t in texts
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(out) == sorted(texts)
    for text in texts:  # every caller got the vector of its own text
        np.testing.assert_allclose(out[text], enc.encode_text([text])[0], rtol=1e-6)
    assert sum(sizes) == 20 and len(sizes) < 20 and max(sizes) <= 8
    assert batcher.encode("alone") is not None and sizes[-1] == 1  # idle: runs at once


def test_a_failing_model_call_fails_its_whole_round():
    from search.errors import ModelUnavailable
    from web.batching import TextBatcher

    def broken(texts):
        raise ModelUnavailable("weights missing")

    batcher = TextBatcher(broken)
    with pytest.raises(ModelUnavailable):
        batcher.encode("x")
    assert batcher.calls == 1 and not batcher._busy  # the next caller is not blocked
