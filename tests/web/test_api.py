"""The JSON API through TestClient over a real (fake-encoder) index."""

from __future__ import annotations

import base64

from tests.web.conftest import COLOURS, png_bytes, wav_bytes


def _search(client, **body):
    return client.post("/api/search", json=body)


def test_text_search_returns_ranked_results_with_urls(client, corpus):
    r = _search(client, parts=[{"text": "red"}], k=3)
    assert r.status_code == 200
    body = r.json()
    top = body["results"][0]
    assert top["id"] == corpus.ids["red.png"] and top["modality"] == "image"
    assert top["path"].endswith("red.png")
    assert top["media_url"] == f"/api/items/{top['id']}/media"
    assert top["thumbnail_url"] == f"/api/items/{top['id']}/thumbnail"
    assert len(body["results"]) == 3 and len({h["id"] for h in body["results"]}) == 3
    assert body["took_ms"] >= 0 and body["query"]["k"] == 3


def test_text_hits_carry_snippets_and_audio_hits_their_window(client, corpus):
    body = _search(client, parts=[{"text": "forest pines"}], filters={"modality": ["text"]}).json()
    assert body["results"][0]["id"] == corpus.ids["forest.txt"]
    assert "pines" in body["results"][0]["snippet"]
    assert {h["modality"] for h in body["results"]} == {"text"}
    audio = _search(client, parts=[{"text": "low"}], filters={"modality": ["audio"]}).json()
    hit = audio["results"][0]
    assert hit["path"].endswith("low.wav")
    assert hit["end_s"] > hit["start_s"] >= 0
    assert "thumbnail_url" not in hit


def test_base64_image_query_finds_the_same_colour(client, corpus):
    b64 = base64.b64encode(png_bytes((200, 20, 20))).decode()
    body = _search(client, parts=[{"image_b64": b64}], filters={"modality": ["image"]}).json()
    assert body["results"][0]["id"] == corpus.ids["red.png"]


def test_more_like_this_ranks_the_item_itself_first(client, corpus):
    item = corpus.ids["blue.jpg"]
    body = _search(client, parts=[{"item_id": item}], k=2).json()
    assert body["results"][0]["id"] == item
    assert body["results"][0]["score"] > 0.99


def test_paging_with_offset_continues_the_ranking(client):
    full = [h["id"] for h in _search(client, parts=[{"text": "apples"}], k=6).json()["results"]]
    page2 = [
        h["id"]
        for h in _search(client, parts=[{"text": "apples"}], k=3, offset=3).json()["results"]
    ]
    assert page2 == full[3:6]


