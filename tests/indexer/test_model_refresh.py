"""A replaced audio model: the next run re-embeds the audio its predecessor made, only that."""

from __future__ import annotations

import json

from search.index import Index
from tests.indexer.corpus import CountingEncoder, image, text, wav


class VersionedEncoder(CountingEncoder):
    """CountingEncoder whose audio head carries the fingerprint of 'its weights'."""

    def __init__(self, weights: str) -> None:
        super().__init__()
        self.weights = weights

    def audio_head(self):
        head = super().audio_head()
        head.fingerprint = f"fake-audio@{self.weights}"
        return head


def _corpus(root):
    wav(root / "sounds" / "low.wav", freq=200.0)
    wav(root / "sounds" / "high.wav", freq=5000.0, seconds=2.0)
    image(root / "photos" / "red.png", "red")
    text(root / "notes" / "a.txt", "a dog barking in the yard")


def _audio_segments(db):
    with Index.open(db) as index:
        return sorted(index.catalog.segment_ids("audio").tolist()), index.models()


def test_new_audio_weights_re_embed_audio_once_and_nothing_else(tmp_path, settings, run_index):
    root = tmp_path / "c"
    _corpus(root)
    enc = VersionedEncoder("v1")
    report = run_index(enc, root)
    assert enc.embedded["audio"] > 0 and report.by_modality["audio"].added == 2
    before, models = _audio_segments(settings.db)
    assert models == {"audio": "fake-audio@v1"}, "the first run records the model it used"

    enc = VersionedEncoder("v1")
    report = run_index(enc, root)
    assert enc.embedded == {"text": 0, "image": 0, "audio": 0} and report.totals().total_changed() == 0

    enc = VersionedEncoder("v2")  # crossfind upgraded: new audio weights
    report = run_index(enc, root)
    audio = report.by_modality["audio"]
    assert (audio.refreshed, audio.unchanged, audio.added) == (2, 0, 0)
    assert enc.embedded["image"] == 0 and enc.embedded["text"] == 0
    assert enc.embedded["audio"] == audio.vectors > 0
    after, models = _audio_segments(settings.db)
    assert len(after) == len(before) and not set(after) & set(before), "every audio vector is new"
    assert models == {"audio": "fake-audio@v2"}
    assert report.to_json()["by_modality"]["audio"]["refreshed"] == 2

    enc = VersionedEncoder("v2")
    report = run_index(enc, root)
    assert enc.embedded["audio"] == 0 and report.by_modality["audio"].unchanged == 2


def test_refresh_keeps_every_path_of_the_content_even_outside_this_run(tmp_path, settings, run_index):
    """Content indexed under two folders: a run over one of them re-embeds it once and the
    path under the other folder still finds it."""
    one, two = tmp_path / "one", tmp_path / "two"
    wav(one / "bark.wav", freq=300.0)
    two.mkdir()
    (two / "bark-copy.wav").write_bytes((one / "bark.wav").read_bytes())
    run_index(VersionedEncoder("v1"), one, two)

    enc = VersionedEncoder("v2")
    report = run_index(enc, one)
    assert report.by_modality["audio"].refreshed == 2  # both paths, one content
    assert enc.embedded["audio"] == report.by_modality["audio"].vectors
    with Index.open(settings.db) as index:
        infos = index.catalog.segments(index.catalog.segment_ids("audio").tolist()).values()
        assert {p.split("/")[-1] for info in infos for p in info.paths} == {"bark.wav", "bark-copy.wav"}

    enc = VersionedEncoder("v2")  # the other folder is not refreshed again
    report = run_index(enc, two)
    assert enc.embedded["audio"] == 0 and report.by_modality["audio"].unchanged == 1


def test_an_index_from_before_fingerprints_has_its_audio_re_embedded(tmp_path, settings, run_index):
    root = tmp_path / "c"
    _corpus(root)
    run_index(CountingEncoder(), root)  # a head without a fingerprint: nothing recorded
    with Index.open(settings.db) as index:
        assert index.models() == {}
        assert "models" in index.info()
    enc = VersionedEncoder("v1")
    report = run_index(enc, root)
    assert report.by_modality["audio"].refreshed == 2 and report.by_modality["image"].unchanged == 1
    with Index.open(settings.db) as index:
        stored = json.loads(index.catalog.get_meta("model:audio"))
    assert stored["fingerprint"] == "fake-audio@v1" and stored["since"] > 0
