"""A mixed corpus laid out as a user's folders, for ``crossfind eval-mixed``: photos with
captions, labelled sound clips and news texts from ``../shared/data``, none used in training.

- ``photos/``: the flickr8k_1k test photos (125) and the first ``EXTRA_PHOTOS`` flickr8k_extra
  test photos (by file name); each judged by its five captions.
- ``sounds/``: ESC-50 fold 4 (the audio test set) and ``URBAN_PER_CLASS`` UrbanSound8K fold-10
  clips per class (rows sharing a source recording with ESC-50 fold 4 left out), judged by
  their label. The classes of ``ABSENT_CLASSES`` are left out on purpose: queries for them
  measure how confidently the engine claims a sound that is not there.
- ``texts/``: the first ``TEXTS_PER_TOPIC`` agnews_test documents of each topic, judged by
  their title and body.

The files are copied (the data folder is read-only and links would lead outside the corpus);
``corpus.csv`` records each file's source and what it is judged by. coco_mini is never used.

The training-side twin (``select_dev_corpus``, ``eval-mixed --side dev``) is laid out and judged
the same way from items no learned part was trained on and the test corpus does not hold:
flickr8k_1k dev and flickr8k_extra dev photos, the audio encoder's validation clips (ESC-50
folds 1/2/3/5 and UrbanSound8K folds 1/2 rows ``train-audio`` held out), and the agnews_test
documents after the test corpus's. Settings are chosen there, never on the test corpus.
"""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from search.errors import BadRequest

EXTRA_PHOTOS = 375
URBAN_PER_CLASS = 10
TEXTS_PER_TOPIC = 75
# ESC-50 / UrbanSound8K classes kept out of the corpus (the absent-class queries ask for them)
ABSENT_CLASSES = frozenset(
    ["rooster", "crying_baby", "chainsaw", "church_bells", "toilet_flush", "helicopter",
     "sheep", "clock_tick", "gun_shot", "jackhammer"]
)
CORPUS_CSV = "corpus.csv"
_FIELDS = ("path", "modality", "source", "label", "text")


@dataclass(frozen=True)
class CorpusItem:
    path: str  # relative to the corpus folder
    modality: str  # image | audio | text
    source: str  # the data set it came from
    label: str  # audio class or news topic ("" for photos)
    text: str  # photo: its captions, one per line; text: title and body; audio: ""


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise BadRequest(
            f"cannot read {path} ({exc.strerror}); pass --data pointing at the shared data folder"
        ) from None


def _photos(data: Path, split: str = "test", total: int | None = None) -> list[tuple[Path, CorpusItem]]:
    """The flickr8k_1k photos of ``split``, then flickr8k_extra's first ones of it: ``EXTRA_PHOTOS``,
    or as many as make ``total`` in all. Judged by their captions."""
    out: list[tuple[Path, CorpusItem]] = []
    for name in ("flickr8k_1k", "flickr8k_extra"):
        limit = None if name == "flickr8k_1k" else (EXTRA_PHOTOS if total is None else max(0, total - len(out)))
        source = name if split == "test" else f"{name}_{split}"
        captions: dict[str, list[str]] = defaultdict(list)
        for row in _rows(data / name / "captions_all.csv"):
            if row["split"] == split:
                captions[row["path"]].append(row["caption"].strip())
        for rel in sorted(captions)[:limit]:
            src = data / name / rel
            item = CorpusItem(f"photos/{name}/{Path(rel).name}", "image", source, "",
                              "\n".join(captions[rel]))
            out.append((src, item))
    return out


def _sounds(data: Path) -> list[tuple[Path, CorpusItem]]:
    out = []
    for row in _rows(data / "esc50_subset" / "manifest.csv"):
        if row["split"] == "fold4" and row["label"] not in ABSENT_CLASSES:
            src = data / "esc50_subset" / row["path"]
            out.append((src, CorpusItem(f"sounds/esc50/{src.name}", "audio", "esc50_fold4",
                                        row["label"], "")))
    taken: dict[str, int] = defaultdict(int)
    for row in sorted(_rows(data / "urbansound8k_3folds" / "manifest.csv"), key=lambda r: r["path"]):
        label = row["label"]
        if (row["split"] != "fold10" or row["esc50_fold4_same_source"] == "True"
                or label in ABSENT_CLASSES or taken[label] >= URBAN_PER_CLASS):
            continue
        taken[label] += 1
        src = data / "urbansound8k_3folds" / row["path"]
        out.append((src, CorpusItem(f"sounds/urbansound8k/{src.name}", "audio",
                                    "urbansound8k_fold10", label, "")))
    return out


