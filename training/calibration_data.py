"""Judged training-side data for the relevance calibration: a pool of photos, clips and texts
embedded as an index holds them, and queries whose relevance is judged per item.

Only training-side sets: flickr8k_1k train/dev photos and flickr8k_extra train/dev (photos, and
their captions as texts), ESC-50 folds 1/2/3/5, UrbanSound8K folds 1-2 and FSDD train. Never
coco_mini, ESC-50 fold 4, UrbanSound8K fold 10 or any test split.

Judging: a text query has a caption regex (a photo is relevant when any of its five captions
matches, as ``crossfind eval-mixed`` judges; a text when it matches) and a set of sound labels
(a clip is relevant when its label is in the set). An image query's relevant photos and texts
share a concept with it (a concept whose regex one of its captions matches); an audio query's
relevant clips share its label.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.audio import iter_windows, load_audio
from search.encoders.audio_labels import canonical
from search.encoders.base import Encoder
from search.media import open_image

log = logging.getLogger(__name__)

CACHE_VERSION = 1

# concept phrases: (query, caption regex, sound labels that also answer it)
CONCEPTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("a dog", r"\b(dogs?|pupp(y|ies)|poodle|terrier|retriever|collie|labrador|greyhound)\b", ("dog",)),
    ("a pet dog", r"\b(dogs?|pupp(y|ies)|poodle|terrier|retriever|collie|labrador)\b", ("dog",)),
    ("a black dog", r"\bblack (and \w+ )?dogs?\b", ()),
    ("a brown dog", r"\bbrown (and \w+ )?dogs?\b", ()),
    ("two dogs playing", r"\b(two|three|2) (\w+ ){0,2}dogs\b", ()),
    ("a dog catching a frisbee", r"\bfrisbee\b", ()),
    ("a dog running on grass", r"\bdogs?\b.*\bgrass(y)?\b|\bgrass(y)?\b.*\bdogs?\b", ()),
    ("a dog swimming in water", r"\bdogs?\b.*\b(water|swim\w*|lake|river|pool)\b", ()),
    ("a cat", r"\b(cats?|kittens?)\b", ("cat",)),
    ("a horse", r"\bhorses?\b", ()),
    ("a bird", r"\bbirds?\b", ("chirping_birds", "crow", "rooster", "hen")),
    ("a cow", r"\bcows?\b|\bcattle\b", ("cow",)),
    ("a child", r"\b(child|children|kids?|boys?|girls?|toddlers?|baby)\b", ("children_playing", "crying_baby")),
    ("a little girl", r"\b(little|young|small) girls?\b", ()),
    ("a young boy", r"\b(little|young|small) boys?\b", ()),
    ("a baby", r"\b(baby|babies|infant|toddler)\b", ("crying_baby",)),
    ("a man", r"\b(man|men|guy)\b", ()),
    ("a woman", r"\b(woman|women|lady)\b", ()),
    ("a crowd of people", r"\b(crowd|crowded|audience|spectators)\b", ("clapping",)),
    ("people sitting on a bench", r"\bbench(es)?\b", ()),
    ("a bicycle", r"\b(bikes?|bicycles?|biker|bicyclist|cyclist)\b", ()),
    ("a motorcycle", r"\b(motorcycles?|motorbike|dirt bike|motocross)\b", ("engine",)),
    ("a car", r"\b(cars?|truck|jeep|vehicle)\b", ("car_horn", "engine", "engine_idling")),
    ("a boat", r"\b(boats?|canoe|kayak|raft|sailboat|ship)\b", ()),
    ("a skateboarder", r"\bskateboard\w*\b", ()),
    ("surfing", r"\bsurf\w*\b", ("sea_waves",)),
    ("skiing", r"\bski(s|er|ers|ing)?\b", ()),
    ("snowboarding", r"\bsnowboard\w*\b", ()),
    ("snow", r"\bsnow\w*\b", ()),
    ("the beach", r"\b(beach|shore|sand|sandy)\b", ("sea_waves",)),
    ("the ocean", r"\b(ocean|sea|waves?)\b", ("sea_waves",)),
    ("a lake or river", r"\b(lake|river|stream|creek|pond)\b", ("water_drops", "pouring_water")),
    ("a swimming pool", r"\bpool\b", ()),
    ("splashing in water", r"\bsplash\w*\b", ("pouring_water", "water_drops")),
    ("mountains", r"\b(mountains?|cliff|hill|hillside|rock climbing|climb\w*)\b", ()),
    ("rock climbing", r"\bclimb\w*\b", ()),
    ("a forest", r"\b(forest|woods|wooded|trees)\b", ("chirping_birds", "insects")),
    ("grass", r"\bgrass(y)?\b|\blawn\b|\bfield\b", ("crickets", "insects")),
    ("a city street", r"\b(street|city|road|sidewalk|crosswalk)\b", ("car_horn", "siren", "street_music")),
    ("a building", r"\b(buildings?|house|church|store|shop)\b", ("church_bells",)),
    ("football", r"\bfootball\b", ()),
    ("soccer", r"\bsoccer\b", ()),
    ("basketball", r"\bbasketball\b", ()),
    ("baseball", r"\bbaseball\b|\bbatter\b", ()),
    ("people playing sports", r"\b(football|soccer|basketball|baseball|rugby|tennis|volleyball|hockey|game)\b", ()),
    ("a ball", r"\bballs?\b", ()),
    ("a man jumping", r"\bjump\w*\b", ()),
    ("people running", r"\b(run|runs|running|runner|race|racing)\b", ("footsteps",)),
    ("someone riding", r"\brid(e|es|ing|er)\b", ()),
    ("music", r"\b(music|guitar|drums?|band|musician|sing\w*|concert|instrument)\b", ("street_music",)),
    ("a guitar", r"\bguitars?\b", ()),
    ("people eating", r"\b(eat\w*|food|meal|dinner|lunch|restaurant)\b", ("drinking_sipping",)),
    ("a plate of food", r"\b(food|plate|meal|pizza|cake)\b", ()),
    ("a red shirt", r"\bred (shirt|t-shirt|top|jacket)\b", ()),
    ("someone in a blue jacket", r"\bblue (jacket|coat)\b", ()),
    ("a hat", r"\b(hat|cap|helmet)s?\b", ()),
    ("sunglasses", r"\bsunglasses\b", ()),
    ("a tent", r"\btents?\b", ()),
    ("a fountain", r"\bfountains?\b", ("pouring_water", "water_drops")),
    ("night", r"\b(night|dark)\b", ("crickets",)),
    ("a bridge", r"\bbridges?\b", ()),
    ("a train", r"\btrains?\b", ("train",)),
    ("an airplane", r"\b(airplane|plane|jet|aircraft)s?\b", ("airplane",)),
    ("fire", r"\b(fire|fireplace|campfire|flames?)\b", ("crackling_fire",)),
    ("a wedding", r"\b(wedding|bride|groom)\b", ()),
    ("a parade", r"\bparade\b", ("street_music",)),
    ("people dancing", r"\bdanc\w*\b", ("street_music",)),
    ("a playground", r"\b(playground|swing|slide)\b", ("children_playing",)),
    ("the desert", r"\b(desert|dunes?)\b", ()),
    ("rain", r"\b(rain|raining|rainy|umbrella|wet)\b", ("rain", "thunderstorm")),
)

# sound paraphrases: (query, caption regex or "" , sound labels)
SOUNDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("a barking dog", r"\bbark\w*\b", ("dog",)),
    ("dogs woofing", r"\bbark\w*\b", ("dog",)),
    ("a cat meowing loudly", r"\bmeow\w*\b", ("cat",)),
    ("an engine revving", r"", ("engine", "engine_idling")),
    ("a car idling", r"", ("engine_idling", "engine")),
    ("a honking horn", r"\bhonk\w*\b", ("car_horn",)),
    ("an ambulance siren", r"\b(ambulance|siren)\b", ("siren",)),
    ("a police siren", r"\b(police|siren)\b", ("siren",)),
    ("a rainstorm", r"\b(rain|storm)\b", ("rain", "thunderstorm")),
    ("thunder rumbling", r"\b(thunder|storm|lightning)\b", ("thunderstorm",)),
    ("waves on the shore", r"\bwaves?\b", ("sea_waves",)),
    ("birdsong", r"\bbirds?\b", ("chirping_birds",)),
    ("a rooster at dawn", r"\broosters?\b", ("rooster",)),
    ("chickens clucking", r"\b(chickens?|hens?)\b", ("hen",)),
    ("a pig grunting", r"\bpigs?\b", ("pig",)),
    ("a sheep", r"\bsheep\b", ("sheep",)),
    ("a cow lowing", r"\bcows?\b", ("cow",)),
    ("frogs croaking", r"\bfrogs?\b", ("frog",)),
    ("a crow", r"\bcrows?\b", ("crow",)),
    ("crickets at night", r"\bcrickets?\b", ("crickets",)),
    ("buzzing insects", r"\b(insects?|bees?|flies)\b", ("insects",)),
    ("a baby crying", r"\bcry\w*\b", ("crying_baby",)),
    ("someone coughing", r"\bcough\w*\b", ("coughing",)),
    ("a sneeze", r"\bsneez\w*\b", ("sneezing",)),
    ("snoring while asleep", r"\b(sleep\w*|asleep|snor\w*)\b", ("snoring",)),
    ("heavy breathing", r"\bbreath\w*\b", ("breathing",)),
    ("people laughing together", r"\blaugh\w*\b", ("laughing",)),
    ("applause", r"\b(clap\w*|applau\w*)\b", ("clapping",)),
    ("footsteps on a floor", r"\b(walk\w*|footsteps)\b", ("footsteps",)),
    ("knocking at the door", r"\bknock\w*\b", ("door_wood_knock",)),
    ("a creaky door", r"\bdoors?\b", ("door_wood_creaks",)),
    ("glass shattering", r"\bglass\b", ("glass_breaking",)),
    ("fireworks", r"\bfireworks?\b", ("fireworks",)),
    ("a gunshot", r"\b(gun|guns|shoot\w*|rifle)\b", ("gun_shot",)),
    ("a chainsaw", r"\bchainsaw\b", ("chainsaw",)),
    ("sawing wood", r"\bsaw(ing)?\b", ("hand_saw", "chainsaw")),
    ("a power drill", r"\bdrill\w*\b", ("drilling",)),
    ("a jackhammer on the road", r"\bjackhammer\b|\bconstruction\b", ("jackhammer",)),
    ("an air conditioner humming", r"", ("air_conditioner",)),
    ("a helicopter overhead", r"\bhelicopter\b", ("helicopter",)),
    ("a plane taking off", r"\b(plane|airplane|jet)\b", ("airplane",)),
    ("a train going by", r"\btrains?\b", ("train",)),
    ("church bells", r"\bchurch\b|\bbells?\b", ("church_bells",)),
    ("an alarm clock", r"\balarm\b", ("clock_alarm",)),
    ("a ticking clock", r"\bclocks?\b", ("clock_tick",)),
    ("typing on a computer", r"\b(typing|keyboard|computer|laptop)\b", ("keyboard_typing", "mouse_click")),
    ("clicking a mouse", r"\bmouse\b", ("mouse_click",)),
    ("a vacuum cleaner", r"\bvacuum\b", ("vacuum_cleaner",)),
    ("a washing machine", r"\b(washing machine|laundry)\b", ("washing_machine",)),
    ("a toilet flushing", r"\btoilet\b", ("toilet_flush",)),
    ("brushing teeth", r"\b(toothbrush|brushing)\b", ("brushing_teeth",)),
    ("water dripping", r"\bdrip\w*\b", ("water_drops",)),
    ("pouring a drink", r"\bpour\w*\b", ("pouring_water",)),
    ("someone sipping a drink", r"\b(drink\w*|sip\w*)\b", ("drinking_sipping",)),
    ("opening a can", r"\bcans?\b", ("can_opening",)),
    ("a crackling campfire", r"\b(campfire|fire)\b", ("crackling_fire",)),
    ("strong wind", r"\bwind\w*\b", ("wind",)),
    ("kids shouting at play", r"\b(children|kids)\b.*\bplay\w*\b", ("children_playing",)),
    ("a street musician", r"\b(musician|guitar|perform\w*)\b", ("street_music",)),
    ("someone saying seven", r"", ("7",)),
    ("a voice counting numbers", r"", tuple(str(i) for i in range(10))),
    ("the spoken word three", r"", ("3",)),
    ("a man says zero", r"", ("0",)),
)


@dataclass
class Pool:
    """Embedded items (rows of ``vectors``: photos, text documents, then clip windows) and what
    judges them."""

    photo_vecs: np.ndarray  # [photos, dim]
    photo_captions: list[list[str]]
    text_vecs: np.ndarray  # [texts, dim]
    texts: list[str]
    window_vecs: np.ndarray  # [windows, dim]
    window_clip: np.ndarray  # [windows] -> clip index
    clip_vecs: np.ndarray  # [clips, dim]: a query's vector for the clip (mean of windows)
    clip_labels: list[str]

    def clip_scores(self, q: np.ndarray) -> np.ndarray:
        """Cosine of queries ``q`` [n, dim] to each clip as an index ranks it (best window)."""
        s = q @ self.window_vecs.T
        out = np.full((len(q), len(self.clip_labels)), -np.inf, dtype=np.float32)
        np.maximum.at(out.T, self.window_clip, s.T)
        return out


def _captions(csv_path: Path, splits: set[str]) -> dict[Path, list[str]]:
    out: dict[Path, list[str]] = {}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["split"] in splits:
                out.setdefault(csv_path.parent / row["path"], []).append(row["caption"])
    return out


def _rows(manifest: Path, splits: set[str]) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] in splits]


def _sample(items: list, n: int, rng: np.random.Generator) -> list:
    if len(items) <= n:
        return items
    return [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]


def _per_label(rows: list[dict[str, str]], n: int, rng: np.random.Generator) -> list[dict[str, str]]:
    by: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)
    return [r for label in sorted(by) for r in _sample(by[label], n, rng)]


def select(data: Path, seed: int = 0, photos: int = 1200, texts: int = 600,
           clips_per_label: int = 12) -> tuple[dict[Path, list[str]], list[str], list[tuple[Path, str]]]:
    """(photo -> captions, text documents, (clip, label)) drawn from the training-side sets."""
    rng = np.random.default_rng(seed)
    caps = _captions(data / "flickr8k_1k" / "captions_all.csv", {"train", "dev"})
    extra = _captions(data / "flickr8k_extra" / "captions_all.csv", {"train", "dev"})
    extra_keys = list(extra)
    rng.shuffle(extra_keys)
    n_photo = max(0, photos - len(caps))
    for p in extra_keys[:n_photo]:
        caps[p] = extra[p]
    # text documents: the captions of other photos, five to a document, as a passage reads
    docs = [" ".join(extra[p]) for p in extra_keys[n_photo : n_photo + texts]]
    clips: list[tuple[Path, str]] = []
    for name, splits, per in (("esc50_folds1235", {"folds1235"}, clips_per_label),
                              ("urbansound8k_3folds", {"fold1", "fold2"}, clips_per_label),
                              ("fsdd", {"train"}, clips_per_label // 2)):
        manifest = data / name / "manifest.csv"
        for r in _per_label(_rows(manifest, splits), per, rng):
            clips.append((manifest.parent / r["path"], canonical(r["label"])))
    return caps, docs, clips


def select_fixture(data: Path, seed: int = 0, photos: int = 60, texts: int = 60, clips_per_label: int = 2,
                   ) -> tuple[dict[Path, list[str]], list[str], list[tuple[Path, str]]]:
    """A small judged set from the same training-side sets that the fit (``select`` with
    ``seed``) left out: for checking the shipped calibration on items it was not fitted on."""
    caps, docs, clips = select(data, seed)
    rng = np.random.default_rng(seed + 1)
    extra = _captions(data / "flickr8k_extra" / "captions_all.csv", {"train", "dev"})
    used_docs = set(docs)
    free = [p for p in extra if p not in caps and " ".join(extra[p]) not in used_docs]
    picked = _sample(free, photos + texts, rng)
    fixture_caps = {p: extra[p] for p in picked[:photos]}
    fixture_docs = [" ".join(extra[p]) for p in picked[photos:]]
    used = {c for c, _ in clips}
    fixture_clips: list[tuple[Path, str]] = []
    for name, splits in (("esc50_folds1235", {"folds1235"}), ("urbansound8k_3folds", {"fold1", "fold2"}),
                         ("fsdd", {"train"})):
        manifest = data / name / "manifest.csv"
        rows = [r for r in _rows(manifest, splits) if manifest.parent / r["path"] not in used]
        for r in _per_label(rows, clips_per_label, rng):
            fixture_clips.append((manifest.parent / r["path"], canonical(r["label"])))
    return fixture_caps, fixture_docs, fixture_clips


def embed_pool(encoder: Encoder, data: Path, cache_dir: Path, seed: int = 0) -> Pool:
    """The pool's vectors, computed once per encoder state and cached under ``cache_dir``."""
    caps, docs, clips = select(data, seed)
    key = hashlib.sha256("|".join([
        str(CACHE_VERSION), encoder.id, str(encoder.fingerprint("audio")), _weights_key(encoder),
        *map(str, caps), *docs, *(str(c) for c, _ in clips)]).encode()).hexdigest()[:16]
    path = cache_dir / "calibration" / f"pool-{key}.npz"
    if path.exists():
        z = np.load(path)
        photo_vecs, text_vecs = z["photo"], z["text"]
        window_vecs, window_clip, clip_vecs = z["window"], z["window_clip"], z["clip"]
    else:
        photo_vecs = np.concatenate([encoder.encode_image([open_image(p) for p in chunk])
                                     for chunk in _chunks(list(caps), 32)])
        text_vecs = encoder.encode_text(docs)
        wv, wc, cv = [], [], []
        for i, (clip, _) in enumerate(clips):
            windows = [w.samples for w in iter_windows(clip)]
            if not windows:  # silent: an index skips it too
                windows = [load_audio(clip)]
            v = encoder.encode_audio(windows)
            wv.append(v)
            wc.extend([i] * len(v))
            mean = v.mean(axis=0)
            cv.append(mean / (np.linalg.norm(mean) + 1e-12))
        window_vecs, window_clip, clip_vecs = np.concatenate(wv), np.array(wc), np.stack(cv)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, photo=photo_vecs, text=text_vecs, window=window_vecs, window_clip=window_clip,
                 clip=clip_vecs)
    return Pool(photo_vecs, list(caps.values()), text_vecs, docs, window_vecs, window_clip, clip_vecs,
                [label for _, label in clips])


def _weights_key(encoder: Encoder) -> str:
    """What identifies the image side's learned weights (the projection file's meta)."""
    projection = getattr(encoder, "_projection", None)
    return repr(getattr(projection, "alpha", None)) + repr(getattr(projection, "mean", np.zeros(1))[:4])


def _chunks(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def photo_concepts(captions: list[list[str]], min_captions: int = 1) -> np.ndarray:
    """[photos, concepts] bool: the concept's regex matches at least ``min_captions`` captions."""
    out = np.zeros((len(captions), len(CONCEPTS)), dtype=bool)
    for j, (_, pattern, _) in enumerate(CONCEPTS):
        rx = re.compile(pattern, re.IGNORECASE)
        for i, caps in enumerate(captions):
            out[i, j] = sum(bool(rx.search(c)) for c in caps) >= min_captions
    return out


def text_concepts(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), len(CONCEPTS)), dtype=bool)
    for j, (_, pattern, _) in enumerate(CONCEPTS):
        rx = re.compile(pattern, re.IGNORECASE)
        out[:, j] = [bool(rx.search(t)) for t in texts]
    return out
