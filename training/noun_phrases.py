"""Short noun phrases from image captions ("a black dog", "a group of people"), so the image
projection also learns the short concept texts people type, not only whole captions.

A rule-based chunker tuned to caption English (no tagger model ships offline): a phrase starts
at a determiner, number or possessive (or at the start of the caption) and runs over the words
that follow until a word that cannot be inside a noun phrase: a preposition, conjunction,
auxiliary, pronoun, a verb in -ing / -ed form after the head, or a present-tense verb ("runs")
recognised from the captions' own vocabulary (its -ing form occurs there too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

DETERMINERS = frozenset([
    "a", "an", "the", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "several", "many", "some", "his", "her", "their", "its", "one", "another", "other", "each",
    "this", "these", "those",
])
# words that end a noun phrase (and never start one)
BREAKS = frozenset([
    "in", "on", "at", "with", "through", "over", "under", "near", "by", "from", "into", "onto",
    "to", "for", "across", "along", "behind", "beside", "next", "toward", "towards", "down",
    "up", "around", "between", "while", "and", "or", "but", "as", "that", "who", "which",
    "whose", "where", "when", "is", "are", "was", "were", "be", "been", "being", "has", "have",
    "had", "it", "they", "he", "she", "them", "him", "while", "off", "out", "against", "past",
    "upon", "inside", "outside", "underneath", "beneath", "above", "below", "during", "after",
    "before", "about", "like", "than", "there", "here", "very", "just", "also", "then", "so",
    "not", "no", "where", "whilst", "amongst", "among", "atop", "via",
])
# nouns that end in -ing (an -ing word after the head is otherwise a verb: "a man climbing")
ING_NOUNS = frozenset([
    "building", "clothing", "ceiling", "painting", "railing", "wedding", "morning", "evening",
    "something", "everything", "nothing", "anything", "spring", "string", "icing", "lighting",
    "sibling", "pudding", "stocking", "awning", "offspring", "earring", "swing", "ring", "king",
    "wing", "thing", "sling",
])
# plural nouns whose -ing look-alike is a verb ("pants"/"panting", "waves"/"waving")
NOT_VERBS = frozenset([
    "pants", "shorts", "trunks", "stairs", "boots", "shoes", "glasses", "goggles", "shirts",
    "jackets", "swings", "slides", "tracks", "rocks", "waves", "lights", "skates", "skis",
    "sneakers", "jeans", "clothes", "bikes", "hats", "caps", "gloves", "cones", "poles",
    "ropes", "rides", "walls", "steps", "signs", "bars",
])
PLURALS = frozenset(["people", "children", "men", "women", "feet", "teeth", "geese", "mice", "police", "cattle"])
WORD = re.compile(r"[a-z][a-z'-]*|[,;:!?()]")
PUNCT = frozenset(",;:!?()")
MAX_WORDS = 4  # words after the determiner


def verb_forms(captions: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """Present-tense verbs of a caption collection, recognised by their -ing form being used
    there too: (third person "runs"/"running", "rides"/"riding"; plain "stand"/"standing", a
    verb only after a plural: "people stand" but "the snow")."""
    vocab = {w for c in captions for w in WORD.findall(c.lower()) if w not in PUNCT}
    plain = frozenset(w for w in vocab if len(w) >= 3 and not w.endswith("ing") and
                      ({w + "ing", w[:-1] + "ing", w + w[-1] + "ing"} & vocab))
    verbs = set()
    for w in vocab:
        if len(w) < 4 or not w.endswith("s") or w.endswith("ss"):
            continue
        stem = w[:-2] if w.endswith("es") else w[:-1]
        candidates = {stem + "ing", w[:-1] + "ing", w[:-2] + "ing", w[:-1] + w[-2] + "ing",
                      w[:-3] + "ying"}  # lies/lying
        if candidates & vocab:
            verbs.add(w)
    return frozenset(verbs - NOT_VERBS), plain


NO_VERBS: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


def noun_phrases(caption: str, verbs: tuple[frozenset[str], frozenset[str]] = NO_VERBS) -> list[str]:
    """The noun phrases of one caption, lower-case, in order, each with its determiner
    ("a man in a red shirt climbs a rock" -> ["a man", "a red shirt", "a rock"])."""
    third, plain = verbs
    words = WORD.findall(caption.lower())
    phrases: list[str] = []
    i = 0
    while i < len(words):
        start_det = words[i] in DETERMINERS
        if not start_det and not _bare_start(words, i, third, plain):
            i += 1
            continue
        chunk = [words[i]]
        j = i + 1
        while j < len(words) and len(chunk) <= MAX_WORDS and not _ends(
                words, j, chunk, right_after_det=start_det and j == i + 1, verbs=verbs):
            chunk.append(words[j])
            j += 1
        while chunk and chunk[-1] in ("and", "of"):
            chunk.pop()
        content = chunk[1:] if start_det else chunk
        if content:
            phrases.append(" ".join(chunk))
        i = max(j, i + 1)
    return phrases


def _is_verb(word: str, before: str, verbs: tuple[frozenset[str], frozenset[str]]) -> bool:
    third, plain = verbs
    return ((word.endswith("ing") and word not in ING_NOUNS) or word in third
            or (word in plain and (before.endswith("s") or before in PLURALS)))


def _ends(words: list[str], j: int, chunk: list[str], *, right_after_det: bool,
          verbs: tuple[frozenset[str], frozenset[str]]) -> bool:
    """Whether ``words[j]`` ends the phrase ``chunk``. Right after the determiner a word is
    read as an adjective ("a climbing wall", "a striped shirt")."""
    w = words[j]
    nxt = words[j + 1] if j + 1 < len(words) else ""
    stop_next = not nxt or nxt in BREAKS or nxt in DETERMINERS
    if w in PUNCT:
        return True
    if w == "and":  # "a black and white dog", not "a man and a dog" nor "beach and looking"
        after = words[j + 2] if j + 2 < len(words) else ""
        return (right_after_det or stop_next or not after or after in BREAKS
                or _is_verb(nxt, w, verbs))
    if w == "of":  # "a group of people", but not "the top of a hill"
        return stop_next
    if w in BREAKS or (w in DETERMINERS and not right_after_det):
        return True
    if right_after_det:
        return False
    # "a man climbing", "a dog runs", "people stand"; "a man dressed in", not "long haired dog"
    return _is_verb(w, chunk[-1], verbs) or (w.endswith("ed") and stop_next)


def _bare_start(words: list[str], i: int, third: frozenset[str], plain: frozenset[str]) -> bool:
    """A phrase without a determiner: a content word at the start of the caption or right
    after a preposition or verb ("riding bike", "in red shorts")."""
    w = words[i]
    if w in BREAKS or w in PUNCT or w in third or w in plain or w == "of" or (
            w.endswith("ing") and w not in ING_NOUNS):
        return False
    if i == 0:
        return True
    prev = words[i - 1]
    return prev in BREAKS or prev in third or (prev.endswith("ing") and prev not in ING_NOUNS)


def head_key(phrase: str) -> str:
    """The phrase without its determiner: two captions that share it name the same thing."""
    words = phrase.split()
    return " ".join(words[1:] if words and words[0] in DETERMINERS and len(words) > 1 else words)


def caption_phrases(captions: Sequence[str]) -> list[list[str]]:
    """Noun phrases per caption, the verb list learnt from these captions."""
    verbs = verb_forms(captions)
    return [noun_phrases(c, verbs) for c in captions]
