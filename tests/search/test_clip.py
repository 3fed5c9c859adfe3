"""The CLIP encoder, through the same registry names users pass: a tiny open_clip config with
random weights saved to a local checkpoint, a copied Hugging Face cache, and the offline errors."""

from __future__ import annotations

import json
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.catalog import SegmentIn
from search.encoders import create_encoder
from search.encoders.clip import ClipEncoder, _reachable, cached_pretrained
from search.engine import Engine
from search.errors import BadRequest, EncoderMismatch, ModelUnavailable
from search.index import Index
from search.query import Query
from tests.fakes import FakeEncoder

ARCH = "Tiny-Crossfind-Test"
EMBED = 16
TINY_CONFIG = {
    "embed_dim": EMBED,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def make_tiny_clip(folder: Path, arch: str = ARCH, config: dict | None = None) -> Path:
    """Write ``<arch>.json`` and a random-weight state_dict ``tiny.pt`` into ``folder``."""
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{arch}.json").write_text(json.dumps(config or TINY_CONFIG))
    open_clip.add_model_config(folder / f"{arch}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(arch)
    path = folder / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def encoder(checkpoint: Path) -> ClipEncoder:
    return create_encoder(f"clip:{ARCH}@{checkpoint}", reuse=False)  # type: ignore[return-value]


def _photos() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return [Image.new("RGB", (40, 30), (200, 20, 20)), noise, Image.new("L", (30, 50), 128)]


def test_id_is_the_full_name_with_an_absolute_checkpoint_path(encoder, checkpoint, monkeypatch):
    assert isinstance(encoder, ClipEncoder)
    assert encoder.id == f"clip:{ARCH}@{checkpoint}" and Path(checkpoint).is_absolute()
    assert encoder.dim == EMBED
    monkeypatch.chdir(checkpoint.parent)
    relative = create_encoder(f"clip:{ARCH}@./tiny.pt", reuse=False)
    assert relative.id == encoder.id


def test_text_vectors_are_normalised_deterministic_and_distinct(encoder):
    texts = ["a cup of coffee", "a red bicycle", "waves on a beach"]
    a = encoder.encode_text(texts)
    assert a.shape == (3, EMBED) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, encoder.encode_text(texts))
    np.testing.assert_allclose(encoder.encode_text(texts[1:2])[0], a[1], atol=1e-5)
    assert np.abs(a @ a.T - np.eye(3)).max() > 1e-3  # different texts, different vectors
    assert encoder.encode_text([]).shape == (0, EMBED)


def test_images_use_open_clips_eval_transform_and_normalise(encoder):
    photos = _photos()
    arrays = [encoder.preprocess_image(p) for p in photos]
    assert all(a.shape == (3, 32, 32) and a.dtype == np.float32 for a in arrays)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(arrays[1])), arrays[1])
    # OpenAI normalisation of a pure red pixel: (200/255 - 0.4815) / 0.2686
    assert arrays[0][0, 16, 16] == pytest.approx((200 / 255 - 0.48145466) / 0.26862954, abs=1e-4)
    vecs = encoder.encode_image(photos)
    assert vecs.shape == (3, EMBED) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_image_arrays(np.stack(arrays)), vecs, atol=1e-6)
    assert encoder.encode_image_arrays(np.zeros((0, 3, 32, 32), np.float32)).shape == (0, EMBED)


def test_an_index_built_with_clip_refuses_other_encoders(encoder, tmp_path):
    index = Index.open_for_write(tmp_path, encoder.id, encoder.dim)
    texts = ["a cup of coffee", "a red bicycle", "waves on a beach"]
    for i, t in enumerate(texts):
        _, ids = index.catalog.add_content(
            f"sha{i}", "text", len(t), [SegmentIn(text=t)], [(f"/d/{i}.txt", len(t), 1)]
        )
        index.add_vectors(ids, encoder.encode_text([t]))
    index.checkpoint()
    hits = Engine(index, encoder).search(Query.text("a red bicycle")).hits
    assert hits[0].path == "/d/1.txt" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(EncoderMismatch):
        Engine(index, FakeEncoder(dim=EMBED))
    index.close()
    with pytest.raises(EncoderMismatch, match="--reindex"):
        Index.open_for_write(tmp_path, "bundled", 384)
    with pytest.raises(EncoderMismatch, match="--reindex"):
        Index.open(tmp_path, encoder="clip:ViT-B-32/laion2b_s34b_b79k")


