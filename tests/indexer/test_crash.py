"""kill -9 at any moment, then re-run: store ids and catalog rows agree and the work completes.

Drives the real ``crossfind index`` in a subprocess on the slow fake encoder (registered through
CROSSFIND_EXTRA_ENCODERS), with frequent checkpoints so that kills land before, during and
after store saves and catalog commits.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from search.index import CATALOG, Index
from search.text import split_passages
from tests.indexer.conftest import assert_consistent
from tests.indexer.corpus import image, text

REPO = Path(__file__).resolve().parents[2]
WORDS = ["river", "stone", "cloud", "forest", "lamp", "window", "garden", "bridge", "candle", "harbour", "meadow"]
N_TEXT, N_IMAGES = 24, 24


def _corpus(root: Path) -> int:
    """Distinct texts (several passages each) and images; returns the expected vector count."""
    rng = np.random.default_rng(0)
    vectors = 0
    for i in range(N_TEXT):
        body = " ".join(rng.choice(WORDS, 260)) + f" doc{i}"
        text(root / "texts" / f"t{i:02d}.txt", body)
        vectors += len(split_passages(body))
    for i in range(N_IMAGES):
        image(root / "images" / f"i{i:02d}.png", ("red", "green", "blue")[i % 3], seed=i)
    return vectors + N_IMAGES


def _cmd(root: Path, db: Path, delay_ms: int = 40) -> list[str]:
    return [
        sys.executable, "-m", "cli", "index", str(root), "--db", str(db),
        "--model", f"fake:delay_ms={delay_ms}", "--batch-size", "2", "--workers", "1", "--json",
    ]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CROSSFIND_EXTRA_ENCODERS": "tests.fakes:register",
        "CROSSFIND_CHECKPOINT_EVERY_S": "0.15",
    }


def _items(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db / CATALOG}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _gone(pids: list[int], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def kill_when(proc: subprocess.Popen, db: Path, items: int, pause_s: float) -> None:
    """kill -9 the indexing run once ``items`` files are committed and ``pause_s`` more passed;
    its decoding workers must die with it."""
    while proc.poll() is None and _items(db) < items:
        time.sleep(0.02)
    time.sleep(pause_s)
    workers = _children(proc.pid)
    proc.kill()
    proc.communicate()
    assert _gone(workers), "decoding workers outlived their killed parent"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_at_random_moments_then_rerun_completes_consistently(tmp_path):
    root, db = tmp_path / "corpus", tmp_path / "db"
    expected_vectors = _corpus(root)
    total_files = N_TEXT + N_IMAGES
    rng = np.random.default_rng(1234)
    partial_states = 0
    for round_ in range(5):
        proc = subprocess.Popen(_cmd(root, db), env=_env(), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if round_ == 0:  # anywhere: start-up, scan, first batches
            kill_when(proc, db, 0, rng.uniform(0.2, 1.5))
        else:  # mid-work: once some more files are committed, after a random extra moment
            kill_when(proc, db, _items(db) + int(rng.integers(1, 8)), rng.uniform(0.0, 0.3))
        partial_states += 0 < _items(db) < total_files
    assert partial_states >= 2, "the kills should have interrupted runs half-way"

    done = subprocess.run(_cmd(root, db), env=_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["skipped"] == []
    with Index.open(db) as index:  # read-only: no repair here, the CLI run must have left it exact
        assert_consistent(index)
        info = index.info()
        assert info["items"] == total_files and info["contents"] == total_files
        assert info["vectors"] == expected_vectors
        # every content has all its segments: one per image, one per passage
        by_content: dict[int, int] = {}
        for seg in index.catalog.segments(index.catalog.segment_ids().tolist()).values():
            by_content[seg.content_id] = by_content.get(seg.content_id, 0) + 1
        assert sum(by_content.values()) == expected_vectors and len(by_content) == total_files

    again = subprocess.run(_cmd(root, db), env=_env(), cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    assert json.loads(again.stdout)["totals"]["unchanged"] == total_files


@pytest.mark.slow
def test_ctrl_c_keeps_the_work_done_so_far(tmp_path):
    root, db = tmp_path / "corpus", tmp_path / "db"
    _corpus(root)
    env = {**_env(), "CROSSFIND_CHECKPOINT_EVERY_S": "1000"}  # only the interrupt saves
    # slow batches: on a loaded machine a fast run could finish before the interrupt arrives
    proc = subprocess.Popen(_cmd(root, db, delay_ms=150), env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and _items(db) < 10:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    with Index.open_for_write(db, "fake", 32) as index:  # reconciles what the interrupt cut
        assert_consistent(index)
        assert 10 <= index.info()["items"] < N_TEXT + N_IMAGES


def _cli_search(db: Path, text_: str, k: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "search", text_, "--db", str(db), "--k", str(k), "--json"],
        env=_env(), cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )


def _visible(db: Path) -> tuple[set[int], int]:
    """(segment ids, contents) a reader can see right now, read straight from SQLite."""
    with sqlite3.connect(f"file:{db / CATALOG}?mode=ro", uri=True, timeout=5) as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM segments")}
        contents = conn.execute("SELECT count(*) FROM contents").fetchone()[0]
    return ids, contents


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_readers_answer_after_kill_9_anywhere_with_no_repair(tmp_path):
    """After each kill -9 (rows and vectors commit together, so "between the row commit and the
    vector write" is any moment of the run) the CLI and the API answer at once, with no writer
    run in between: every row is searchable and every result is a row."""
    from fastapi.testclient import TestClient

    from search.settings import Settings
    from tests.fakes import FakeEncoder
    from web.app import create_app

    root, db = tmp_path / "corpus", tmp_path / "db"
    _corpus(root)
    rng = np.random.default_rng(99)
    env = {**_env(), "CROSSFIND_STORE_COMPACT_MIN": "8"}  # base rewrites happen mid-run too
    checked = 0
    live_searches = 0
    for _ in range(4):
        proc = subprocess.Popen(_cmd(root, db), env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        target = _items(db) + int(rng.integers(2, 8))
        reader: Index | None = None
        while proc.poll() is None and _items(db) < target:
            if reader is None and Index.exists(db) and _items(db):
                reader = Index.open(db)
            if reader is not None:  # a reader searching while the writer commits
                from search.engine import Engine
                from search.query import Query

                hits = Engine(reader, FakeEncoder()).search(Query.text("river stone", k=100)).hits
                assert all(h.path for h in hits)
                live_searches += 1
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.2))
        proc.kill()
        proc.communicate()
        if reader is not None:
            reader.close()
        segments, contents = _visible(db)
        if not contents:
            continue
        # the CLI reader, in a fresh process
        out = _cli_search(db, "river stone", 200)
        assert out.returncode == 0, out.stderr
        results = json.loads(out.stdout)["results"]
        assert len(results) == contents and {r["id"] for r in results} <= segments
        # the API reader
        app = create_app(Settings(db=db), encoder=FakeEncoder())
        with TestClient(app) as client:
            r = client.post("/api/search", json={"parts": [{"text": "river stone"}], "k": 200})
            assert r.status_code == 200, r.text
            assert len(r.json()["results"]) == contents
        with Index.open(db) as index:  # by construction: no repair was needed or run
            assert_consistent(index)
        checked += 1
    assert checked >= 3 and live_searches > 0
