"""``--executor ray``: the same index as the local executor, on a real local Ray (2 CPUs)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexer import IndexReport, index_paths
from indexer.ray_embed import RayExecutor
from search.encoders.base import Encoder
from search.errors import BadRequest, ServiceUnavailable
from search.index import CATALOG, Index
from search.settings import Settings
from tests.fakes import FakeEncoder
from tests.indexer.conftest import assert_consistent
from tests.indexer.corpus import image, text, wav

REPO = Path(__file__).resolve().parents[2]
HOOKS = "tests.fakes:register"


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (starting one takes seconds); index_paths joins it."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for i in range(6):
        image(root / f"img{i}.jpg", ("red", "green", "blue")[i % 3], seed=i)
    for i in range(4):
        text(root / f"doc{i}.txt", f"document {i} about cats and dogs and the sea " * (8 + 10 * i))
    wav(root / "tone.wav", 440, 2.0)
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    return root


def _index(db: Path, encoder: Encoder, settings: Settings, corpus: Path,
           executor: RayExecutor | None = None) -> IndexReport:
    with Index.open_for_write(db, encoder.id, encoder.dim) as index:
        report = index_paths([str(corpus)], index, encoder, settings, progress=False, executor=executor)
        assert_consistent(index)
    return report


def _snapshot(db: Path) -> dict[tuple, np.ndarray]:
    """Every stored segment (its paths and fields) -> its vector."""
    index = Index.open(db)
    try:
        ids = index.catalog.segment_ids()
        info = index.catalog.segments(ids)
        vectors = index.store.reconstruct(ids)
    finally:
        index.close()
    out = {}
    for i, vector in zip(ids.tolist(), vectors):
        s = info[i]
        out[(tuple(sorted(s.paths)), s.modality, s.text, s.char_start, s.char_end, s.start_s,
             s.end_s, s.width, s.height)] = vector
    return out


def _counts(report: IndexReport) -> dict:
    data = report.to_json()
    return {"by_modality": data["by_modality"], "skipped": data["skipped"], "partial": data["partial"]}


@pytest.mark.slow
def test_ray_index_matches_local_and_reruns_embed_nothing(ray_cluster, corpus, settings, tmp_path):
    encoder = FakeEncoder()
    local = _index(tmp_path / "local", encoder, settings, corpus)
    ray = RayExecutor(encoder="fake", hooks=HOOKS)
    remote = _index(tmp_path / "ray", encoder, settings, corpus, ray)

    assert _counts(remote) == _counts(local)
    assert remote.totals().added == 11 and remote.totals().vectors > 11
    # the bad file is skipped, with the reason the local executor gives
    assert [(s.path, s.reason) for s in remote.skipped] == [
        (str(corpus / "bad.jpg"), "corrupt or truncated image: Truncated File Read")
    ]
    a, b = _snapshot(tmp_path / "local"), _snapshot(tmp_path / "ray")
    assert a.keys() == b.keys()
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5

    again = _index(tmp_path / "ray", encoder, settings, corpus, ray)
    assert again.totals().unchanged == 11 and again.totals().added == 0
    assert again.totals().vectors == 0 and again.encode_seconds == 0


@pytest.mark.slow
def test_an_encoder_actor_that_dies_is_restarted_and_its_batch_retried(
    ray_cluster, corpus, settings, tmp_path, caplog
):
    marker = tmp_path / "died"
    encoder = FakeEncoder()
    local = _index(tmp_path / "local", encoder, settings, corpus)
    ray = RayExecutor(encoder=f"fake:die_once={marker}", hooks=HOOKS)
    with caplog.at_level(logging.WARNING, logger="indexer"):
        remote = _index(tmp_path / "ray", encoder, settings, corpus, ray)
    assert marker.exists()  # an actor died in the middle of a batch
    assert not [r for r in caplog.records if "gave up" in r.getMessage()]  # Ray retried it
    assert _counts(remote) == _counts(local)
    a, b = _snapshot(tmp_path / "local"), _snapshot(tmp_path / "ray")
    assert a.keys() == b.keys()


@pytest.mark.slow
@pytest.mark.models
def test_ray_with_the_bundled_encoder_makes_the_local_vectors(
    ray_cluster, bundled_encoder, corpus, settings, tmp_path
):
    local = _index(tmp_path / "local", bundled_encoder, settings, corpus)
    remote = _index(tmp_path / "ray", bundled_encoder, settings, corpus,
                    RayExecutor(encoder="bundled", hooks=""))
    assert _counts(remote) == _counts(local)
    a, b = _snapshot(tmp_path / "local"), _snapshot(tmp_path / "ray")
    assert a.keys() == b.keys()
    # other batch compositions and thread counts: the same vectors up to float rounding
    # (measured: 7.8e-8 at most)
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5


def test_executor_values():
    assert RayExecutor.parse("ray") is None
    assert RayExecutor.parse("ray:auto") == "auto"
    assert RayExecutor.parse("ray:ray://head:10001") == "ray://head:10001"
    for bad in ("dask", "ray:", "rayy"):
        with pytest.raises(BadRequest, match="--executor"):
            RayExecutor.parse(bad)
    with pytest.raises(BadRequest, match="HOST:PORT"):
        RayExecutor(address="nohost").check()


def test_without_ray_installed_the_message_says_how(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when it is absent
    with pytest.raises(ServiceUnavailable, match=r"pip install 'ray\[data\]'"):
        RayExecutor().check()


def test_cli_unreachable_cluster_exits_2_fast(tmp_path, corpus):
    pytest.importorskip("ray")
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "index", str(corpus), "--db", str(tmp_path / "db"),
         "--executor", "ray:127.0.0.1:9"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert "cannot reach the Ray cluster at '127.0.0.1:9'" in done.stderr
    assert done.stderr.count("\n") == 1  # one line, no traceback, no Ray chatter
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "db" / CATALOG).exists()


@pytest.mark.slow
def test_an_encoder_that_cannot_start_on_ray_fails_in_one_line(ray_cluster, corpus, settings, tmp_path,
                                                                capfd):
    encoder = FakeEncoder()
    with pytest.raises(ServiceUnavailable) as caught:
        _index(tmp_path / "db", encoder, settings, corpus, RayExecutor(encoder="nosuch", hooks=HOOKS))
    assert caught.value.message.startswith("the Ray run failed: unknown encoder 'nosuch'")
    time.sleep(1)  # Ray reports a failed task from a thread of its own
    assert "Traceback" not in capfd.readouterr().err  # Ray's traces stay in its logs


def test_ray_auto_follows_ray_address_and_fails_fast_where_nothing_answers(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    with pytest.raises(ServiceUnavailable, match=r"cannot reach the Ray cluster at '[0-9.]+:9'"):
        RayExecutor(address="auto").check()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_mid_ray_run_then_rerun_completes_consistently(tmp_path):
    """The driver killed while Ray embeds: its local Ray dies with it, the batches written
    stay, and the next run (here the local executor: either may resume the other) completes."""
    from tests.indexer.test_crash import N_IMAGES, N_TEXT, _cmd, _corpus, _env, _items, kill_when

    root, db = tmp_path / "corpus", tmp_path / "db"
    expected_vectors = _corpus(root)
    proc = subprocess.Popen([*_cmd(root, db, delay_ms=100), "--executor", "ray"], env=_env(),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(proc, db, 4, 0.1)  # its Ray processes must die with it, as decoding workers do
    assert 0 < _items(db) < N_TEXT + N_IMAGES

    done = subprocess.run(_cmd(root, db, delay_ms=0), env=_env(), cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Index.open(db) as index:
        assert_consistent(index)
        info = index.info()
        assert info["items"] == N_TEXT + N_IMAGES and info["vectors"] == expected_vectors
