
from search.catalog import SegmentIn
from search.engine import Engine
from search.index import Index
from search.query import Filters, Query
from tests.fakes import FakeEncoder


def _add(index: Index, enc: FakeEncoder, sha: str, path: str, text: str) -> int:
    _, ids = index.catalog.add_content(
        sha, "text", len(text), [SegmentIn(text=text, char_start=0, char_end=len(text))],
        [(path, len(text), 1)],
    )
    index.add_vectors(ids, enc.encode_text([text]))
    return ids[0]


def test_text_search_finds_the_matching_document(tmp_path):
    enc = FakeEncoder()
    index = Index.open_for_write(tmp_path, enc.id, enc.dim)
    a = _add(index, enc, "a", "/d/a.txt", "red apples in a basket")
    _add(index, enc, "b", "/d/b.txt", "blue sky over the sea")
    index.checkpoint()
    engine = Engine(index, enc)
    res = engine.search(Query.text("apples basket"))
    assert res.hits[0].id == a and res.hits[0].path == "/d/a.txt"
    assert res.hits[0].score > res.hits[1].score
    res = engine.search(Query.text("apples", filters=Filters(modality=["image"])))
    assert res.hits == []
    index.close()


def test_reconcile_drops_rows_without_vectors_and_orphan_vectors(tmp_path):
    enc = FakeEncoder()
    index = Index.open_for_write(tmp_path, enc.id, enc.dim)
    _add(index, enc, "a", "/d/a.txt", "kept")
    # rows whose vector never came (an older crossfind's crash), and a vector without a row
    index.catalog.add_content("b", "text", 3, [SegmentIn(text="lost")], [("/d/b.txt", 3, 1)])
    index.catalog.put_vectors([999], enc.encode_text(["orphan"]))
    index.close()
    index = Index.open_for_write(tmp_path, enc.id, enc.dim)
    assert sorted(index.store.ids().tolist()) == sorted(index.catalog.segment_ids().tolist()) == [1]
    assert index.catalog.file("/d/b.txt") is None
    index.close()
