"""eval-mixed: its metrics on hand-made lists, its query set on the shared data, and the
command end to end on a tiny corpus (fake encoder)."""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest

import cli
from tests.indexer.corpus import image, text
from training.mixed_corpus import ABSENT_CLASSES, CORPUS_CSV, select_corpus, select_dev_corpus
from training.mixed_eval import (
    Judged,
    f1_curve,
    modality_oracle_precision,
    oracle_f1,
    top_metrics,
)
from training.mixed_queries import TYPES, MixedQuery, read_queries


def _judged(spec: str) -> list[Judged]:
    """'I+ t- A+ tk-': modality letter (I image, A audio, t text), k = keyword, +/- relevant."""
    mods = {"I": "image", "A": "audio", "t": "text"}
    return [Judged(mods[s[0]], 0.5, 0.5, "k" in s, s.endswith("+")) for s in spec.split()]


def test_top_metrics_count_precision_ndcg_and_irrelevant_hits_per_modality():
    hits = _judged("I+ tk- A+ A- I- tk+ t- A- I- I-")
    m = top_metrics(hits, n_relevant=4)
    assert m["P@10"] == 0.3 and m["perfect_P@10"] == 0.4
    dcg = 1 + 1 / np.log2(4) + 1 / np.log2(7)
    ideal = sum(1 / np.log2(r + 2) for r in range(4))
    assert m["nDCG@10"] == pytest.approx(dcg / ideal)
    assert (m["irrelevant_image"], m["irrelevant_audio"], m["irrelevant_text"]) == (3, 2, 2)
    assert m["irrelevant_keyword"] == 1
    # more relevant items than 10: the perfect ranking fills the list
    assert top_metrics(hits, n_relevant=30)["perfect_P@10"] == 1.0


def test_modality_oracle_leaves_out_the_media_that_hold_nothing_relevant():
    hits = _judged("A- I+ A- t- I- I+ A- I+ t- I- I+ I- I+ I+")
    assert top_metrics(hits, 6)["P@10"] == 0.3
    # images only: all nine images, six of them relevant
    assert modality_oracle_precision(hits, {"image"}) == 0.6
    # the two texts take two places: the last image falls out
    assert modality_oracle_precision(hits, {"image", "text"}) == 0.5
    assert modality_oracle_precision(hits, {"image", "text", "audio"}) == 0.3


def test_the_query_set_splits_in_two_halves_by_id_alone():
    queries = read_queries()
    halves = Counter((q.type, q.split) for q in queries)
    for t in TYPES:
        dev, test = halves[(t, "dev")], halves[(t, "test")]
        assert 0.35 < dev / (dev + test) < 0.65, (t, dev, test)
    q = queries[0]
    assert MixedQuery(q.id, "sound", "something else").split == q.split


def test_cutoff_f1_global_curve_and_per_query_oracle():
    values = np.array([0.9, 0.8, 0.7, 0.2])
    relevant = np.array([True, False, True, False])
    # 3 relevant in the corpus, one of them never retrieved
    curve = f1_curve(values, relevant, 3, np.array([0.0, 0.75, 0.85, 1.0]))
    assert curve.tolist() == pytest.approx([2 * 2 / 7, 2 * 1 / 5, 2 * 1 / 4, 0.0])
    assert oracle_f1(values, relevant, 3) == pytest.approx(2 * 2 / 6)  # keep the top 3


def test_the_query_file_parses_and_names_its_types():
    queries = read_queries()
    assert len({q.id for q in queries}) == len(queries) >= 300
    counts = Counter(q.type for q in queries)
    assert set(counts) == set(TYPES) and min(counts.values()) >= 30
    assert all(q.audio for q in queries if q.type == "sound")
    assert all(q.text and not q.audio for q in queries if q.type == "topic")
    assert all(q.image and not q.text for q in queries if q.type == "photo")


@pytest.mark.shared_data
def test_every_query_has_relevant_items_and_absent_sounds_are_absent(shared_data):
    chosen = select_corpus(shared_data)
    items = [item for _, item in chosen]
    assert Counter(i.modality for i in items) == {"image": 500, "audio": 416, "text": 300}
    assert not any("coco" in str(src) for src, _ in chosen)
    present = {i.label for i in items if i.modality == "audio"}
    assert not present & ABSENT_CLASSES
    for q in read_queries():
        if q.type == "absent_audio":
            assert not q.audio
            continue
        kinds = {i.modality for i in items if q.relevant(i)}
        assert kinds, f"{q.id} {q.query!r} has nothing relevant in the corpus"
        if q.type == "mixed":
            assert len(kinds) >= 2, f"{q.id} {q.query!r} is mixed but only {kinds} are relevant"


