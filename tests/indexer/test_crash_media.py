"""kill -9 while videos and PDFs are being indexed, then re-run: store ids and catalog rows
agree, every video and document has all its segments, and nothing is left to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer import index_paths
from search.index import Index
from search.settings import get_settings
from tests.fakes import FakeEncoder
from tests.indexer.conftest import assert_consistent
from tests.indexer.documents import pdf
from tests.indexer.test_crash import REPO, _cmd, _env, _items, kill_when
from tests.indexer.videos import colour_scene, make_video, tone

N_VIDEOS, N_PDFS = 8, 6


def _corpus(root: Path) -> None:
    colours = [(220, 20, 30), (30, 200, 40), (20, 40, 230)]
    for i in range(N_VIDEOS):
        scenes = [colour_scene(colours[(i + k) % 3], seed=10 * i + k) for k in range(2)]
        make_video(root / "videos" / f"v{i}.mp4", scenes, 2.0, [tone(300 + 200 * i)] * 2)
    for i in range(N_PDFS):
        pdf(root / "docs" / f"d{i}.pdf", [f"page one of document {i} " * 30, f"page two {i} " * 40])


def _segments_per_content(db: Path) -> list[int]:
    with Index.open(db) as index:
        counts: dict[str, int] = {}
        for seg in index.catalog.segments(index.catalog.segment_ids().tolist()).values():
            counts[Path(seg.path).name] = counts.get(Path(seg.path).name, 0) + 1
    return [counts[k] for k in sorted(counts)]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_while_indexing_videos_and_documents_then_rerun(tmp_path):
    pytest.importorskip("av", reason="PyAV is not installed")
    root, db = tmp_path / "corpus", tmp_path / "db"
    _corpus(root)
    reference = tmp_path / "reference"
    enc = FakeEncoder()
    with Index.open_for_write(reference, enc.id, enc.dim) as index:
        index_paths([root], index, enc, get_settings(db=reference, workers=0), progress=False)
    rng = np.random.default_rng(7)
    partial = 0
    for _ in range(3):
        proc = subprocess.Popen(
            _cmd(root, db), env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        kill_when(proc, db, _items(db) + int(rng.integers(1, 5)), rng.uniform(0.0, 0.3))
        partial += 0 < _items(db) < N_VIDEOS + N_PDFS
    assert partial >= 1, "the kills should have interrupted a run half-way"
    done = subprocess.run(
        _cmd(root, db), env=_env(), cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["skipped"] == []
    with Index.open(db) as index:
        assert_consistent(index)
        assert index.info()["items"] == N_VIDEOS + N_PDFS
    assert _segments_per_content(db) == _segments_per_content(reference)
    again = subprocess.run(
        _cmd(root, db), env=_env(), cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert json.loads(again.stdout)["totals"]["unchanged"] == N_VIDEOS + N_PDFS
