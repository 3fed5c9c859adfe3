"""``--store``: ANN indexes built through the indexer have good recall, deletes only mask,
``faiss:auto`` switches at its threshold with searches staying correct, ``info`` reports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer import index_paths
from search.index import Index
from search.settings import get_settings
from search.store import StoreOptions
from tests.fakes import FakeEncoder

REPO = Path(__file__).resolve().parents[2]
ENC = FakeEncoder()


def _corpus(root: Path, n_files: int, start: int = 0, seed: int = 0) -> None:
    """Text files of ~700 words from a small vocabulary: ~8 passages (vectors) each."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(400)]
    root.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n_files):
        topic = rng.choice(vocab, 40)  # each file leans on its own words: clustered vectors
        words = np.where(rng.random(700) < 0.6, rng.choice(topic, 700), rng.choice(vocab, 700))
        (root / f"f{i:04d}.txt").write_text(" ".join(words))


def _index(db: Path, root: Path, store: str | None = None, **options: object) -> Index:
    settings = get_settings(db=db, workers=0, batch_size=64)
    opts = StoreOptions(**{"compact_min": 64, **options})  # type: ignore[arg-type]
    index = Index.open_for_write(db, ENC.id, ENC.dim, store=store, options=opts)
    index_paths([str(root)], index, ENC, settings, progress=False)
    return index


def _recall(index: Index, n_queries: int = 60, k: int = 10) -> float:
    """recall@k of the index's store against exact search over the stored vectors."""
    ids, vectors = index.catalog.get_vectors(index.catalog.segment_ids(), ENC.dim)
    rng = np.random.default_rng(1)
    queries = ENC.encode_text([" ".join(rng.choice([f"w{i}" for i in range(400)], 6)) for _ in range(n_queries)])
    _, found = index.store.search(queries, k)
    exact = ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]
    return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found.tolist(), exact.tolist())]))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ann") / "c"
    _corpus(root, 260)
    return root


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8", "IVF16,PQ8", "HNSW16"])
def test_ann_stores_built_by_the_indexer_have_recall(tmp_path, corpus, factory):
    with _index(tmp_path / "db", corpus, f"faiss:{factory}") as index:
        base = index.store.base
        assert base is not None and base.factory == factory and base.n == index.store.count() > 1500
        assert not index.store.tail_ids.size  # the end of the run folded everything in
        assert _recall(index) >= 0.9
        knob = "nprobe" if "IVF" in factory else "efSearch"
        assert knob in base.params  # chosen for the recall target and saved with the index
    with Index.open(tmp_path / "db") as reader:  # a fresh reader gets the same index and knobs
        assert reader.store.base is not None and reader.store.base.params == base.params
        assert _recall(reader) >= 0.9


def test_deletes_on_an_ann_store_mask_and_never_rebuild(tmp_path, corpus):
    db = tmp_path / "db"
    _index(db, corpus, "faiss:HNSW16").close()
    files = sorted(p.name for p in db.glob("ann-*"))
    gone = corpus.parent / "gone"
    gone.mkdir()
    for path in sorted(corpus.iterdir())[:5]:
        path.rename(gone / path.name)  # 5 files vanish: their passages are deleted
    try:
        with _index(db, corpus) as index:
            assert sorted(p.name for p in db.glob("ann-*")) == files  # no new base file
            masked = set(index.store.masked)
            assert len(masked) >= 5 and not masked & set(index.catalog.segment_ids().tolist())
            _, found = index.store.search(ENC.encode_text(["w1 w2 w3"]), 200)
            assert not set(found[0].tolist()) & masked
            assert _recall(index) >= 0.9
    finally:
        for path in gone.iterdir():
            path.rename(corpus / path.name)


def test_auto_switches_at_its_threshold_and_searches_stay_correct(tmp_path):
    root, db = tmp_path / "c", tmp_path / "db"
    _corpus(root, 40, seed=3)
    with _index(db, root, exact_max=600) as index:  # ~320 vectors: exact
        assert index.info()["store"] == "faiss:Flat"
        query = ENC.encode_text(["w5 w17 w230"])
        before = index.store.search(query, 10)[1][0].tolist()
    _corpus(root, 60, start=40, seed=4)  # ~800 vectors: past the threshold
    with _index(db, root, exact_max=600) as index:
        info = index.info()
        assert info["store"].startswith("faiss:IVF") and info["store_spec"] == "faiss:auto"
        assert info["store_params"]["nprobe"] >= 1 and info["store_params"]["indexed"] == info["vectors"]
        ids, vectors = index.catalog.get_vectors(index.catalog.segment_ids(), ENC.dim)
        exact = ids[np.argsort(-(query @ vectors.T)[0])[:10]].tolist()
        after = index.store.search(query, 10)[1][0].tolist()
        assert len(set(after) & set(exact)) >= 9
        assert set(before) & set(exact)  # the old items are still found after the switch
        assert _recall(index) >= 0.9


def test_cli_store_flag_setting_and_info_json(tmp_path):
    root, db = tmp_path / "c", tmp_path / "db"
    _corpus(root, 160, seed=5)
    env = {**os.environ, "PYTHONPATH": str(REPO), "CROSSFIND_EXTRA_ENCODERS": "tests.fakes:register",
           "CROSSFIND_STORE_COMPACT_MIN": "64"}

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli", *args], env={**env, **extra}, cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)

    bad = cli("index", str(root), "--db", str(db), "--model", "fake", "--store", "faiss:NoSuch12")
    assert bad.returncode != 0 and "faiss:auto" in bad.stderr and not db.joinpath("index.json").exists()
    unknown = cli("index", str(root), "--db", str(db), "--model", "fake", "--store", "annoy:x")
    assert unknown.returncode != 0 and "unknown vector store" in unknown.stderr
    done = cli("index", str(root), "--db", str(db), "--model", "fake", "--json", CROSSFIND_STORE="faiss:IVF8,SQ8")
    assert done.returncode == 0, done.stderr
    info = json.loads(cli("info", "--db", str(db), "--json").stdout)
    assert info["store"] == "faiss:IVF8,SQ8" and info["store_spec"] == "faiss:IVF8,SQ8"
    assert info["store_params"]["rerank"] is True and info["store_params"]["nprobe"] >= 1
    # the flag beats the setting; switching rebuilds from the stored vectors, nothing re-embedded
    again = cli("index", str(root), "--db", str(db), "--store", "faiss:Flat", "--json", CROSSFIND_STORE="faiss:HNSW8")
    assert json.loads(again.stdout)["totals"]["unchanged"] == 160
    info = json.loads(cli("info", "--db", str(db), "--json").stdout)
    assert info["store"] == "faiss:Flat" and info["store_spec"] == "faiss:Flat"


@pytest.mark.parametrize("spec", ["faiss:HNSW1", "faiss:HNSW0", "faiss:IVF0,Flat", "faiss:PQ3x0",
                                  "faiss:IDMap,Flat", "faiss:IVF16,PQ0"])
def test_factories_faiss_accepts_but_crashes_on_are_refused_before_any_work(spec):
    """FAISS's factory accepts these, then HNSW1 segfaults and HNSW0 aborts the indexer (and every
    later run, the spec being saved with the index), IVF0 fails every search, IDMap every build."""
    from search.errors import BadRequest
    from search.store import StoreSpec

    with pytest.raises(BadRequest, match="faiss:auto"):
        StoreSpec.parse(spec)
    assert str(StoreSpec.parse("faiss:HNSW2")) == "faiss:HNSW2"
    assert str(StoreSpec.parse("faiss:IVF1024,PQ48x4fs")) == "faiss:IVF1024,PQ48x4fs"