@pytest.mark.shared_data
def test_the_training_side_corpus_shares_nothing_with_the_test_corpus(shared_data):
    dev = select_dev_corpus(shared_data)
    test = select_corpus(shared_data)
    items = [item for _, item in dev]
    assert Counter(i.modality for i in items) == {"image": 500, "audio": 314, "text": 300}
    assert not {src for src, _ in dev} & {src for src, _ in test}
    assert not {i.path for i in items} & {i.path for _, i in test}
    assert {i.source for i in items} == {"flickr8k_1k_dev", "flickr8k_extra_dev", "agnews_test",
                                         "esc50_folds1235_val", "urbansound8k_3folds_val"}
    assert not any("coco" in str(src) or "esc50_subset" in str(src) for src, _ in dev)
    assert not {i.label for i in items if i.modality == "audio"} & ABSENT_CLASSES
    # the clips are the ones the audio encoder was validated on, never trained on: ESC-50
    # holds out 10 % of each class, UrbanSound8K whole recordings
    per_class = Counter(i.label for i in items if i.source == "esc50_folds1235_val")
    assert set(per_class.values()) == {3}
    assert not any("/fold10/" in str(src) for src, _ in dev)


def test_eval_mixed_command_on_a_tiny_corpus(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CROSSFIND_EXTRA_ENCODERS", "tests.fakes:register")
    corpus = tmp_path / "corpus"
    rows = []
    for colour in ("red", "green", "blue"):
        image(corpus / "photos" / f"{colour}.png", colour)
        rows.append((f"photos/{colour}.png", "image", "test", "", f"a {colour} square"))
    for name, body in (("apples.txt", "red apples in a basket"), ("sea.txt", "the blue sea")):
        text(corpus / "texts" / name, body)
        rows.append((f"texts/{name}", "text", "test", "", body))
    with open(corpus / CORPUS_CSV, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "modality", "source", "label", "text"])
        writer.writerows(rows)
    queries = tmp_path / "q.jsonl"
    lines = [
        {"id": "q1", "type": "photo", "query": "red", "judge": {"image": r"\bred\b"}},
        {"id": "q2", "type": "mixed", "query": "blue",
         "judge": {"image": r"\bblue\b", "text": r"\bblue\b"}},
        {"id": "q3", "type": "absent_audio", "query": "a rooster", "judge": {}},
    ]
    queries.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    argv = ["eval-mixed", "--corpus", corpus, "--queries", queries, "--work", tmp_path / "w",
            "--model", "fake", "--json", "--per-query"]
    assert cli.main([str(a) for a in argv]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["queries"] == 2 and out["corpus"] == {"image": 3, "audio": 0, "text": 2}
    per = {r["id"]: r for r in out["per_query"]}
    assert per["q1"]["relevant"] == 1 and per["q2"]["relevant"] == 2
    # the fake encoder maps a red image onto the word "red": the one red photo comes first
    assert per["q1"]["P@10"] == 0.1 and per["q1"]["nDCG@10"] == 1.0
    assert per["q2"]["P@10"] == 0.2 and per["q2"]["perfect_P@10"] == 0.2
    assert set(out["by_type"]) == {"photo", "mixed"}
    assert {r["split"] for r in out["per_query"]} == set(out["by_split"]) <= {"dev", "test"}
    assert per["q1"]["modality_oracle_P@10"] == 0.1  # photos only: the red one
    assert out["absent_audio"]["queries"] == 1
    assert out["absent_audio"]["best_absent_relevance"] is None  # no clips in this corpus
    f1 = out["cutoff_f1"]
    assert 0 < f1["best_global_relevance"]["f1"] <= f1["oracle_per_query"] <= 1
    # a second run reuses the index and gives the same figures
    assert cli.main([str(a) for a in argv]) == 0
    assert json.loads(capsys.readouterr().out)["per_query"] == out["per_query"]
