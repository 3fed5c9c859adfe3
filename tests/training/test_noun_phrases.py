"""Noun phrases from real Flickr8k captions (quoted from flickr8k_1k/flickr8k_extra train)."""

from __future__ import annotations

from training.noun_phrases import caption_phrases, head_key, noun_phrases, verb_forms

CAPTIONS = [
    "A child in a pink dress is climbing up a set of stairs in an entry way .",
    "A black and white dog is running through the grass .",
    "A black dog and a spotted dog are fighting",
    "A shirtless man lies on a park bench with his dog .",
    "A dog is lying on the grass .",
    "Boy drinking from a green bottle with girl in purple sweater watching .",
    "A man wearing a red shirt , hat and brown pants is on a skateboard going down a ramp .",
    "A girl going into a wooden building .",
    "A group of people stand on top of a hill .",
    "Two people standing in the snow .",
    "A dog runs through the snow .",
    "A dog running in the snow .",
    "A man in an orange hat starring at something .",
]


def test_phrases_of_real_captions():
    found = dict(zip(CAPTIONS, caption_phrases(CAPTIONS)))
    assert found[CAPTIONS[0]] == ["a child", "a pink dress", "a set of stairs", "an entry way"]
    # adjectives joined by "and" stay in one phrase; two determiners make two phrases
    assert found[CAPTIONS[1]] == ["a black and white dog", "the grass"]
    assert found[CAPTIONS[2]] == ["a black dog", "a spotted dog"]
    # "lies" is a verb (the captions say "lying"), so it ends the phrase
    assert found[CAPTIONS[3]] == ["a shirtless man", "a park bench", "his dog"]
    # phrases without a determiner after a preposition or verb
    assert found[CAPTIONS[5]] == ["boy", "a green bottle", "girl", "purple sweater"]
    # commas end phrases; "pants" is a noun although "panting" looks like its verb
    assert "a red shirt" in found[CAPTIONS[6]] and "a skateboard" in found[CAPTIONS[6]]
    # an -ing noun is kept ("building"), an -ing verb after the head ends the phrase
    assert found[CAPTIONS[7]] == ["a girl", "a wooden building"]
    # "people stand": a plain verb after a plural; "the top of a hill" splits at "of a"
    assert found[CAPTIONS[8]][0] == "a group of people"
    assert "a hill" in found[CAPTIONS[8]]
    assert found[CAPTIONS[10]] == ["a dog", "the snow"]


def test_verb_forms_come_from_the_captions_own_vocabulary():
    third, plain = verb_forms(CAPTIONS)
    assert {"runs", "lies"} <= third
    assert "pants" not in third and "dress" not in third
    assert "stand" in plain
    # without the collection's verbs, "runs" would join the phrase
    assert noun_phrases("A dog runs through the snow .") == ["a dog runs", "the snow"]


def test_head_key_drops_the_determiner_only():
    assert head_key("a black dog") == head_key("the black dog") == "black dog"
    assert head_key("two dogs") == "dogs"
    assert head_key("boy") == "boy"
