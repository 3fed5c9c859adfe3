"""``--store milvus:<uri>`` end to end on Milvus Lite: the same answers as FAISS through the
engine, the CLI and the API; filters pushed down as expressions give what FAISS gives with id
lists (duplicates, touched and removed files included); a ``kill -9`` mid-write leaves an index
every reader answers from; clear errors where Milvus cannot start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from indexer import index_paths
from search.engine import Engine
from search.errors import BadRequest, ServiceUnavailable
from search.filters import allowed_for, allowed_segment_ids
from search.index import Index
from search.query import Filters, Query, QueryPart
from search.settings import get_settings
from search.store import StoreFilter, StoreSpec
from search.store.milvus_store import MilvusStore
from tests.fakes import FakeEncoder
from tests.indexer.conftest import assert_consistent
from tests.search.synthetic import add_item

REPO = Path(__file__).resolve().parents[2]
ENC = FakeEncoder()
VOCAB = [f"w{i}" for i in range(300)]


def _corpus(root: Path, n_files: int, seed: int = 0) -> None:
    """Text files leaning on their own words (clustered vectors), some duplicated under two
    names (one content, two files) and with mixed extensions, sizes and dates."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        topic = rng.choice(VOCAB, 30)
        words = np.where(rng.random(300) < 0.6, rng.choice(topic, 300), rng.choice(VOCAB, 300))
        path = root / f"f{i:03d}.{'md' if i % 5 == 0 else 'txt'}"
        path.write_text(" ".join(words) + " x" * (i % 13))
        os.utime(path, ns=(i * 86_400 * 10**9, i * 86_400 * 10**9))
        if i % 17 == 0:
            (root / f"copy{i:03d}.txt").write_text(path.read_text())


def _index(db: Path, root: Path, store: str | None) -> Index:
    index = Index.open_for_write(db, ENC.id, ENC.dim, store=store)
    index_paths([str(root)], index, ENC, get_settings(db=db, workers=0, batch_size=32), progress=False)
    return index


def _key(hit: object) -> tuple[str, int | None]:
    return hit.path, hit.char_start  # type: ignore[attr-defined]


def _queries(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(VOCAB, 5)) for _ in range(n)]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory):
    """The same corpus indexed into FAISS and into Milvus Lite."""
    base = tmp_path_factory.mktemp("milvus")
    _corpus(base / "c", 120)
    faiss_ix = _index(base / "faiss", base / "c", None)
    milvus_ix = _index(base / "milvus", base / "c", f"milvus:{base / 'milvus' / 'vectors.db'}")
    yield base, faiss_ix, milvus_ix
    faiss_ix.close()
    milvus_ix.close()


def test_milvus_and_faiss_give_the_same_top_hits(indexes):
    _, faiss_ix, milvus_ix = indexes
    assert isinstance(milvus_ix.store, MilvusStore) and milvus_ix.info()["store"] == "milvus:FLAT"
    assert milvus_ix.store.count() == faiss_ix.store.count() > 400
    assert sorted(milvus_ix.store.ids_where("").tolist()) == sorted(milvus_ix.catalog.segment_ids().tolist())
    engines = Engine(faiss_ix, ENC), Engine(milvus_ix, ENC)
    same = 0
    texts = _queries(40)
    for text in texts:
        a, b = ([_key(h) for h in e.search(Query.text(text, k=10, hybrid=False)).hits] for e in engines)
        assert len(a) == len(b) == 10
        same += a == b
    assert same >= 0.95 * len(texts)


FILTERS = [
    Filters(ext=["md"]),
    Filters(ext=["txt"], min_size=1395, max_size=1405),
    Filters(modified_before=datetime.fromtimestamp(20 * 86_400, timezone.utc)),
    Filters(modified_after=datetime.fromtimestamp(100 * 86_400, timezone.utc), modality=["text"]),
    Filters(modality=["image"]),
    Filters(min_duration_s=1.0),
]


