"""A full disk under the server: the index job reports it and the server keeps answering;
thumbnails that cannot be cached are still served."""

from __future__ import annotations

import sqlite3

from fastapi.testclient import TestClient

from search.catalog import Catalog
from search.settings import Settings
from tests.fakes import FakeEncoder
from tests.web.conftest import API_KEY, TEXTS, build_corpus, full_disk_for_new_files, make_client
from tests.web.test_indexing import _wait
from web.app import create_app

KEY = {"X-API-Key": API_KEY}


def _sqlite_full(*_args: object, **_kwargs: object) -> None:
    raise sqlite3.OperationalError("database or disk is full")


def test_index_job_on_a_full_disk_fails_clearly_and_the_server_stays_up(tmp_path, monkeypatch):
    root, db = tmp_path / "files", tmp_path / "db"
    root.mkdir()
    for name, body in TEXTS.items():
        (root / name).write_text(body)
    settings = Settings(db=db, api_key=API_KEY, roots=[root], workers=0)
    with TestClient(create_app(settings, encoder=FakeEncoder())) as client:
        assert client.post("/api/index", headers=KEY).status_code == 202
        assert _wait(client)["state"] == "done"
        (root / "extra.txt").write_text("zebras grazing on the savanna")
        # SQLite's own error on a full disk, at the commit of the new file's batch
        monkeypatch.setattr(Catalog, "add_contents", _sqlite_full)
        assert client.post("/api/index", headers=KEY).status_code == 202
        status = _wait(client)
        assert status["state"] == "failed"
        assert status["error"] == (
            f"no space left on device writing {db}; free space and re-run: nothing indexed so "
            "far is lost"
        )
        monkeypatch.undo()
        assert not [p.name for p in db.iterdir() if p.name.endswith(".tmp")]
        # the index is as it was: the new file's rows were rolled back with its vectors
        assert client.get("/api/stats").json()["items"] == len(TEXTS)
        hits = client.post("/api/search", json={"parts": [{"text": "zebras savanna"}]})
        assert hits.status_code == 200
        assert all(not h["path"].endswith("extra.txt") for h in hits.json()["results"])
        # with space again, the next run completes
        assert client.post("/api/index", headers=KEY).status_code == 202
        assert _wait(client)["state"] == "done"
        top = client.post("/api/search", json={"parts": [{"text": "zebras savanna"}]}).json()
        assert top["results"][0]["path"].endswith("extra.txt")


def test_a_thumbnail_that_cannot_be_cached_is_still_served(tmp_path, monkeypatch):
    corpus = build_corpus(tmp_path)
    full_disk_for_new_files(monkeypatch)
    with make_client(corpus.db) as client:
        r = client.get(f"/api/items/{corpus.ids['red.png']}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content[:2] == b"\xff\xd8"
    assert list((corpus.db / "thumbnails").iterdir()) == []  # no cached file, no temp file


def test_a_reader_connection_failing_on_a_full_disk_answers_507_not_500(tmp_path, monkeypatch):
    """A new SQLite reader must map the catalog's -shm file; on a full disk that fails with
    SQLITE_IOERR_SHMSIZE ("disk I/O error"): the API says the disk is full (was 500)."""
    import sqlite3

    from search.catalog import Catalog

    def shm_full(*_args: object) -> None:
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorcode = 4874  # what sqlite3 sets for SQLITE_IOERR_SHMSIZE
        raise exc

    corpus = build_corpus(tmp_path)
    with make_client(corpus.db) as c:
        item = c.post("/api/search", json={"parts": [{"text": "dog"}]}).json()["results"][0]["id"]
        monkeypatch.setattr(Catalog, "segments", shm_full)
        r = c.get(f"/api/items/{item}")
        assert r.status_code == 507, r.text
        assert r.json()["message"].startswith("no space left on device to open the index at")
