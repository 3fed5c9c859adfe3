"""The catalog on both engines: Alembic versions the schema (and adopts catalogs made before
it), the catalog URL is recorded without its password, one writer per PostgreSQL catalog,
and concurrent write transactions neither collide nor tear."""

from __future__ import annotations

import json
import sqlite3
import threading

import numpy as np
import pytest
from sqlalchemy.engine import make_url

from search import migrate
from search.catalog import Catalog, NewContent, SegmentIn
from search.dialect import CatalogTarget, glob_regex, parse_catalog
from search.engine import Engine
from search.errors import BadRequest, Conflict, IndexLocked, ServiceUnavailable
from search.index import CATALOG, MANIFEST, Index
from search.query import Query
from tests.fakes import FakeEncoder

ENC = FakeEncoder(dim=16)


def _open(catalog_url: str | None, tmp_path) -> Catalog:
    if catalog_url is None:
        return Catalog(tmp_path / "catalog.sqlite3")
    return Catalog(CatalogTarget(url=parse_catalog(catalog_url)))


def _item(i: int, n_segments: int = 2) -> NewContent:
    segments = [SegmentIn(text=f"passage {j} of item {i}") for j in range(n_segments)]
    return NewContent(f"{i:064d}", "text", 10 + i, segments, [(f"/c/{i}.txt", 10 + i, i * 10**15)])


def test_head_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == migrate.HEAD


def test_a_new_catalog_is_at_head_and_reopens_without_migrating(catalog_url, tmp_path):
    cat = _open(catalog_url, tmp_path)
    with cat.engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.HEAD
    cat.add_contents([_item(1)], np.ones((2, 16), np.float32))
    version = cat.version()
    cat.close()
    again = _open(catalog_url, tmp_path)
    assert again.version() == version and again.counts()["segments"] == 2
    # 64-bit values survive (nanosecond mtimes, PostgreSQL BIGINT)
    assert again.file_states(["/c"])["/c/1.txt"].content_id == 1
    assert again.segments([1])[1].mtime_ns == 10**15
    again.close()


def test_a_catalog_from_a_newer_crossfind_is_refused(catalog_url, tmp_path):
    cat = _open(catalog_url, tmp_path)
    with cat.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    cat.close()
    with pytest.raises(Conflict, match="newer than this crossfind"):
        _open(catalog_url, tmp_path)


def test_an_index_made_before_alembic_is_stamped_without_loss(tmp_path):
    """What crossfind wrote before Alembic (today's main: schema v2, no alembic_version): the
    baseline runs over it idempotently, stamps it, and every row, vector and hit stays."""
    with Index.open_for_write(tmp_path, ENC.id, ENC.dim) as index:
        written = index.add_contents([_item(i) for i in range(5)], ENC.encode_text([f"t{i}" for i in range(10)]))
        index.checkpoint()
    con = sqlite3.connect(tmp_path / CATALOG)
    with con:
        con.execute("DROP TABLE alembic_version")
    schema_before = sorted(con.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
    con.close()
    reader = Index.open(tmp_path, encoder=ENC.id)
    with reader.catalog.engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.HEAD
    ids = [i for _, seg in written for i in seg]
    assert sorted(reader.store.ids().tolist()) == ids
    assert Engine(reader, ENC).search(Query.text("t3", hybrid=False)).hits[0].id == ids[3]
    reader.close()
    con = sqlite3.connect(tmp_path / CATALOG)
    schema_after = sorted(
        r for r in con.execute("SELECT type, name, sql FROM sqlite_master") if "alembic" not in r[1]
    )
    con.close()
    assert schema_after == schema_before  # nothing rebuilt, nothing lost


def test_the_catalog_url_is_recorded_without_its_password(postgres_url, tmp_path):
    url = make_url(postgres_url).set(password="s3cret-pw")  # the test server trusts any
    rendered = url.render_as_string(hide_password=False)
    with Index.open_for_write(tmp_path, ENC.id, ENC.dim, catalog_url=rendered) as index:
        index.add_contents([_item(1)], ENC.encode_text(["a", "b"]))
    manifest = (tmp_path / MANIFEST).read_text()
    assert "s3cret-pw" not in manifest and not (tmp_path / CATALOG).exists()
    assert make_url(json.loads(manifest)["catalog"]) == make_url(postgres_url)
    with Index.open(tmp_path) as reader:  # found from the folder alone
        assert reader.info()["items"] == 1
    with Index.open(tmp_path, catalog_url=rendered) as reader:  # the same database, a password
        assert reader.info()["items"] == 1


def test_catalog_urls_that_do_not_fit_name_the_fix(postgres_url, tmp_path):
    with pytest.raises(BadRequest, match="not a PostgreSQL URL"):
        Index.open_for_write(tmp_path / "a", ENC.id, ENC.dim, catalog_url="mysql://x@h/db")
    with Index.open_for_write(tmp_path / "sqlite", ENC.id, ENC.dim):
        pass
    with pytest.raises(Conflict, match="keeps its catalog in SQLite"):
        Index.open(tmp_path / "sqlite", catalog_url=postgres_url)
    with Index.open_for_write(tmp_path / "pg", ENC.id, ENC.dim, catalog_url=postgres_url):
        pass
    other = make_url(postgres_url).set(database="elsewhere").render_as_string(hide_password=False)
    with pytest.raises(Conflict, match="keeps its catalog in postgresql://"):
        Index.open(tmp_path / "pg", catalog_url=other)


def test_an_unreachable_server_names_the_fix(postgres_server, tmp_path):
    url = f"postgresql://nobody:pw@127.0.0.1:{postgres_server.port + 1}/none?connect_timeout=2"
    with pytest.raises(ServiceUnavailable, match="cannot open the catalog postgresql://nobody@") as info:
        Index.open_for_write(tmp_path, ENC.id, ENC.dim, catalog_url=url)
    assert "pw" not in info.value.message.replace("PGPASSWORD", "") and info.value.status == 503


def test_one_writer_per_postgres_catalog_across_index_folders(postgres_url, tmp_path):
    first = Index.open_for_write(tmp_path / "a", ENC.id, ENC.dim, catalog_url=postgres_url)
    with pytest.raises(IndexLocked, match="writing to the catalog postgresql://"):
        Index.open_for_write(tmp_path / "b", ENC.id, ENC.dim, catalog_url=postgres_url)
    first.close()  # the lock goes with the writer's connection
    Index.open_for_write(tmp_path / "b", ENC.id, ENC.dim, catalog_url=postgres_url).close()


def test_concurrent_write_transactions_neither_collide_nor_tear(catalog_url, tmp_path):
    """Writers that bypass the index lock (several threads, each its own transactions):
    every batch lands whole with its vectors, and a reader catching up by "ids above the last
    one seen" misses none."""
    cat = _open(catalog_url, tmp_path)
    errors: list[BaseException] = []
    seen: set[int] = set()
    last = [0]
    stop = threading.Event()

    def write(worker: int) -> None:
        try:
            for batch in range(6):
                items = [_item(1000 * worker + 10 * batch + j) for j in range(3)]
                cat.add_contents(items, np.full((6, 16), worker, np.float32))
        except BaseException as exc:  # reported below
            errors.append(exc)

    def read() -> None:
        while not stop.is_set():
            changes = cat.vector_changes(16, last[0], 0)
            if len(changes.ids):
                assert len(changes.ids) % 2 == 0  # a content's two segments come together
                seen.update(changes.ids.tolist())
                last[0] = int(changes.ids.max())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert errors == []
    seen.update(cat.vector_changes(16, last[0], 0).ids.tolist())
    ids = cat.segment_ids()
    assert len(ids) == 4 * 6 * 3 * 2 and seen == set(ids.tolist())
    assert len(cat.get_vectors(ids, 16)[0]) == len(ids) and cat.rows_without_vectors().size == 0
    cat.close()


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("/p/*.JPG", ["/p/a.JPG", "/p/x/y.JPG"], ["/p/a.jpg", "/q/a.JPG"]),
        ("/p/1?/img[0-3].png", ["/p/12/img3.png"], ["/p/123/img3.png", "/p/12/img4.png"]),
        ("/p/[^a]*.(x)+", ["/p/b.(x)+"], ["/p/a.(x)+", "/p/b.xx"]),
    ],
)
def test_glob_as_regex_matches_as_sqlite_glob(pattern, yes, no):
    import re

    con = sqlite3.connect(":memory:")
    regex = re.compile(glob_regex(pattern))
    for path in yes + no:
        expected = bool(con.execute("SELECT ? GLOB ?", (path, pattern)).fetchone()[0])
        assert bool(regex.search(path)) == expected == (path in yes)