def test_hub_tag_offline_fails_at_once_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable) as info:
        create_encoder("clip:ViT-B-32/laion2b_s34b_b79k", reuse=False)
    assert time.perf_counter() - t0 < 2.0
    msg = info.value.message
    assert "not cached and the network is off" in msg
    assert "--model bundled" in msg and "clip:ViT-B-32@<local checkpoint>" in msg
    assert "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" in msg
    assert info.value.status == 503


def test_hub_tag_without_network_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    # the edge we fake: whether huggingface.co answers (CI may have a network)
    monkeypatch.setattr("search.encoders.clip._reachable", lambda host: False)
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="network is off"):
        create_encoder("clip:ViT-B-32/laion2b_s34b_b79k", reuse=False)
    assert time.perf_counter() - t0 < 2.0


def test_reachability_probe_gives_up_quickly():
    t0 = time.perf_counter()
    assert _reachable("crossfind.invalid") is False  # .invalid never resolves (RFC 2606)
    assert _reachable("") is False
    assert time.perf_counter() - t0 < 2.0


def test_a_copied_hugging_face_cache_loads_offline(encoder, checkpoint, tmp_path, monkeypatch):
    """The README's recipe: copy ~/.cache/huggingface/hub from a networked machine."""
    import open_clip.pretrained as pretrained

    tag_cfg = pretrained._pcfg(hf_hub="crossfind-test/tiny-clip/")
    monkeypatch.setitem(pretrained._PRETRAINED, ARCH, {"tiny": tag_cfg})
    repo = tmp_path / "hub" / "models--crossfind-test--tiny-clip"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    shutil.copy(checkpoint, repo / "snapshots" / revision / "open_clip_pytorch_model.bin")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cached_pretrained() == [f"clip:{ARCH}/tiny"]  # what `crossfind models` lists
    hub = create_encoder(f"clip:{ARCH}/tiny", reuse=False)
    assert hub.id == f"clip:{ARCH}/tiny" and hub.dim == EMBED
    np.testing.assert_allclose(
        hub.encode_text(["a dog"]), encoder.encode_text(["a dog"]), atol=1e-6
    )


@pytest.mark.parametrize(
    "name, needle",
    [
        ("clip:ViT-B-32", "clip:<arch>/<pretrained-tag>"),
        ("clip:", "clip:<arch>/<pretrained-tag>"),
        ("clip:No-Such-Arch/laion2b_s34b_b79k", "crossfind models --archs"),
        ("clip:ViT-B-32/no_such_tag", "laion2b_s34b_b79k"),
        ("clip:ViT-B-3/openai", "did you mean"),
    ],
)
def test_bad_names_are_bad_requests(name, needle):
    with pytest.raises(BadRequest, match=needle.replace("(", r"\(")):
        create_encoder(name, reuse=False)


def test_unknown_arch_with_a_checkpoint_and_no_config(checkpoint):
    with pytest.raises(BadRequest, match="No-Such-Arch.json beside your checkpoint"):
        create_encoder(f"clip:No-Such-Arch@{checkpoint}", reuse=False)


def test_missing_corrupt_and_mismatched_checkpoints_are_model_unavailable(checkpoint, tmp_path):
    with pytest.raises(ModelUnavailable, match="does not exist"):
        create_encoder(f"clip:{ARCH}@{tmp_path / 'absent.pt'}", reuse=False)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    for bad in (garbage, truncated):
        with pytest.raises(ModelUnavailable, match="cannot load CLIP weights"):
            create_encoder(f"clip:{ARCH}@{bad}", reuse=False)
    # the same weights under an architecture of another shape
    other = dict(TINY_CONFIG, embed_dim=24)
    (checkpoint.parent / "Tiny-Other-Test.json").write_text(json.dumps(other))
    with pytest.raises(ModelUnavailable, match="state_dict of open_clip.create_model"):
        create_encoder(f"clip:Tiny-Other-Test@{checkpoint}", reuse=False)


def test_a_broken_custom_config_is_a_bad_request(checkpoint, tmp_path):
    ckpt = tmp_path / "tiny.pt"
    shutil.copy(checkpoint, ckpt)
    (tmp_path / "Broken-Test.json").write_text('{"embed_dim": 8}')
    with pytest.raises(BadRequest, match="lacks vision_cfg, text_cfg"):
        create_encoder(f"clip:Broken-Test@{ckpt}", reuse=False)
    (tmp_path / "Broken-Test.json").write_text("{not json")
    with pytest.raises(BadRequest, match="not readable JSON"):
        create_encoder(f"clip:Broken-Test@{ckpt}", reuse=False)