def _texts(data: Path, skip: int = 0) -> list[tuple[Path, CorpusItem]]:
    """``TEXTS_PER_TOPIC`` agnews_test documents of each topic, after its first ``skip``."""
    out = []
    seen: dict[str, int] = defaultdict(int)
    for row in _rows(data / "agnews_test" / "manifest.csv"):
        seen[row["label"]] += 1
        if not skip < seen[row["label"]] <= skip + TEXTS_PER_TOPIC:
            continue
        src = data / "agnews_test" / row["path"]
        body = src.read_text(encoding="utf-8")
        out.append((src, CorpusItem(f"texts/{src.name}", "text", "agnews_test", row["label"], body)))
    return out


def select_corpus(data: Path) -> list[tuple[Path, CorpusItem]]:
    """(source file, corpus item) for every file of the corpus, in corpus order."""
    data = Path(data)
    return _photos(data) + _sounds(data) + _texts(data)


def build_corpus(data: Path, out: Path, side: str = "test") -> list[CorpusItem]:
    """Copy the corpus (``side`` test: ``select_corpus``; dev: its training-side twin,
    ``select_dev_corpus``) into ``out`` (files already there with the right size are kept) and
    write its ``corpus.csv``. Returns the items."""
    out = Path(out)
    chosen = select_dev_corpus(data) if side == "dev" else select_corpus(data)
    for src, item in chosen:
        dst = out / item.path
        if dst.exists() and dst.stat().st_size == src.stat().st_size:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    items = [item for _, item in chosen]
    with open(out / CORPUS_CSV, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=_FIELDS)
        writer.writeheader()
        for item in items:
            writer.writerow({f: getattr(item, f) for f in _FIELDS})
    return items


def read_corpus(folder: Path) -> list[CorpusItem]:
    """The items of a corpus folder built by ``build_corpus`` (its ``corpus.csv``)."""
    rows = _rows(Path(folder) / CORPUS_CSV)
    if rows and set(_FIELDS) - set(rows[0]):
        raise BadRequest(f"{Path(folder) / CORPUS_CSV} needs the columns {', '.join(_FIELDS)}")
    return [CorpusItem(**{f: r[f] for f in _FIELDS}) for r in rows]


# the training-side twin of the corpus (``select_dev_corpus``): photos, clips and texts that no
# learned part was trained on and that the test corpus does not hold
DEV_PHOTOS = 500
# the shipped audio checkpoint's manifests in its order (its ``manifests``), with which
# ``train-audio`` --val-seed 0 drew the validation rows
AUDIO_MANIFESTS = ("esc50_folds1235", "urbansound8k_3folds", "fsdd")


def _dev_sounds(data: Path) -> list[tuple[Path, CorpusItem]]:
    """The audio encoder's validation clips (held out of its training, ``train-audio``'s
    default manifests and seed), spoken digits left out, absent classes left out. ESC-50 holds
    out 3 clips a class (fold 4 has 8), so the sound queries' dev-side P@10 is a weaker signal
    than the test corpus's."""
    from training.audio_openset import validation_rows
    from training.config import TrainConfig

    cfg = TrainConfig(manifests=[data / m / "manifest.csv" for m in AUDIO_MANIFESTS], out=Path("-"),
                      val_seed=0)
    out = []
    data = data.resolve()
    for row in validation_rows(cfg):
        src = Path(row["path"])
        source = src.relative_to(data).parts[0]
        if "fsdd" in source or row["label"] in ABSENT_CLASSES:
            continue
        out.append((src, CorpusItem(f"sounds/{source}/{src.name}", "audio", f"{source}_val",
                                    row["label"], "")))
    return out


def select_dev_corpus(data: Path) -> list[tuple[Path, CorpusItem]]:
    """The training-side twin of ``select_corpus``, for fitting what orders a mixed list."""
    data = Path(data)
    return (_photos(data, "dev", total=DEV_PHOTOS) + _dev_sounds(data)
            + _texts(data, skip=TEXTS_PER_TOPIC))
