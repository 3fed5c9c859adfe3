"""Damaged or racing index files: readers during a writer's compactions, a base file that is
gone or truncated, a damaged manifest or SQLite catalog. What the user sees, and that nothing
stored is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from search.catalog import NewContent, SegmentIn
from search.errors import Conflict
from search.index import CATALOG, MANIFEST, Index
from tests.fakes import FakeEncoder

ENC = FakeEncoder(dim=16)
REPO = Path(__file__).resolve().parents[2]


def _item(i: int) -> NewContent:
    return NewContent(f"{i:064d}", "text", 10, [SegmentIn(text=f"note {i} river")], [(f"/d/{i}.txt", 10, 1)])


def _add(index: Index, *numbers: int) -> None:
    index.add_contents([_item(i) for i in numbers], ENC.encode_text([f"note {i} river" for i in numbers]))


def _built(root: Path, n: int = 30) -> list[int]:
    """An index of ``n`` one-passage texts with a sealed base file; returns its segment ids."""
    with Index.open_for_write(root, ENC.id, ENC.dim) as index:
        _add(index, *range(n))
        assert index.compact(force=True) == "rebuilt"
        return sorted(index.store.ids().tolist())


# the writer of the race below: adds two contents, deletes one now and then, compacts, until told
_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from search.index import Index
    from tests.search.test_index_damage import ENC, _add
    root, stop = Path(sys.argv[1]), Path(sys.argv[2])
    with Index.open_for_write(root, ENC.id, ENC.dim) as index:
        i = 1000
        while not stop.exists():
            _add(index, i, i + 1)
            if i % 10 == 0:
                index.catalog.remove_paths([f"/d/{i - 5}.txt"])
            index.compact(force=True)
            i += 2
""")


def test_a_reader_catching_up_during_compactions_never_fails(tmp_path):
    """Each compaction writes a new base and deletes the old one; a reader that read the old
    name just before must read the name again, not call its index unreadable (it did, about
    one catch-up in twenty)."""
    root = tmp_path / "db"
    _built(root, 2)
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(root), str(stop)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True)
    reader = Index.open(root)
    reloads, deadline = 0, time.monotonic() + 20
    try:
        while reloads < 250 and time.monotonic() < deadline and writer.poll() is None:
            base = reader.store.base
            reader.refresh()  # raised Conflict("... is unreadable ...; --reindex") before
            reloads += reader.store.base is not base
    finally:
        stop.touch()
        _, err = writer.communicate(timeout=30)
        reader.close()
    assert writer.returncode == 0, err
    assert reloads >= 100  # enough new bases met to have met the race
    with Index.open(root) as fresh:  # and what it ends at is whole
        assert sorted(fresh.store.ids().tolist()) == sorted(fresh.catalog.segment_ids().tolist())


@pytest.mark.parametrize("damage", ["truncated", "missing", "ids_truncated", "other_dim"])
def test_a_damaged_base_file_is_rebuilt_by_the_writer_from_the_stored_vectors(tmp_path, damage):
    import faiss

    root = tmp_path / "db"
    ids = _built(root)
    base = root / "ann-000001.faiss"
    if damage == "truncated":
        base.write_bytes(base.read_bytes()[:100])
    elif damage == "missing":
        base.unlink()
    elif damage == "ids_truncated":
        ids_file = root / "ann-000001.faiss.ids.npy"
        ids_file.write_bytes(ids_file.read_bytes()[:60])
    else:
        faiss.write_index(faiss.IndexFlatIP(8), str(base))
    # a reader says what is wrong and the fix that embeds nothing again
    with pytest.raises(Conflict, match=r"ann-000001\.faiss is unreadable .*crossfind index.*embedded again"):
        Index.open(root)
    # the writer (what `crossfind index` opens) drops the derived file and rebuilds it
    with Index.open_for_write(root, ENC.id, ENC.dim) as index:
        assert sorted(index.store.ids().tolist()) == ids
        assert index.compact(force=True) == "rebuilt"
    with Index.open(root) as reader:
        assert reader.store.base is not None and sorted(reader.store.ids().tolist()) == ids
        assert reader.catalog.counts()["segments"] == len(ids)


def test_a_damaged_manifest_names_the_fix_and_reindex_rebuilds(tmp_path):
    root = tmp_path / "db"
    _built(root, 3)
    good = (root / MANIFEST).read_text()
    for damaged in (good[:20], "[]", '{"encoder": "fake"}', "\udcff"):
        (root / MANIFEST).write_text(damaged, errors="surrogateescape")
        with pytest.raises(Conflict, match=r"has an unreadable index\.json .*--reindex"):
            Index.open(root)
        with pytest.raises(Conflict, match="unreadable index.json"):
            Index.open_for_write(root, ENC.id, ENC.dim)
    with Index.open_for_write(root, ENC.id, ENC.dim, reindex=True) as index:
        assert index.store.count() == 0
    assert Index.open(root).manifest.encoder == ENC.id


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_sqlite_catalog_names_the_fix(tmp_path, damage):
    root = tmp_path / "db"
    _built(root, 3)
    catalog = root / CATALOG
    raw = catalog.read_bytes()
    catalog.write_bytes(raw[:8192] if damage == "truncated" else b"not a database" * 100)
    for name in (CATALOG + "-wal", CATALOG + "-shm"):
        (root / name).unlink(missing_ok=True)
    with pytest.raises(Conflict, match=r"catalog .*catalog\.sqlite3 is damaged .*--reindex"):
        Index.open(root)
    with pytest.raises(Conflict, match="is damaged"):
        Index.open_for_write(root, ENC.id, ENC.dim)


def _run_read_only(folder: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``crossfind *argv`` with ``folder`` read-only: a read-only bind mount in a mount
    namespace of its own as root (root writes through file modes), file modes otherwise."""
    cmd = [sys.executable, "-m", "cli", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO), "CROSSFIND_EXTRA_ENCODERS": "tests.fakes:register"}
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: no way to make a folder read-only")
        mount = ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{folder}" "{folder}" && exec "$@"', "sh"]
        probe = subprocess.run([*mount, "true"], capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            pytest.skip(f"cannot mount read-only here: {probe.stderr.strip()[:200]}")
        return subprocess.run([*mount, *cmd], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
    for p in modes:
        p.chmod(modes[p] & ~0o222)
    try:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_an_index_on_a_read_only_medium_answers_searches(tmp_path):
    """A SQLite catalog in WAL mode cannot be opened where its -shm file cannot be made: a
    search of an index on a read-only mount was a traceback ("unable to open database file")."""
    root, enc = tmp_path / "db", FakeEncoder()  # what `--model fake` builds
    with Index.open_for_write(root, enc.id, enc.dim) as index:
        index.add_contents([_item(i) for i in range(5)], enc.encode_text([f"note {i} river" for i in range(5)]))
    done = _run_read_only(root, "search", "note 3 river", "--db", str(root), "--model", "fake", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["path"] == "/d/3.txt"
    assert not (root / (CATALOG + "-wal")).exists()