@pytest.mark.parametrize("filters", FILTERS)
def test_filters_pushed_down_give_what_faiss_gives_with_id_lists(indexes, filters):
    _, faiss_ix, milvus_ix = indexes
    pushed = allowed_for(milvus_ix.catalog, filters, milvus_ix.store)
    assert isinstance(pushed, StoreFilter)  # an expression, not an id list
    assert milvus_ix.store.count(pushed) == len(allowed_segment_ids(milvus_ix.catalog, filters))
    engines = Engine(faiss_ix, ENC), Engine(milvus_ix, ENC)
    for text in _queries(5, seed=2):
        query = Query(parts=[QueryPart(text=text)], k=10, filters=filters, hybrid=False)
        a, b = ([_key(h) for h in e.search(query).hits] for e in engines)
        assert a == b


def test_pushdown_stays_exact_for_duplicates_touched_and_removed_files(tmp_path):
    """Contents whose files changed after they were written are decided by the catalog."""
    index = Index.open_for_write(tmp_path, ENC.id, ENC.dim, store=f"milvus:{tmp_path / 'v.db'}")
    rng = np.random.default_rng(3)
    day = 86_400 * 10**9
    segs = [add_item(index, rng.standard_normal(ENC.dim), f"/p/a{i}.jpg", size=i, mtime_ns=i * day)
            for i in range(60)]
    cat = index.catalog
    cat.link_file("/p/dup0.png", cat.segments([segs[0]])[segs[0]].content_id, 5000, 500 * day)
    cat.link_file("/p/a1.jpg", cat.segments([segs[1]])[segs[1]].content_id, 7000, 700 * day)  # touched
    cat.link_file("/p/dup2.gif", cat.segments([segs[2]])[segs[2]].content_id, 2, 2 * day)
    cat.remove_paths(["/p/a2.jpg"])  # a2's content lives on as dup2.gif
    engine = Engine(index, ENC)
    cases = [Filters(ext=["png"]), Filters(ext=["jpg"], min_size=4000), Filters(ext=["jpg"], max_size=3),
             Filters(ext=["gif"]), Filters(modified_after=datetime.fromtimestamp(600 * 86_400, timezone.utc))]
    expected = [{segs[0]}, {segs[1]}, {segs[0], segs[3]}, {segs[2]}, {segs[1]}]
    for filters, want in zip(cases, expected):
        assert isinstance(allowed_for(cat, filters, index.store), StoreFilter)
        query = Query(parts=[QueryPart(text="x")], k=50, filters=filters, hybrid=False)
        got = [h.id for h in engine.search(query).hits]
        index.store.pushdown = False  # the id-list path over the same store
        try:
            listed = [h.id for h in engine.search(query).hits]
        finally:
            del index.store.pushdown
        assert set(got) == want and got == listed
    index.close()


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CROSSFIND_EXTRA_ENCODERS": "tests.fakes:register"}
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_cli_index_search_and_api_answer_like_faiss(indexes, tmp_path):
    base, faiss_ix, _ = indexes
    from fastapi.testclient import TestClient

    from search.settings import Settings
    from web.app import create_app

    db = tmp_path / "db"
    done = _cli("index", str(base / "c"), "--db", str(db), "--model", "fake", "--store",
                f"milvus:{db}/vectors.db", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads((db / "index.json").read_text())["factory"] == "vectors.db"  # moves with db
    text = _queries(1, seed=9)[0]
    want = [_key(h) for h in Engine(faiss_ix, ENC).search(Query.text(text, k=10)).hits]
    out = _cli("search", text, "--db", str(db), "--k", "10", "--json")
    assert out.returncode == 0, out.stderr
    assert [(r["path"], r.get("char_start")) for r in json.loads(out.stdout)["results"]] == want
    with TestClient(create_app(Settings(db=db), encoder=ENC)) as client:
        r = client.post("/api/search", json={"parts": [{"text": text}], "k": 10})
        assert r.status_code == 200, r.text
        assert [(h["path"], h.get("char_start")) for h in r.json()["results"]] == want
        r = client.post("/api/search", json={"parts": [{"text": text}], "k": 10,
                                             "filters": {"ext": ["md"]}})
        assert r.status_code == 200 and all(h["path"].endswith(".md") for h in r.json()["results"])


def test_bad_specs_and_unreachable_servers_fail_fast_naming_the_fix(tmp_path):
    with pytest.raises(BadRequest, match="milvus:./vectors.db"):
        StoreSpec.parse("milvus")
    with pytest.raises(BadRequest, match=r"\.db"):
        StoreSpec.parse("milvus:/tmp/vectors.sqlite")
    with pytest.raises(BadRequest, match="collection name"):
        StoreSpec.parse("milvus:http://h:19530#bad-name")
    assert StoreSpec.parse("milvus:rel/v.db").spec == str(Path.cwd() / "rel" / "v.db")
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="start the server"):
        MilvusStore("http://127.0.0.1:9", 8, timeout=2)
    assert time.monotonic() - t0 < 30