def test_upload_variant_takes_files_and_weights(client, corpus):
    r = client.post(
        "/api/search/upload",
        data={"modality": ["image"], "k": "2"},
        files={"image": ("q.png", png_bytes((10, 210, 30)), "image/png")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["id"] == corpus.ids["green.png"]
    r = client.post(
        "/api/search/upload",
        data={"modality": ["audio"]},
        files={"audio": ("q.wav", wav_bytes(5000.0, 3.0), "audio/wav")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["path"].endswith("high.wav")
    # text pulls towards "red", a negative-weighted green image pushes green away
    r = client.post(
        "/api/search/upload",
        data={"text": "red", "modality": ["image"], "image_weight": "-0.5"},
        files={"image": ("g.png", png_bytes((10, 210, 30)), "image/png")},
    )
    ids = [h["id"] for h in r.json()["results"]]
    assert ids[0] == corpus.ids["red.png"] and ids[-1] == corpus.ids["green.png"]


def test_item_metadata_and_unknown_items(client, corpus):
    item = corpus.ids["red.png"]
    body = client.get(f"/api/items/{item}").json()
    assert body["modality"] == "image" and body["width"] == 64 and body["height"] == 48
    assert body["path"].endswith("red.png") and body["media_url"].endswith("/media")
    for bad in ("999999", str(2**63 - 1)):
        r = client.get(f"/api/items/{bad}")
        assert r.status_code == 404
        assert r.json() == {"status": 404, "message": f"no indexed item with id {bad}"}
    for bad in ("-1", str(2**63), "abc", "1.5"):
        r = client.get(f"/api/items/{bad}")
        assert r.status_code == 422 and r.json()["status"] == 422


def test_media_is_served_with_the_right_type_and_ranges(client, corpus):
    r = client.get(f"/api/items/{corpus.ids['red.png']}/media")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (corpus.files / "red.png").read_bytes()
    r = client.get(f"/api/items/{corpus.ids['blue.jpg']}/media")
    assert r.headers["content-type"] == "image/jpeg"
    whole = (corpus.files / "low.wav").read_bytes()
    r = client.get(f"/api/items/{corpus.ids['low.wav']}/media", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == whole[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    assert r.headers["content-type"] == "audio/wav" and r.headers["accept-ranges"] == "bytes"
    # an indexed HTML-looking text is served as plain text, never as a page that runs
    r = client.get(f"/api/items/{corpus.ids['notes.txt']}/media")
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"] == "sandbox"
    r = client.get(
        f"/api/items/{corpus.ids['low.wav']}/media", headers={"Range": "bytes=999999999-"}
    )
    assert r.status_code == 416


def test_thumbnails_are_made_once_and_cached(client, corpus):
    item = corpus.ids["green.png"]
    cached = corpus.db / "thumbnails"
    r = client.get(f"/api/items/{item}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    files = list(cached.glob("*.jpg"))
    assert any(f.read_bytes() == r.content for f in files)
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    assert client.get(f"/api/items/{item}/thumbnail").content == r.content
    assert {f: f.stat().st_mtime_ns for f in cached.glob("*.jpg")} == mtimes
    r = client.get(f"/api/items/{corpus.ids['ocean.txt']}/thumbnail")
    assert r.status_code == 404 and "only image items" in r.json()["message"]


def test_stats_and_health(client):
    stats = client.get("/api/stats").json()
    assert stats["ready"] is True
    assert stats["items"] == 9 and stats["vectors"] == 11
    assert stats["by_modality"]["image"] == {"items": len(COLOURS), "vectors": len(COLOURS)}
    assert stats["encoder"] == "fake" and stats["index_bytes"] > 0
    assert stats["indexing"]["state"] == "idle"
    assert client.get("/healthz").json() == {"status": "ok", "ready": True, "encoder": "fake"}


def test_openapi_documents_the_api_with_examples(client):
    schema = client.get("/openapi.json").json()
    assert {
        "/api/search",
        "/api/search/upload",
        "/api/items/{item_id}/media",
        "/api/stats",
        "/api/index",
        "/healthz",
    } <= set(schema["paths"])
    body = schema["paths"]["/api/search"]["post"]["requestBody"]["content"]["application/json"]
    assert "text" in body["examples"] and "mixed" in body["examples"]
    part = schema["components"]["schemas"]["QueryPart"]["properties"]
    assert "image_b64" in part and "image_path" not in part  # local paths are CLI-only
    assert client.get("/docs").status_code == 200


def test_min_score_auto_keeps_only_the_matches_and_sort_orders_them(client):
    full = _search(client, parts=[{"text": "green forest"}], k=20).json()["results"]
    body = _search(client, parts=[{"text": "green forest"}], k=20, min_score="auto").json()
    auto = body["results"]
    assert 0 < len(auto) < len(full) and {h["id"] for h in auto} <= {h["id"] for h in full}
    assert body["query"]["min_score"] == "auto"
    named = _search(client, parts=[{"text": "green forest"}], k=20, min_score="auto", sort="name").json()
    assert [h["path"] for h in named["results"]] == sorted(h["path"] for h in auto)
    assert named["query"]["sort"] == "name"
    assert _search(client, parts=[{"text": "x"}], min_score="most").status_code == 422
    assert _search(client, parts=[{"text": "x"}], sort="size").status_code == 422
