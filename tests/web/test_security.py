"""Auth, limits, traversal attempts and malformed input: always a 4xx with a message, never 500."""

from __future__ import annotations

import base64
import os
import shutil

import pytest

from tests.web.conftest import API_KEY, build_corpus, make_client, png_bytes


# -- auth ---------------------------------------------------------------------------------------
def test_writes_need_the_key(client, corpus):
    item = corpus.ids["forest.txt"]
    r = client.delete(f"/api/items/{item}")
    assert r.status_code == 401 and "X-API-Key" in r.json()["message"]
    r = client.delete(f"/api/items/{item}", headers={"X-API-Key": "wrong"})
    assert r.status_code == 403 and r.json() == {"status": 403, "message": "wrong API key"}
    r = client.post("/api/index", headers={"X-API-Key": "nope"})
    assert r.status_code == 403
    assert client.get(f"/api/items/{item}").status_code == 200  # nothing was deleted


def test_writes_are_disabled_without_a_configured_key(corpus):
    with make_client(corpus.db) as c:
        r = c.post("/api/index", headers={"X-API-Key": "anything"})
        assert r.status_code == 403 and "CROSSFIND_API_KEY" in r.json()["message"]


def test_closed_reads_need_the_key_by_header_or_basic_auth(corpus):
    with make_client(corpus.db, api_key=API_KEY, open_reads=False) as c:
        body = {"parts": [{"text": "red"}]}
        r = c.post("/api/search", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert c.get("/").status_code == 401  # the page too (a browser then asks for the key)
        assert c.post("/api/search", json=body, headers={"X-API-Key": API_KEY}).status_code == 200
        basic = base64.b64encode(f"me:{API_KEY}".encode()).decode()
        assert c.get("/?q=red", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # liveness stays open
        # Basic auth is for reads only: browsers replay it on cross-site form posts
        r = c.post("/api/index", headers={"Authorization": f"Basic {basic}"})
        assert r.status_code == 401


def test_delete_forgets_the_item_and_searches_drop_it(tmp_path):
    corpus = build_corpus(tmp_path)
    with make_client(corpus.db, api_key=API_KEY) as c:
        item = corpus.ids["apples.txt"]
        r = c.delete(f"/api/items/{item}", headers={"X-API-Key": API_KEY})
        assert r.status_code == 200, r.text
        assert r.json()["deleted"] == item and r.json()["segments"] == 1
        assert (corpus.files / "apples.txt").exists()  # the file itself stays
        assert c.get(f"/api/items/{item}").status_code == 404
        ids = [
            h["id"]
            for h in c.post("/api/search", json={"parts": [{"text": "apples basket"}]}).json()[
                "results"
            ]
        ]
        assert item not in ids
        assert c.get("/api/stats").json()["items"] == 8
        assert c.delete(f"/api/items/{item}", headers={"X-API-Key": API_KEY}).status_code == 404


# -- traversal and files that changed under the index -------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/api/items/../../etc/passwd",
        "/api/items/..%2F..%2Fetc%2Fpasswd/media",
        "/api/items/%2e%2e/%2e%2e/etc/passwd/media",
        "/api/items/1%00/media",
        "/api/items/%2Fetc%2Fpasswd/media",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_traversal_attempts_never_reach_other_files(client, url):
    r = client.get(url)
    assert 400 <= r.status_code < 500
    assert b"root:" not in r.content


def test_a_file_swapped_for_a_symlink_is_not_followed(tmp_path):
    corpus = build_corpus(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 top secret")
    with make_client(corpus.db) as c:
        path = corpus.files / "ocean.txt"
        path.unlink()
        os.symlink(secret, path)
        r = c.get(f"/api/items/{corpus.ids['ocean.txt']}/media")
        assert r.status_code == 404 and b"secret" not in r.content
        assert "re-run `crossfind index`" in r.json()["message"]
        # a same-size replacement through a symlinked directory is refused too
        shutil.move(str(corpus.files / "red.png"), tmp_path / "elsewhere.png")
        os.symlink(tmp_path / "elsewhere.png", corpus.files / "red.png")
        assert c.get(f"/api/items/{corpus.ids['red.png']}/media").status_code == 404
        assert c.get(f"/api/items/{corpus.ids['red.png']}/thumbnail").status_code == 404


def test_files_indexed_through_a_symlinked_folder_are_served(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")  # e.g. ~/Pictures -> /mnt/photos
    corpus = build_corpus(tmp_path / "link")
    with make_client(corpus.db) as c:
        r = c.get(f"/api/items/{corpus.ids['red.png']}/media")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert c.get(f"/api/items/{corpus.ids['red.png']}/thumbnail").status_code == 200


def test_a_changed_or_deleted_file_is_not_served(tmp_path):
    corpus = build_corpus(tmp_path)
    with make_client(corpus.db) as c:
        (corpus.files / "forest.txt").write_text("different content now, longer than before......")
        assert c.get(f"/api/items/{corpus.ids['forest.txt']}/media").status_code == 404
        (corpus.files / "green.png").unlink()
        assert c.get(f"/api/items/{corpus.ids['green.png']}/media").status_code == 404


def test_local_paths_are_refused_over_the_api(client):
    for part in ({"image_path": "/etc/passwd"}, {"audio_path": "/etc/passwd"}):
        r = client.post("/api/search", json={"parts": [part]})
        assert r.status_code == 422 and "CLI" in r.json()["message"]


# -- limits and malformed input -----------------------------------------------------------------
def test_uploads_over_the_cap_get_413(corpus):
    with make_client(corpus.db, max_upload_mb=0.01) as c:  # 10 kB
        big = os.urandom(12_000)
        r = c.post("/api/search/upload", files={"image": ("x.png", big, "image/png")})
        assert r.status_code == 413 and "cap" in r.json()["message"]
        r = c.post("/api/search", json={"parts": [{"image_b64": base64.b64encode(big).decode()}]})
        assert r.status_code == 413
        r = c.post(
            "/api/search",
            content=b"{" + b" " * 40_000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413 and r.json()["status"] == 413

        def chunks():
            yield b'{"parts": [{"text": "'
            for _ in range(20):
                yield b"a" * 1000
            yield b'"}]}'

        r = c.post("/api/search", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


@pytest.mark.parametrize(
    ("files", "status"),
    [
        ({"image": ("x.png", b"not an image at all", "image/png")}, 415),
        ({"image": ("x.png", png_bytes((1, 2, 3))[:60], "image/png")}, 415),  # truncated
        ({"image": ("x.txt", b"hello", "text/plain")}, 415),  # declared as another kind
        ({"audio": ("x.wav", b"RIFF....WAVEfmt garbage", "audio/wav")}, 415),
        ({"audio": ("x.png", png_bytes((1, 2, 3)), "image/png")}, 415),
        ({"image": ("x.png", b"", "image/png")}, 400),  # empty file: nothing to search for
    ],
)
def test_bad_uploads_get_4xx_with_a_message(client, files, status):
    r = client.post("/api/search/upload", files=files)
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and r.json()["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 422),
        (b"[]", 422),
        (b'{"parts": []}', 422),
        (b'{"parts": [{}]}', 422),
        (b'{"parts": [{"text": "a", "item_id": 1}]}', 422),
        (b'{"parts": [{"text": "a"}], "k": 0}', 422),
        (b'{"parts": [{"text": "a"}], "unknown": 1}', 422),
        (b'{"parts": [{"image_b64": "!!!notbase64"}]}', 400),
        (b'{"parts": [{"image_b64": "aGVsbG8="}]}', 415),
        (b'{"parts": [{"text": "a", "weight": -1}]}', 400),
        (b'{"parts": [{"item_id": 123456789}]}', 404),
        (b'{"parts": [{"item_id": 99999999999999999999999}]}', 422),
        (b'{"parts": [{"text": "a"}], "fusion": "nope"}', 422),
        (b'{"parts": [{"text": "a"}], "filters": {"modality": ["smell"]}}', 422),
    ],
)
def test_malformed_bodies_get_4xx_json(client, body, status):
    r = client.post("/api/search", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and isinstance(r.json()["message"], str)


def test_unknown_routes_answer_in_kind(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.json()["status"] == 404
    r = client.get("/nothing")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "Back to search" in r.text
    r = client.put("/api/search", json={})
    assert r.status_code == 405 and r.json()["status"] == 405
    r = client.options("/api/items/1")  # GET and DELETE live in two routers: both are named
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, HEAD"


def test_no_index_yet_is_a_clear_503(tmp_path):
    from fastapi.testclient import TestClient

    from search.settings import Settings
    from web.app import create_app

    with TestClient(create_app(Settings(db=tmp_path / "none", model="fake-not-loaded"))) as c:
        r = c.post("/api/search", json={"parts": [{"text": "x"}]})
        assert r.status_code == 503 and "crossfind index" in r.json()["message"]
        assert c.get("/api/stats").json()["ready"] is False
        assert c.get("/healthz").json()["ready"] is False
        page = c.get("/")
        assert page.status_code == 200 and "Nothing to search yet" in page.text


# -- the page's own headers ---------------------------------------------------------------------
def test_pages_carry_a_content_security_policy_they_keep(client):
    """Every HTML response (the page, its results partial, an error page) forbids framing by
    other sites, inline script and styles, and type sniffing; the page holds nothing that the
    policy would block (an inline script or style would be refused by the browser)."""
    import re

    pages = [client.get("/"), client.get("/?q=red"), client.get("/nowhere"),
             client.post("/partials/results", data={"text": "red"})]
    for r in pages:
        assert r.headers["content-type"].startswith("text/html"), r.url
        policy = r.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text), "inline script"
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", r.text), "inline style or handler"
    # JSON answers and the API explorer (its scripts come from elsewhere) are left as they were
    search = client.post("/api/search", json={"parts": [{"text": "red"}]})
    assert search.status_code == 200 and "content-security-policy" not in search.headers
    assert "content-security-policy" not in client.get("/docs").headers
