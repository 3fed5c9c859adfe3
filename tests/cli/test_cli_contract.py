"""The command-line contract other tools rely on: exit codes, and the JSON of
``crossfind index``, ``search`` (one query and ``--queries``) and ``info``.

The CLI runs in-process (``cli.main``), exactly as the console script runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from search.encoders import registry
from search.settings import get_settings
from tests.indexer.corpus import image, text

TEXTS = {
    "bread.md": "# Baking bread\n\nMix flour, water, yeast and salt, knead the dough, let it "
                "rise for an hour and bake the loaf in a hot oven until the crust is brown.",
    "football.txt": "The striker scored twice in the second half and the home team won the "
                    "football match three to one in front of a cheering crowd.",
    "markets.txt": "Stock markets fell sharply on Monday as investors worried about interest "
                   "rates; shares of banks and technology companies led the decline.",
}
PHOTOS = {"coffee.jpg": "coffee", "rocket.jpg": "rocket", "cat.png": "chelsea",
          "astronaut.jpg": "astronaut"}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake_cli(monkeypatch):
    monkeypatch.setenv("CROSSFIND_EXTRA_ENCODERS", "tests.fakes:register")


# -- index: exit codes and report (fake encoder) ---------------------------------------------
def test_index_json_report_and_exit_codes(tmp_path, capsys, monkeypatch, fake_cli):
    text(tmp_path / "c" / "a.txt", "apples in a basket")
    image(tmp_path / "c" / "red.png", "red")
    (tmp_path / "c" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    db = tmp_path / "db"
    code, out, _ = _run(capsys, "index", tmp_path / "c", "--db", db, "--model", "fake", "--json")
    assert code == 0  # skipped files do not fail the run
    report = json.loads(out)
    assert report["by_modality"]["text"]["added"] == 1
    assert report["by_modality"]["image"]["added"] == 1
    assert [s["reason"].split(":")[0] for s in report["skipped"]] == ["corrupt or truncated image"]
    assert report["index"]["items"] == 2 and report["index"]["vectors"] == 2
    assert 0.0 <= report["model_busy_fraction"] <= 1.0 and report["seconds"] > 0

    # the index remembers its encoder: no --model needed; nothing changed
    code, out, _ = _run(capsys, "index", tmp_path / "c", "--db", db, "--quiet")
    assert code == 0 and out.startswith("0 added, 0 updated, 0 linked, 0 removed, 2 unchanged")

    # table output names the skipped file and why
    code, out, _ = _run(capsys, "index", tmp_path / "c", "--db", db)
    assert code == 0 and "broken.jpg: corrupt or truncated image" in out

    code, _, err = _run(capsys, "index", tmp_path / "c", "--db", db, "--model", "fake:delay_ms=0")
    assert code == 0  # same encoder id: fine
    # registered for this test only: the registry is process-wide
    monkeypatch.setitem(registry._FACTORIES, "other", lambda spec, cache: _Other())
    monkeypatch.setitem(registry._DESCRIPTIONS, "other", "tests only")
    code, _, err = _run(capsys, "index", tmp_path / "c", "--db", db, "--model", "other")
    assert code == 2 and "--reindex" in err and "'fake'" in err
    code, out, err = _run(capsys, "index", tmp_path / "c", "--db", db, "--model", "other",
                          "--reindex", "--json")
    assert code == 0 and json.loads(out)["index"]["items"] == 2

    code, _, err = _run(capsys, "index", tmp_path / "nowhere", "--db", db, "--model", "other")
    assert code == 2 and "no such file or folder" in err
    (tmp_path / "file-not-dir").write_text("x")
    code, _, err = _run(capsys, "index", tmp_path / "c", "--db", tmp_path / "file-not-dir",
                        "--model", "fake")
    assert code == 2 and "is a file; give a folder" in err
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "index.json").write_text("{not json")
    code, _, err = _run(capsys, "index", tmp_path / "c", "--db", tmp_path / "torn")
    assert code == 2 and "unreadable index.json" in err and "--reindex" in err


class _Other:
    """Stand-in for another encoder family (only its id and dim are read before the clash)."""

    def __new__(cls):
        from tests.fakes import FakeEncoder

        return FakeEncoder(dim=16, id="other")


# -- search and info contract (real bundled encoder) -----------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from skimage import data

    root = tmp_path_factory.mktemp("corpus")
    for name, loader in PHOTOS.items():
        Image.fromarray(np.asarray(getattr(data, loader)())).convert("RGB").save(root / name)
    for name, body in TEXTS.items():
        text(root / name, body)
    return root


@pytest.fixture
def bundled_cli(bundled_encoder, monkeypatch):
    """The CLI reuses the session's bundled encoder instead of loading a second copy."""
    key = ("bundled", str(get_settings().cache_dir))
    monkeypatch.setitem(registry._CACHE, key, bundled_encoder)
    return bundled_encoder


@pytest.mark.models
def test_search_info_and_queries_json_contract(corpus, tmp_path, capsys, bundled_cli, monkeypatch):
    db = tmp_path / "db"
    code, out, _ = _run(capsys, "index", corpus, "--db", db, "--json", "--workers", "1")
    assert code == 0
    report = json.loads(out)
    assert report["by_modality"]["image"]["added"] == len(PHOTOS)
    assert report["by_modality"]["text"]["added"] == len(TEXTS)
    assert report["skipped"] == []

    code, out, _ = _run(capsys, "search", "a cup of coffee", "--db", db, "--json", "--k", "5")
    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"query", "results"} and result["query"]["text"] == "a cup of coffee"
    assert 1 <= len(result["results"]) <= 5
    for hit in result["results"]:
        assert isinstance(hit["id"], int) and isinstance(hit["score"], float)
        assert hit["modality"] in ("image", "text") and Path(hit["path"]).exists()

    code, out, _ = _run(capsys, "search", "a cup of coffee", "--modality", "image", "--db", db,
                        "--json")
    images = json.loads(out)["results"]
    assert Path(images[0]["path"]).name == "coffee.jpg"
    assert {h["modality"] for h in images} == {"image"}

    queries = tmp_path / "queries.txt"
    queries.write_text("how to bake bread\n\na rocket launch\nwho won the football match\n")
    loads = []
    real_create = registry.create_encoder

    def counting_create(*a, **kw):
        loads.append(a[0])
        return real_create(*a, **kw)

    monkeypatch.setattr("search.encoders.create_encoder", counting_create)
    code, out, _ = _run(capsys, "search", "--queries", queries, "--db", db, "--json", "--k", "3")
    assert code == 0 and len(loads) == 1  # model loaded once for all queries
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["query"]["text"] for r in lines] == [
        "how to bake bread", "a rocket launch", "who won the football match"
    ]
    assert all({"id", "path", "modality", "score"} <= set(h) for r in lines for h in r["results"])
    assert Path(lines[0]["results"][0]["path"]).name == "bread.md"
    assert Path(lines[2]["results"][0]["path"]).name == "football.txt"

    code, out, _ = _run(capsys, "info", "--db", db, "--json")
    info = json.loads(out)
    assert {"items", "vectors", "encoder", "dim", "by_modality"} <= set(info)
    assert info["items"] == len(PHOTOS) + len(TEXTS) and info["vectors"] == info["items"]
    assert info["encoder"] == "bundled" and info["dim"] == 384
    assert info["by_modality"]["image"]["items"] == len(PHOTOS)
