"""Incremental re-indexing: only what changed is embedded; duplicates stored once."""

import os
import shutil

from search.engine import Engine
from search.index import Index
from search.query import Query
from tests.indexer.conftest import assert_consistent
from tests.indexer.corpus import CountingEncoder, image, text


def _corpus(root):
    text(root / "notes" / "a.txt", "apples and pears in the orchard")
    text(root / "notes" / "b.md", "a ship on the stormy sea")
    image(root / "photos" / "red.png", "red")
    image(root / "photos" / "green.jpg", "green")


def _paths(db):
    with Index.open(db) as index:
        return sorted(
            p for info in index.catalog.segments(index.catalog.segment_ids().tolist()).values()
            for p in info.paths
        )


def test_add_modify_delete_rename_duplicate(tmp_path, settings, run_index):
    root = tmp_path / "c"
    _corpus(root)
    enc = CountingEncoder()
    report = run_index(enc, root)
    assert enc.embedded == {"text": 2, "image": 2, "audio": 0}
    assert report.by_modality["text"].added == 2 and report.by_modality["image"].added == 2
    assert report.skipped == []

    # nothing changed: nothing read, nothing embedded
    enc = CountingEncoder()
    report = run_index(enc, root)
    assert enc.embedded == {"text": 0, "image": 0, "audio": 0}
    assert report.totals().unchanged == 4 and report.totals().total_changed() == 0

    # modify a, delete b, rename red, copy green, touch the green original
    a = root / "notes" / "a.txt"
    st = a.stat()
    a.write_text("bananas and mangoes from the market")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # even on coarse clocks
    (root / "notes" / "b.md").unlink()
    (root / "photos" / "red.png").rename(root / "photos" / "red-renamed.png")
    shutil.copy(root / "photos" / "green.jpg", root / "photos" / "green-copy.jpg")
    g = root / "photos" / "green.jpg"
    os.utime(g, ns=(g.stat().st_atime_ns, g.stat().st_mtime_ns + 2_000_000_000))

    enc = CountingEncoder()
    report = run_index(enc, root)
    assert enc.embedded == {"text": 1, "image": 0, "audio": 0}  # only a.txt's new passage
    t, i = report.by_modality["text"], report.by_modality["image"]
    assert (t.updated, t.removed, t.added) == (1, 1, 0)
    assert (i.linked, i.removed, i.unchanged, i.added) == (2, 1, 1, 0)  # rename + copy; touch
    assert _paths(settings.db) == sorted(
        str(root / p)
        for p in ("notes/a.txt", "photos/red-renamed.png", "photos/green.jpg", "photos/green-copy.jpg")
    )
    with Index.open(settings.db) as index:
        info = index.info()
        assert info["items"] == 4 and info["contents"] == 3 and info["vectors"] == 3
        engine = Engine(index, enc)
        top = engine.search(Query.text("bananas market")).hits[0]
        assert top.path == str(a) and "bananas" in top.snippet
        assert engine.search(Query.text("red")).hits[0].path == str(root / "photos" / "red-renamed.png")
        green = engine.search(Query.text("green")).hits[0]
        assert sorted(green.paths) == [str(root / "photos" / "green-copy.jpg"), str(g)]

    # both green files gone: the content and its vector go too
    g.unlink()
    (root / "photos" / "green-copy.jpg").unlink()
    report = run_index(CountingEncoder(), root)
    assert report.by_modality["image"].removed == 2
    with Index.open(settings.db) as index:
        assert index.info()["vectors"] == 2 and index.info()["contents"] == 2


def test_identical_new_files_are_embedded_once_with_every_path_kept(tmp_path, settings, run_index):
    for name in ("x.txt", "sub/y.txt", "sub/deeper/z.md"):
        text(tmp_path / "c" / name, "the very same words")
    enc = CountingEncoder()
    report = run_index(enc, tmp_path / "c")
    assert enc.embedded["text"] == 1
    assert (report.by_modality["text"].added, report.by_modality["text"].linked) == (1, 2)
    assert len(_paths(settings.db)) == 3


def test_content_swapped_between_two_files_is_tracked(tmp_path, settings, run_index):
    a, b = text(tmp_path / "c" / "a.txt", "alpha words"), text(tmp_path / "c" / "b.txt", "beta words")
    run_index(CountingEncoder(), tmp_path / "c")
    a.write_text("beta words")
    b.write_text("alpha words")
    for f in (a, b):
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 3_000_000_000))
    run_index(CountingEncoder(), tmp_path / "c")
    with Index.open(settings.db) as index:
        texts = {
            info.paths[0]: info.text
            for info in index.catalog.segments(index.catalog.segment_ids().tolist()).values()
        }
    assert texts == {str(a): "beta words", str(b): "alpha words"}


def test_only_files_under_the_roots_given_are_removed(tmp_path, settings, run_index):
    text(tmp_path / "one" / "a.txt", "first folder")
    text(tmp_path / "two" / "b.txt", "second folder")
    run_index(CountingEncoder(), tmp_path / "one")
    run_index(CountingEncoder(), tmp_path / "two")
    (tmp_path / "one" / "a.txt").unlink()
    report = run_index(CountingEncoder(), tmp_path / "two")
    assert report.totals().removed == 0  # one/ was not asked about
    assert _paths(settings.db) == [str(tmp_path / "one" / "a.txt"), str(tmp_path / "two" / "b.txt")]
    report = run_index(CountingEncoder(), tmp_path / "one")
    assert report.totals().removed == 1


def test_a_file_that_turns_bad_leaves_the_index(tmp_path, settings, run_index):
    a = text(tmp_path / "c" / "a.txt", "good words")
    run_index(CountingEncoder(), tmp_path / "c")
    a.write_bytes(b"caf\xe9 latin-1 now")
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 1_000_000_000))
    report = run_index(CountingEncoder(), tmp_path / "c")
    assert [(s.path, s.reason) for s in report.skipped] == [(str(a), "not UTF-8 text")]
    assert _paths(settings.db) == []


def test_inline_decoding_gives_the_same_index_as_workers(tmp_path, settings, run_index):
    _corpus(tmp_path / "c")
    r0 = run_index(CountingEncoder(), tmp_path / "c", workers=0, db=tmp_path / "db0")
    r2 = run_index(CountingEncoder(), tmp_path / "c", workers=2, db=tmp_path / "db2")
    assert r0.to_json()["by_modality"] == r2.to_json()["by_modality"]
    with Index.open(tmp_path / "db0") as i0, Index.open(tmp_path / "db2") as i2:
        assert_consistent(i0)
        assert i0.info()["vectors"] == i2.info()["vectors"] == 4
