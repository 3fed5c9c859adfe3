"""Serving: the model loads once in the lifespan, request timeouts, and the serve command."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from search.encoders import registry
from search.settings import Settings
from tests.fakes import FakeEncoder
from web.app import create_app


@pytest.fixture()
def fake_family(monkeypatch):  # noqa: ANN001, ANN201
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
