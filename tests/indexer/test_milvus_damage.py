"""A Milvus Lite file that lost data or cannot be read: it is derived from the catalog's
vectors, so it is refilled (never searched half empty while its ids are counted), and a file
Lite cannot open is a one-line error a writer's open repairs, embedding nothing again."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from search.engine import Engine
from search.errors import Conflict
from search.index import Index
from search.query import Query, QueryPart
from search.store.milvus_store import MilvusStore
from tests.fakes import FakeEncoder
from tests.search.synthetic import add_item

ENC = FakeEncoder()
N = 30
COLLECTION = Path("v.db") / "collections" / "crossfind"


def _built(db: Path) -> np.ndarray:
    """An index of N items in Milvus Lite, flushed; returns their vectors (row i: /p/a{i}.jpg)."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((N, ENC.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Index.open_for_write(db, ENC.id, ENC.dim, store=f"milvus:{db}/v.db") as index:
        for i, v in enumerate(vectors):
            add_item(index, v, f"/p/a{i}.jpg")
        index.finish()
    return vectors


def _answers_all(index: Index, vectors: np.ndarray) -> None:
    """Milvus itself holds every catalog vector, and each is its own nearest neighbour."""
    assert isinstance(index.store, MilvusStore)
    assert len(index.store.ids_where("")) == len(vectors) == index.catalog.counts()["segments"]
    engine = Engine(index, ENC)
    for i in (0, N // 2, N - 1):
        hits = engine.search_vector(vectors[i], Query(parts=[QueryPart(text="x")], k=1))
        assert [h.path for h in hits] == [f"/p/a{i}.jpg"]


@pytest.mark.parametrize("loss", ["folder_removed", "manifest_rolled_back"])
def test_a_lite_file_that_lost_its_vectors_is_refilled_on_open(tmp_path, loss):
    """Before: the reader adopted the catalog's ids (info said 30 indexed) while Milvus held
    none, and every vector search answered nothing, even after a new `crossfind index`."""
    db = tmp_path / "db"
    vectors = _built(db)
    if loss == "folder_removed":
        shutil.rmtree(db / "v.db")
    else:  # a damaged manifest.json: Lite falls back to manifest.json.prev, an older state
        manifest = db / COLLECTION / "manifest.json"
        manifest.write_text(manifest.read_text()[:50])
    with Index.open(db) as reader:  # no writer around: the reader brings Milvus up to date
        _answers_all(reader, vectors)
    with Index.open_for_write(db, ENC.id, ENC.dim) as writer:
        _answers_all(writer, vectors)


@pytest.mark.parametrize("damage", ["data", "index"])
def test_an_unreadable_lite_file_names_the_fix_and_the_writer_rebuilds_it(tmp_path, damage):
    db = tmp_path / "db"
    vectors = _built(db)
    folder = db / COLLECTION / "partitions" / "_default" / ("data" if damage == "data" else "indexes")
    (victim,) = list(folder.iterdir())
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(Conflict, match=r"Milvus Lite file .*v\.db is unreadable .*crossfind index"):
        Index.open(db)
    with Index.open_for_write(db, ENC.id, ENC.dim) as writer:  # what `crossfind index` opens
        _answers_all(writer, vectors)
    assert len([p for p in db.iterdir() if p.name.startswith("v.db.damaged-")]) == 1  # kept, not deleted
    with Index.open(db) as reader:
        _answers_all(reader, vectors)


def test_a_lite_file_on_a_read_only_medium_says_what_it_needs(tmp_path):
    """Milvus Lite writes even to search: on a read-only mount that was an OSError traceback."""
    from tests.search.test_index_damage import _run_read_only

    db = tmp_path / "db"
    _built(db)
    done = _run_read_only(db, "search", "x", "--db", str(db), "--model", "fake")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "Milvus Lite needs its folder writable" in done.stderr


def test_a_crash_between_dropping_and_making_the_vector_index_leaves_an_index_that_opens(tmp_path):
    """``ensure_index`` switches the index type by dropping the old one and making the new one;
    a kill -9 in between left a collection with none, and every open then failed
    (AttributeError: describe_index answers None)."""
    db = tmp_path / "db"
    vectors = _built(db)
    with Index.open_for_write(db, ENC.id, ENC.dim) as writer:  # the state the kill leaves
        store = writer.store
        assert isinstance(store, MilvusStore)
        store.client.release_collection(store.collection)
        store.client.drop_index(store.collection, "vec")
    with Index.open(db) as reader:  # no writer around: the reader makes one again
        assert isinstance(reader.store, MilvusStore) and reader.store.index_type == "FLAT"
        _answers_all(reader, vectors)
    with Index.open_for_write(db, ENC.id, ENC.dim) as writer:
        _answers_all(writer, vectors)