def test_a_reader_outlives_a_dropped_connection(postgres_server, postgres_url, tmp_path):
    """A server restart drops every connection: the next read opens a new one."""
    import psycopg

    with Index.open_for_write(tmp_path, ENC.id, ENC.dim, catalog_url=postgres_url) as index:
        index.add_contents([_item(1)], ENC.encode_text(["a", "b"]))
    reader = Index.open(tmp_path)
    assert sorted(reader.catalog.segments([1, 2])) == [1, 2]
    database = make_url(postgres_url).database
    with psycopg.connect(postgres_server.url().replace("postgresql://", "postgresql://", 1),
                         autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        ).fetchone()
    assert killed and killed[0] >= 1
    assert sorted(reader.catalog.segments([1, 2])) == [1, 2]
    assert reader.catalog.version() > 0
    reader.close()


def test_the_api_answers_503_while_the_catalog_server_is_down(tmp_path, monkeypatch):
    """A server of its own, stopped under a running app: a JSON 503 that says why, no 500."""
    from fastapi.testclient import TestClient

    from bench.pgserver import temporary_server
    from search.access import record_roots
    from search.encoders import registry
    from search.settings import Settings
    from web.app import create_app

    registry._ensure_builtins()
    monkeypatch.setitem(registry._FACTORIES, "fake", lambda spec, cache: FakeEncoder(dim=16))
    monkeypatch.setattr(registry, "_CACHE", {})
    try:
        manager = temporary_server()
        server = manager.__enter__()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        url = server.create_database()
        note = tmp_path / "files" / "note.txt"
        note.parent.mkdir()
        note.write_text("apples")
        st = note.stat()
        item = NewContent("1" * 64, "text", st.st_size, [SegmentIn(text="apples")],
                          [(str(note), st.st_size, st.st_mtime_ns)])
        with Index.open_for_write(tmp_path / "db", ENC.id, ENC.dim, catalog_url=url) as index:
            record_roots(index.catalog, [str(note.parent)], follow_links=False)  # what may be served
            index.add_contents([item], ENC.encode_text(["apples"]))
        client = TestClient(create_app(Settings(db=tmp_path / "db")))
        client.__enter__()
        r = client.post("/api/search", json={"parts": [{"text": "apples"}]})
        assert r.status_code == 200 and r.json()["results"][0]["path"] == str(note)
    finally:
        manager.__exit__(None, None, None)  # the server stops
    r = client.post("/api/search", json={"parts": [{"text": "pears"}]})
    assert r.status_code == 503 and "the catalog cannot be reached" in r.json()["message"]
    client.__exit__(None, None, None)
