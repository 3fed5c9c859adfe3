"""A full disk: a clear error, no temp files, and every batch committed before it kept.

Two ways in: the real ``crossfind index`` on a 600 kB tmpfs (needs root to mount; skipped with
the reason otherwise), and ENOSPC / SQLITE_FULL injected at each write the indexer makes, which
runs everywhere: the FAISS store save, a catalog commit, the manifest, the reserve.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
import pytest
from sqlalchemy import event

from indexer import index_paths
from search.errors import DiskFull
from search.index import Index
from search.settings import get_settings
from search.store import StoreOptions
from tests.indexer.conftest import assert_consistent
from tests.indexer.corpus import CountingEncoder, image, text

REPO = Path(__file__).resolve().parents[2]
WORDS = ["river", "stone", "cloud", "forest", "lamp", "window", "garden", "bridge", "candle", "harbour", "meadow"]


def _message(db: Path) -> str:
    return (
        f"crossfind: error: no space left on device writing {db}; free space and re-run: "
        "nothing indexed so far is lost"
    )


def _corpus(root: Path, n_text: int, n_images: int, start: int = 0) -> None:
    rng = np.random.default_rng(start)
    for i in range(start, start + n_text):
        text(root / f"t{i:03d}.txt", " ".join(rng.choice(WORDS, 300)) + f" doc{i}")
    for i in range(start, start + n_images):
        image(root / f"i{i:03d}.png", ("red", "green", "blue")[i % 3], seed=i)


def _state(db: Path) -> tuple[list[int], list[int], list[str]]:
    """(store ids, segment ids, file paths) as a reader opening the index sees them."""
    with Index.open(db) as index:
        return (
            sorted(index.store.ids().tolist()),
            sorted(index.catalog.segment_ids().tolist()),
            sorted(index.catalog.paths_under(["/"])),
        )


@contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO),
             "CROSSFIND_EXTRA_ENCODERS": "tests.fakes:register", **env},
    )


def test_full_tmpfs_says_so_keeps_the_last_checkpoint_and_a_rerun_completes(tmp_path):
    files = tmp_path / "files"
    _corpus(files, 150, 20)  # ~ 750 kB of text passages and FTS rows: more than the disk holds
    with _tmpfs(tmp_path / "mnt", "600k") as mnt:
        db = mnt / "db"
        index = ("index", str(files), "--db", str(db), "--model", "fake:delay_ms=5",
                 "--batch-size", "4", "--workers", "1", "--json")
        full = _cli(*index, CROSSFIND_CHECKPOINT_EVERY_S="0.05")
        assert full.returncode == 2, full.stderr
        assert full.stderr.strip() == _message(db)  # one line: no traceback, no library text
        assert full.stdout == ""
        assert sorted(p.name for p in db.iterdir() if p.name.endswith(".tmp")) == []
        store_ids, row_ids, paths = _state(db)
        assert store_ids == row_ids and len(paths) > 0  # what the checkpoints kept is there

        found = _cli("search", "river stone", "--db", str(db), "--model", "fake", "--json")
        assert found.returncode == 0, found.stderr
        results = json.loads(found.stdout)["results"]
        assert results and {r["path"] for r in results} <= set(paths)

        subprocess.run(["mount", "-o", "remount,size=16m", str(mnt)], check=True)  # free space
        done = _cli(*index)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["index"]["items"] == 170
        store_ids, row_ids, paths = _state(db)
        assert store_ids == row_ids and len(paths) == 170


def _fill(mnt: Path) -> None:
    """Fill the file system to the last byte."""
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_search_on_a_full_disk_says_so_and_the_index_is_intact(tmp_path):
    """A reader must map the catalog's -shm file: on a full disk SQLite answers "disk I/O
    error" (SQLITE_IOERR_SHMSIZE), which was a traceback; and the API answered 500."""
    files = tmp_path / "files"
    _corpus(files, 20, 2)
    with _tmpfs(tmp_path / "mnt", "2m") as mnt:
        db = mnt / "db"
        assert _cli("index", str(files), "--db", str(db), "--model", "fake").returncode == 0
        _fill(mnt)
        search = ("search", "river stone", "--db", str(db), "--model", "fake", "--json")
        full = _cli(*search)
        assert full.returncode == 2, full.stderr
        assert full.stderr.strip() == (
            f"crossfind: error: no space left on device to open the index at {db} (SQLite "
            "needs room for its shared-memory file); free space and search again: the index "
            "is intact")
        assert full.stdout == ""
        from search.errors import is_disk_full

        with pytest.raises(Exception) as opening:  # SQLAlchemy's error: checked below
            Index.open(db)  # the server's engine: answered 507 (web/errors.py), not 500
        assert is_disk_full(opening.value)
        os.unlink(mnt / "filler")
        found = _cli(*search)
        assert found.returncode == 0, found.stderr
        assert len(json.loads(found.stdout)["results"]) > 0
        # --reindex removes the old index first: the message must not claim nothing was lost
        _fill(mnt)
        again = _cli("index", str(files), "--db", str(db), "--model", "fake", "--reindex")
        assert again.returncode == 2
        assert again.stderr.strip() == (
            f"crossfind: error: no space left on device writing {db}; --reindex had removed "
            "the old index: free space and re-run (what this run indexed so far is kept)")


# -- injected: each write the indexer makes runs out of space ---------------------------------


