"""The index directory: encoder pinning, the single-writer lock, crash reconcile, reader refresh."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.engine import make_url

from search.catalog import SegmentIn
from search.engine import Engine
from search.errors import Conflict, EncoderMismatch, IndexLocked, NotFound
from search.index import CATALOG, MANIFEST, VECTORS, Index
from search.query import Query
from tests.fakes import FakeEncoder

ENC = FakeEncoder(dim=16)


def add_text(index: Index, name: str, *passages: str, checkpoint: bool = True) -> list[int]:
    """One text content with one segment per passage, like the indexer writes it."""
    segments = [SegmentIn(text=p) for p in passages]
    _, ids = index.catalog.add_content(
        f"sha-{name}", "text", 10, segments, [(f"/d/{name}.txt", 10, 1)]
    )
    index.add_vectors(ids, ENC.encode_text(list(passages)))
    if checkpoint:
        index.checkpoint()
    return ids


def consistent(index: Index) -> list[int]:
    store_ids = sorted(index.store.ids().tolist())
    assert store_ids == sorted(index.catalog.segment_ids().tolist())
    return store_ids


@pytest.fixture
def writer(tmp_path, catalog_url):
    """A writable index whose catalog is SQLite, then PostgreSQL (the folder records it, so
    the tests reopen it by folder alone)."""
    index = Index.open_for_write(tmp_path, ENC.id, ENC.dim, catalog_url=catalog_url)
    yield index
    index.close()


def test_a_new_index_records_its_encoder(writer, tmp_path, catalog_url):
    add_text(writer, "a", "hello world")
    info = writer.info()
    assert (info["encoder"], info["dim"], info["vectors"], info["items"]) == ("fake", 16, 1, 1)
    assert info["store"] == "faiss:Flat" and info["store_spec"] == "faiss:auto"
    names = {p.name for p in tmp_path.iterdir()}
    assert MANIFEST in names and VECTORS not in names  # vectors live in the catalog
    assert (CATALOG in names) == (catalog_url is None)
    if catalog_url is None:
        assert info["catalog"] == "sqlite"
    else:  # recorded without a password, found again from the folder alone
        assert make_url(info["catalog"]) == make_url(catalog_url)


def test_other_encoders_are_refused_with_the_fix(writer, tmp_path):
    add_text(writer, "a", "hello")
    writer.close()
    with pytest.raises(EncoderMismatch, match="--reindex") as info:
        Index.open_for_write(tmp_path, "bundled", 384)
    assert "--model fake" in info.value.message and info.value.status == 409
    with pytest.raises(EncoderMismatch):
        Index.open(tmp_path, encoder="bundled")
    reader = Index.open(tmp_path, encoder="fake")
    assert reader.store.count() == 1
    reader.close()


def test_reindex_starts_over_with_the_new_encoder(writer, tmp_path):
    add_text(writer, "a", "hello")
    writer.close()
    with Index.open_for_write(tmp_path, "other", 8, reindex=True) as index:
        assert (index.manifest.encoder, index.manifest.dim, index.store.count()) == ("other", 8, 0)
        assert index.catalog.counts()["items"] == 0


def test_missing_index_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="crossfind index PATH --db"):
        Index.open(tmp_path / "nowhere")


def test_one_writer_at_a_time(writer, tmp_path):
    with pytest.raises(IndexLocked, match="another crossfind process is writing"):
        Index.open_for_write(tmp_path, ENC.id, ENC.dim)
    reader = Index.open(tmp_path)  # readers never wait for the lock
    reader.close()
    writer.close()
    second = Index.open_for_write(tmp_path, ENC.id, ENC.dim)
    second.close()


def test_rows_without_vectors_are_dropped_so_the_files_get_embedded_again(writer, tmp_path):
    kept = add_text(writer, "a", "kept passage")
    # rows written alone (what a crash between the two writes of an older crossfind left)
    _, lost = writer.catalog.add_content("sha-b", "text", 10, [SegmentIn(text="one")], [("/d/b.txt", 10, 1)])
    reader = Index.open(tmp_path)  # a reader meanwhile answers, without the row's vector
    assert [h.id for h in Engine(reader, ENC).search(Query.text("one")).hits] == kept
    reader.close()
    writer.close()
    index = Index.open_for_write(tmp_path, ENC.id, ENC.dim)
    assert index.reconcile() == {"orphan_vectors": 0, "rows_without_vectors": 1}
    assert consistent(index) == kept
    assert index.catalog.file("/d/b.txt") is None and index.catalog.file("/d/a.txt") is not None
    assert not set(lost) & set(index.catalog.segment_ids().tolist())
    index.close()


def test_a_content_with_only_some_vectors_is_dropped_whole(writer, tmp_path):
    kept = add_text(writer, "a", "kept")
    segments = [SegmentIn(text=t) for t in ("one", "two", "three")]
    _, ids = writer.catalog.add_content("sha-b", "text", 10, segments, [("/d/b.txt", 10, 1)])
    writer.catalog.put_vectors([ids[0], ids[2]], ENC.encode_text(["one", "three"]))
    writer.close()
    index = Index.open_for_write(tmp_path, ENC.id, ENC.dim)
    assert consistent(index) == kept  # the other two vectors of b left with it
    assert len(index.catalog.get_vectors(ids, ENC.dim)[0]) == 0
    index.close()


def test_vectors_leave_with_their_rows_and_orphans_are_removed(writer, tmp_path):
    kept = add_text(writer, "a", "kept")
    gone = add_text(writer, "b", "deleted file")
    assert writer.catalog.remove_paths(["/d/b.txt"]) == gone
    assert len(writer.catalog.get_vectors(gone, ENC.dim)[0]) == 0  # same transaction (trigger)
    writer.catalog.put_vectors([10_000], ENC.encode_text(["never had a row"]))
    writer.close()
    index = Index.open_for_write(tmp_path, ENC.id, ENC.dim)
    assert index.reconcile() == {"orphan_vectors": 1, "rows_without_vectors": 0}
    assert consistent(index) == kept
    index.close()
    assert Index.open(tmp_path).store.count() == 1


def test_reconcile_of_a_clean_index_changes_nothing(writer, tmp_path):
    add_text(writer, "a", "x", "y")
    writer.close()
    with Index.open_for_write(tmp_path, ENC.id, ENC.dim) as index:
        assert index.reconcile() == {"orphan_vectors": 0, "rows_without_vectors": 0}
        assert index.store.count() == 2


def test_a_reader_sees_each_commit_without_any_checkpoint(writer, tmp_path):
    first = add_text(writer, "a", "red apples", checkpoint=False)
    reader = Index.open(tmp_path, encoder=ENC.id)
    engine = Engine(reader, ENC)
    assert [h.id for h in engine.search(Query.text("red apples")).hits] == first
    assert reader.refresh() is False  # nothing new
    second = add_text(writer, "b", "green pears", checkpoint=False)
    third = add_text(writer, "c", "yellow bananas", checkpoint=False)
    assert reader.refresh() is True and reader.store.count() == 3
    hits = engine.search(Query.text("yellow bananas")).hits  # search() refreshes by itself too
    assert hits[0].id == third[0] and {h.id for h in hits} == set(first + second + third)
    writer.catalog.remove_paths(["/d/c.txt"])
    writer.remove_segments(third)
    assert third[0] not in [h.id for h in engine.search(Query.text("yellow bananas")).hits]
    assert reader.store.count() == 2
    reader.close()


def test_a_reader_follows_a_compaction_and_deletes_after_it(writer, tmp_path):
    ids = [add_text(writer, f"n{i}", f"note number {i}", checkpoint=False)[0] for i in range(12)]
    reader = Index.open(tmp_path, encoder=ENC.id)
    assert reader.store.base is None and reader.store.count() == 12  # all in the exact tail
    assert writer.compact(force=True) == "rebuilt"
    files = sorted(p.name for p in tmp_path.glob("ann-*"))
    assert files == ["ann-000001.faiss", "ann-000001.faiss.ids.npy"]
    writer.catalog.remove_paths(["/d/n3.txt"])
    writer.remove_segments([ids[3]])
    later = add_text(writer, "late", "a late note", checkpoint=False)
    engine = Engine(reader, ENC)
    hits = engine.search(Query.text("note number 3", k=20)).hits
    assert reader.store.base is not None and reader.store.base.n == 12
    assert {h.id for h in hits} == (set(ids) - {ids[3]}) | set(later)
    assert [p.name for p in sorted(tmp_path.glob("ann-*"))] == files  # a delete wrote no file
    reader.close()
    with Index.open(tmp_path) as fresh:
        assert fresh.store.count() == 12 and ids[3] not in fresh.store.ids()


def test_a_corrupt_or_mismatched_vector_index_file_names_the_fix(writer, tmp_path):
    add_text(writer, "a", "x")
    writer.compact(force=True)
    writer.close()
    (tmp_path / "ann-000001.faiss").write_bytes(b"garbage" * 20)
    with pytest.raises(Conflict, match="--reindex"):
        Index.open(tmp_path)
    import faiss

    faiss.write_index(faiss.IndexFlatIP(8), str(tmp_path / "ann-000001.faiss"))
    with pytest.raises(Conflict, match="8-d vectors|--reindex"):
        Index.open(tmp_path)
    with Index.open_for_write(tmp_path, ENC.id, ENC.dim, reindex=True) as index:
        assert index.store.count() == 0
        assert not list(tmp_path.glob("ann-*"))


def test_hit_lookup_joins_content_and_all_paths_and_sees_new_writes(writer, tmp_path):
    import threading

    ids = add_text(writer, "a", "first passage", "second passage")
    writer.catalog.link_file("/d/copy-of-a.txt", writer.catalog.file("/d/a.txt").content_id, 10, 99)
    reader = Index.open(tmp_path)
    infos = reader.catalog.segments([ids[1], ids[0], ids[0], 10**6, -1])
    assert sorted(infos) == ids  # duplicates folded, unknown and negative ids absent
    info = infos[ids[1]]
    assert (info.text, info.modality, info.content_id) == ("second passage", "text", infos[ids[0]].content_id)
    assert info.paths == ["/d/a.txt", "/d/copy-of-a.txt"] and info.mtime_ns == 99
    later = add_text(writer, "b", "written after the reader's first lookup")
    assert later[0] in reader.catalog.segments(later)  # each lookup sees committed writes
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(ids[0] in reader.catalog.segments(ids)))
    thread.start()
    thread.join()
    assert seen == [True]  # another thread gets its own connection
    reader.close()
    assert Index.open(tmp_path).catalog.segments(ids)[ids[0]].path == "/d/a.txt"  # after close


def _as_schema_1(root, vectors_of: dict[int, np.ndarray]) -> None:
    """Turn an index into what crossfind wrote before vectors moved into the catalog: a
    ``vectors.faiss`` (IndexIDMap2 over Flat) beside a catalog without vector tables."""
    import sqlite3

    from search.store import create_store

    store = create_store(ENC.dim)
    ids = np.array(sorted(vectors_of), dtype=np.int64)
    store.add(ids, np.stack([vectors_of[i] for i in ids.tolist()]))
    store.save(root / VECTORS)
    for path in root.glob("ann-*"):
        path.unlink()
    with sqlite3.connect(root / CATALOG) as con:
        for trigger in ("segments_ad", "segments_ai", "vectors_ai", "files_ai", "files_ad", "files_au"):
            con.execute(f"DROP TRIGGER {trigger}")
        for table in ("vectors", "tombstones", "counters", "alembic_version"):
            con.execute(f"DROP TABLE {table}")
        con.execute("DELETE FROM meta WHERE key = 'ann'")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")


def test_an_index_from_before_stored_vectors_opens_and_migrates(writer, tmp_path, catalog_url):
    if catalog_url is not None:
        pytest.skip("schema 1 (vectors.faiss) existed only with a SQLite catalog")
    a = add_text(writer, "a", "red apples", "green pears")
    b = add_text(writer, "b", "blue sky")
    lost = add_text(writer, "c", "yellow bananas")
    vectors_of = dict(zip(a + b, ENC.encode_text(["red apples", "green pears", "blue sky"])))
    writer.close()
    # schema 1's crash state too: c's rows committed, its vector never reached the file
    _as_schema_1(tmp_path, vectors_of)
    reader = Index.open(tmp_path, encoder=ENC.id)  # a reader migrates (under the write lock)
    hits = Engine(reader, ENC).search(Query.text("blue sky")).hits
    assert hits[0].id == b[0] and {h.path for h in hits} == {"/d/a.txt", "/d/b.txt"}
    assert not (tmp_path / VECTORS).exists() and reader.catalog.schema_version == 2
    assert lost[0] not in reader.catalog.segment_ids()  # dropped: the next run embeds c again
    got_ids, got = reader.catalog.get_vectors(a + b, ENC.dim)
    assert got_ids.tolist() == a + b and np.allclose(got, np.stack([vectors_of[i] for i in a + b]))
    reader.close()
    with Index.open_for_write(tmp_path, ENC.id, ENC.dim) as index:
        consistent(index)


def test_an_unreadable_old_vector_file_names_reindex(writer, tmp_path, catalog_url):
    if catalog_url is not None:
        pytest.skip("schema 1 (vectors.faiss) existed only with a SQLite catalog")
    ids = add_text(writer, "a", "x")
    writer.close()
    _as_schema_1(tmp_path, {ids[0]: ENC.encode_text(["x"])[0]})
    (tmp_path / VECTORS).write_bytes(b"garbage" * 20)
    with pytest.raises(Conflict, match="--reindex"):
        Index.open(tmp_path)