def test_a_lite_file_held_by_another_process_names_the_server_fix(tmp_path):
    path = tmp_path / "v.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom search.store.milvus_store import MilvusStore\n"
         f"MilvusStore({str(path)!r}, 8)\nprint('open', flush=True)\ntime.sleep(60)"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(ServiceUnavailable, match="milvus-lite server --data-dir"):
            MilvusStore(str(path), 8)
    finally:
        holder.kill()
        holder.wait()
    MilvusStore(str(path), 8).close()  # free again once the holder is gone


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_mid_write_then_readers_answer_and_the_next_run_completes(tmp_path):
    from tests.indexer import test_crash as crash

    root, db = tmp_path / "corpus", tmp_path / "db"
    expected = crash._corpus(root)
    cmd = [*crash._cmd(root, db), "--store", f"milvus:{db}/vectors.db"]
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(3):
        proc = subprocess.Popen(cmd, env=crash._env(), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        crash.kill_when(proc, db, crash._items(db) + int(rng.integers(2, 8)), rng.uniform(0.0, 0.3))
        segments, contents = crash._visible(db)
        if not contents:
            continue
        out = crash._cli_search(db, "river stone", 200)  # a fresh reader: repairs, then answers
        assert out.returncode == 0, out.stderr
        results = json.loads(out.stdout)["results"]
        assert len(results) == contents and {r["id"] for r in results} <= segments
        with Index.open(db) as index:
            assert isinstance(index.store, MilvusStore)
            assert sorted(index.store.ids_where("").tolist()) == sorted(index.catalog.segment_ids().tolist())
        checked += 1
    assert checked >= 2
    done = subprocess.run(cmd, env=crash._env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Index.open(db) as index:
        assert_consistent(index)
        assert index.info()["vectors"] == expected
        assert len(index.store.ids_where("")) == expected


def test_opening_repairs_what_a_crash_between_catalog_and_milvus_left(tmp_path):
    """Rows committed whose vectors never reached Milvus, and a delete that never did: the
    next open (a reader with no writer around, or a writer) brings Milvus up to the catalog."""
    from search.catalog import NewContent, SegmentIn

    db = tmp_path / "db"
    index = Index.open_for_write(db, ENC.id, ENC.dim, store=f"milvus:{db}/v.db")
    rng = np.random.default_rng(5)
    for i in range(20):
        add_item(index, rng.standard_normal(ENC.dim), f"/p/a{i}.jpg")
    index.checkpoint()
    # what a kill -9 leaves between the two writes: the catalog ahead of Milvus
    vector = rng.standard_normal((1, ENC.dim)).astype(np.float32)
    vector /= np.linalg.norm(vector)
    _, (new,) = index.catalog.add_contents(
        [NewContent("sha-new", "image", 1, [SegmentIn()], [("/p/new.jpg", 1, 1)])], vector)[0]
    dropped = index.catalog.remove_paths(["/p/a3.jpg"])
    assert len(dropped) == 1
    milvus = index.store
    assert isinstance(milvus, MilvusStore)
    assert new not in milvus.ids_where("").tolist() and dropped[0] in milvus.ids_where("").tolist()
    index.close()
    with Index.open(db) as reader:
        assert isinstance(reader.store, MilvusStore)
        assert sorted(reader.store.ids_where("").tolist()) == sorted(reader.catalog.segment_ids().tolist())
        hits = Engine(reader, ENC).search_vector(vector[0], Query(parts=[QueryPart(text="x")], k=1))
        assert [h.id for h in hits] == [new]


def test_switching_store_both_ways_embeds_nothing_and_keeps_deletes(tmp_path):
    root, db = tmp_path / "c", tmp_path / "db"
    _corpus(root, 30, seed=4)
    _index(db, root, None).close()
    lite = f"milvus:{db}/vectors.db"
    with _index(db, root, lite) as index:  # filled from the catalog's vectors
        assert isinstance(index.store, MilvusStore) and not list(db.glob("ann-*"))
        assert sorted(index.store.ids_where("").tolist()) == sorted(index.catalog.segment_ids().tolist())
    for path in sorted(root.iterdir())[:4]:
        path.unlink()
    with _index(db, root, None) as index:  # deletes seen on Milvus, then back: Milvus stays
        assert isinstance(index.store, MilvusStore)
    for path in sorted(root.iterdir())[:3]:
        path.unlink()
    with _index(db, root, "faiss:auto") as index:  # back to FAISS: rebuilt from the catalog
        assert not isinstance(index.store, MilvusStore)
        assert_consistent(index)
        live = set(index.catalog.segment_ids().tolist())
    with _index(db, root, lite) as index:  # and to Milvus again: refilled, no stale ids
        assert set(index.store.ids_where("").tolist()) == live  # type: ignore[union-attr]


@pytest.fixture
def milvus_server(tmp_path):
    """A Milvus gRPC server in its own process (Milvus Lite's ``server`` command): the
    ``milvus:http://...`` path, several processes on one store."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                             str(tmp_path / "milvus-data"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip("the Milvus Lite server did not start")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def test_a_server_store_is_shared_by_a_writer_and_readers_in_other_processes(tmp_path, milvus_server):
    root, db = tmp_path / "c", tmp_path / "db"
    _corpus(root, 40, seed=6)
    done = _cli("index", str(root), "--db", str(db), "--model", "fake", "--store", f"milvus:{milvus_server}",
                "--json")
    assert done.returncode == 0, done.stderr
    spec = json.loads((db / "index.json").read_text())["factory"]
    assert spec.startswith(milvus_server + "#crossfind_")  # a collection of its own
    with Index.open(db) as reader:  # a reader in this process, the writer in another
        assert isinstance(reader.store, MilvusStore) and not reader.store.lite
        before = reader.info()["vectors"]
        _corpus(tmp_path / "more", 10, seed=8)
        again = _cli("index", str(root), str(tmp_path / "more"), "--db", str(db), "--model", "fake", "--json")
        assert again.returncode == 0, again.stderr
        assert reader.refresh() and reader.info()["vectors"] > before
        assert sorted(reader.store.ids_where("").tolist()) == sorted(reader.catalog.segment_ids().tolist())
        text = _queries(1, seed=11)[0]
        hits = [_key(h) for h in Engine(reader, ENC).search(Query.text(text, k=10)).hits]
        out = _cli("search", text, "--db", str(db), "--k", "10", "--json")
        assert out.returncode == 0, out.stderr
        assert [(r["path"], r.get("char_start")) for r in json.loads(out.stdout)["results"]] == hits
