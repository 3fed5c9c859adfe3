"""The encoder registry: names -> encoders, families listed, instances reused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from search.encoders import create_encoder, list_encoders, register_encoder, registry
from search.errors import BadRequest
from tests.fakes import FakeEncoder


@pytest.fixture
def fake_family() -> Iterator[list[tuple[str, Path | None]]]:
    """Register ``fake:<dim>`` for one test; records every factory call."""
    calls: list[tuple[str, Path | None]] = []

    def factory(spec: str, cache_dir: Path | None) -> FakeEncoder:
        calls.append((spec, cache_dir))
        return FakeEncoder(dim=int(spec or 8), id=f"fake:{spec}")

    list_encoders()  # builtins first, so the snapshot holds them
    saved = dict(registry._FACTORIES), dict(registry._DESCRIPTIONS), dict(registry._CACHE)
    register_encoder("fake", factory, "a test family")
    yield calls
    for live, old in zip((registry._FACTORIES, registry._DESCRIPTIONS, registry._CACHE), saved):
        live.clear()
        live.update(old)


def test_builtin_families_are_listed_with_descriptions():
    families = list_encoders()
    assert {"bundled", "clip"} <= set(families)
    assert "clip:<arch>/<pretrained-tag>" in families["clip"]
    assert all(desc for desc in families.values())


@pytest.mark.parametrize("name", ["nope", "nope:thing", "CLIP:ViT-B-32/openai", ""])
def test_unknown_families_are_bad_requests_listing_the_known_ones(name):
    with pytest.raises(BadRequest, match="known families: bundled, clip") as info:
        create_encoder(name)
    assert info.value.status == 400


def test_a_registered_family_gets_its_spec_and_cache_dir(fake_family, tmp_path):
    enc = create_encoder("fake:16", cache_dir=tmp_path)
    assert (enc.id, enc.dim) == ("fake:16", 16)
    assert fake_family == [("16", tmp_path)]
    assert list_encoders()["fake"] == "a test family"


def test_encoders_are_reused_per_name_and_cache_dir_unless_asked(fake_family, tmp_path):
    a = create_encoder("fake:8")
    assert create_encoder("fake:8") is a
    assert create_encoder("fake:8", cache_dir=tmp_path) is not a
    assert create_encoder("fake:4") is not a
    fresh = create_encoder("fake:8", reuse=False)
    assert fresh is not a and create_encoder("fake:8") is a
    assert len(fake_family) == 4


def test_a_failing_factory_caches_nothing(fake_family):
    with pytest.raises(ValueError):
        create_encoder("fake:not-a-number")
    assert ("fake:not-a-number", "None") not in registry._CACHE


def test_clip_names_reach_the_clip_factory():
    with pytest.raises(BadRequest, match="clip:<arch>@<path to a local checkpoint>"):
        create_encoder("clip:ViT-B-32", reuse=False)
