"""``crossfind search`` query parts, weights and filters -> the typed Query."""

from __future__ import annotations

import pytest

from cli import build_parser
from cli.search import build_query
from search.errors import BadRequest


def _query(*argv: str):
    args = build_parser().parse_args(["search", *argv])
    return build_query(args, args.query)


def test_parts_keep_order_and_weights_apply_to_the_part_before():
    q = _query("a beach", "--text", "people", "--weight", "-0.5", "--image", "dog.jpg",
               "--weight", "0.5", "--like", "12", "--fusion", "rrf")
    assert [(p.kind, p.weight) for p in q.parts] == [
        ("text", 1.0), ("text", -0.5), ("image", 0.5), ("item", 1.0)]
    assert q.parts[2].image_path == "dog.jpg" and q.parts[3].item_id == 12 and q.fusion == "rrf"
    q = _query("--weight", "2", "sunset", "--text", "sea")
    assert [p.weight for p in q.parts] == [2.0, 1.0] and q.fusion == "attention_learned"


def test_filters_min_score_offset():
    q = _query("x", "--filter", "ext=jpg,.PNG", "--filter", "path=/photos/", "--filter", "min_size=10k",
               "--filter", "after=2024-01-31", "--filter", "max_duration=30", "--modality", "image",
               "--min-score", "0.6", "--offset", "20", "--no-hybrid")
    f = q.filters
    assert f.ext == ["jpg", ".PNG"] and f.path_prefix == "/photos/" and f.min_size == 10_000
    assert f.modified_after.year == 2024 and f.max_duration_s == 30 and f.modality == ["image"]
    assert q.min_score == 0.6 and q.offset == 20 and q.hybrid is False


@pytest.mark.parametrize("bad", ["nokey", "colour=red", "min_size=lots"])
def test_bad_filters_name_the_fix(bad):
    with pytest.raises(BadRequest, match="filter"):
        _query("x", "--filter", bad)


def test_min_score_auto_and_sort():
    q = _query("x", "--min-score", "auto", "--sort", "date")
    assert q.min_score == "auto" and q.sort == "date"
    q = _query("x", "--min-score", "0.5")
    assert q.min_score == 0.5 and q.sort == "relevance"
    for bad in (["--min-score", "most"], ["--sort", "size"]):
        with pytest.raises(SystemExit):
            _query("x", *bad)