def _enospc(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


_write_index = faiss.write_index


def _faiss_full(index: faiss.Index, _writer: object) -> None:
    """FAISS serialising into a file on a full disk: the first write fails."""
    _write_index(index, faiss.PyCallbackIOWriter(_enospc))  # type: ignore[arg-type]


def _sqlite_full(index: Index, spare_pages: int = 2) -> None:
    """SQLite's own SQLITE_FULL: cap the catalog a few pages above its size (new connections)."""
    engine = index.catalog.engine
    with engine.connect() as con:
        pages = con.exec_driver_sql("PRAGMA page_count").scalar()

    @event.listens_for(engine, "connect")
    def cap(dbapi_conn, _record):
        dbapi_conn.execute(f"PRAGMA max_page_count={pages + spare_pages}")

    engine.dispose()


@pytest.mark.parametrize("where", ["faiss", "fsync", "sqlite"])
def test_enospc_during_a_run_leaves_the_last_checkpoint(tmp_path, monkeypatch, where):
    files, db = tmp_path / "files", tmp_path / "db"
    settings = get_settings(db=db, workers=0, batch_size=4)
    encoder = CountingEncoder()
    _corpus(files, 6, 3)
    with Index.open_for_write(db, encoder.id, encoder.dim) as index:
        index_paths([files], index, encoder, settings, progress=False)
    before = _state(db)
    _corpus(files, 40, 6, start=100)  # the next run has plenty to write

    # small compaction thresholds: the end of the run writes a vector index file (the faiss
    # and fsync cases fail there, after every batch committed)
    options = StoreOptions(compact_min=8)
    with Index.open_for_write(db, encoder.id, encoder.dim, options=options) as index:
        if where == "faiss":
            monkeypatch.setattr(faiss, "write_index", _faiss_full)
        elif where == "fsync":
            monkeypatch.setattr(os, "fsync", _enospc)
        else:
            _sqlite_full(index)
        with pytest.raises(DiskFull) as raised:
            index_paths([files], index, encoder, settings, progress=False)
        assert_consistent(index)  # the writer's own view, too
    monkeypatch.undo()
    assert raised.value.message == _message(db).removeprefix("crossfind: error: ")
    assert raised.value.status == 507
    assert not [p.name for p in db.iterdir() if p.name.endswith(".tmp")]
    after = _state(db)
    # rows and vectors commit together: what was written before the failure stays, readable
    assert after[0] == after[1] and set(before[2]) <= set(after[2])
    if where == "sqlite":  # the batch whose commit failed was rolled back whole
        assert len(after[2]) < 55
    else:  # every batch committed; only the vector index file could not be written
        assert len(after[2]) == 55

    with Index.open_for_write(db, encoder.id, encoder.dim, options=options) as index:
        report = index_paths([files], index, encoder, settings, progress=False)
        assert_consistent(index)
    assert report.totals().added == 55 - len(after[2])
    assert len(_state(db)[2]) == 55


def test_no_room_for_a_new_index_leaves_no_half_written_files(tmp_path, monkeypatch):
    db = tmp_path / "db"
    encoder = CountingEncoder()
    monkeypatch.setattr(os, "fsync", _enospc)  # the reserve and the manifest both fsync
    with pytest.raises(DiskFull):
        Index.open_for_write(db, encoder.id, encoder.dim)
    assert sorted(p.name for p in db.iterdir()) == ["write.lock"]
    monkeypatch.undo()
    with Index.open_for_write(db, encoder.id, encoder.dim) as index:
        assert index.info()["items"] == 0


def test_no_room_for_the_manifest(tmp_path, monkeypatch):
    db = tmp_path / "db"
    encoder = CountingEncoder()
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("index.json"):
            _enospc()
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(DiskFull):
        Index.open_for_write(db, encoder.id, encoder.dim)
    assert not Index.exists(db) and not (db / "index.json.tmp").exists()


def test_a_store_save_a_little_too_big_raises_and_leaves_no_file(tmp_path):
    """FAISS's own writer ignores a failed fclose: a file that overflows the disk by less than
    one stdio buffer lost its last bytes silently and the truncated file was renamed into
    place. The save must raise instead, and leave neither file."""
    from search.store import create_store

    store = create_store(8, "faiss", "Flat")
    empty = len(faiss.serialize_index(store.index))
    n = (600 * 1024 + 1000 - empty) // (8 * 4 + 8)  # 8 floats and an id a vector
    store.add(np.arange(n), np.random.default_rng(0).random((n, 8), dtype=np.float32))
    with _tmpfs(tmp_path / "mnt", "600k") as mnt:
        with pytest.raises(OSError) as raised:
            store.save(mnt / "vectors.faiss")
        assert raised.value.errno == errno.ENOSPC
        assert list(mnt.iterdir()) == []


def test_no_room_to_record_the_roots(tmp_path):
    """The first write of a run, the roots the server checks reads against, on a full disk."""
    db = tmp_path / "db"
    roots = [tmp_path / f"{i:02d}-{'folder-with-a-long-name-' * 8}" for i in range(30)]
    for root in roots:  # ~ 20 kB of recorded roots: more pages than the catalog has spare
        _corpus(root, 1, 0, start=len(str(root)))
    encoder = CountingEncoder()
    with Index.open_for_write(db, encoder.id, encoder.dim) as index:
        _sqlite_full(index, spare_pages=0)
        with pytest.raises(DiskFull) as raised:
            index_paths(roots, index, encoder, get_settings(db=db, workers=0), progress=False)
    assert "record_roots" in "".join(traceback.format_tb(raised.value.__cause__.__traceback__))
    assert _state(db) == ([], [], [])
