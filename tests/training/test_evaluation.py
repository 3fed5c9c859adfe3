"""``evaluate_captions`` and ``crossfind eval`` on a small real captioned subset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from search.errors import BadRequest
from training.evaluation import evaluate_captions, read_captions

pytestmark = [pytest.mark.models, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def small_csv(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 30 Flickr8k test photos (150 captions), paths made relative to a new CSV."""
    src = shared_data / "flickr8k_1k" / "captions_all.csv"
    with open(src, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    keep = list(dict.fromkeys(r["path"] for r in rows))[:30]
    out = tmp_path_factory.mktemp("eval") / "captions.csv"
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "caption_idx", "caption", "split"])
        w.writeheader()
        for r in rows:
            if r["path"] in keep:
                w.writerow({**r, "path": str(src.parent / r["path"])})
    return out


def test_read_captions_groups_rows_by_image(small_csv: Path) -> None:
    data = read_captions(small_csv, "test")
    assert len(data.images) == 30 and len(data.captions) == 150
    assert all(p.is_file() for p in data.images)
    assert data.caption_image[:6] == [0, 0, 0, 0, 0, 1]
    with pytest.raises(BadRequest, match="no captions"):
        read_captions(small_csv, "nonexistent")


def test_eval_on_a_small_subset_gives_sane_recalls(bundled_encoder, small_csv: Path) -> None:
    result = evaluate_captions(small_csv, "test", bundled_encoder)
    assert result["n_images"] == 30 and result["n_captions"] == 150
    for key in ("t2i", "i2t"):
        r = result[key]
        assert 0 <= r["R@1"] <= r["R@5"] <= r["R@10"] <= 1
        assert r["median_rank"] >= 1
    # chance R@5 is 5/30; measured: t2i R@1 .70 R@5 .98, i2t R@5 .90 (label bridge alone:
    # t2i R@5 .73, i2t R@5 .47)
    assert result["t2i"]["R@5"] >= 0.85
    assert result["i2t"]["R@5"] >= 0.75
    assert result["t2i"]["median_rank"] <= 2


def test_cli_eval_prints_the_json_contract(small_csv: Path, capsys: pytest.CaptureFixture) -> None:
    from cli import main

    assert main(["eval", "--captions", str(small_csv), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"t2i", "i2t", "n_images", "n_captions"} <= set(out)
    assert set(out["t2i"]) == {"R@1", "R@5", "R@10", "median_rank"}
    assert out["n_images"] == 30
