"""The audio label vocabulary and its text prompts (what the label bridge mixes).

Labels are the manifest labels of the training sets (ESC-50, UrbanSound8K, FSDD digits); a
phrase per label describes the sound in words a person would search with, and a few templates
turn each phrase into prompts whose mean text embedding stands for the label.
"""

from __future__ import annotations

from collections.abc import Iterable

# UrbanSound8K labels that are the same sound as an ESC-50 label share one class
ALIASES: dict[str, str] = {"dog_bark": "dog"}

PHRASES: dict[str, str] = {
    # ESC-50
    "airplane": "an airplane flying overhead",
    "breathing": "a person breathing",
    "brushing_teeth": "someone brushing their teeth",
    "can_opening": "a can being opened",
    "car_horn": "a car horn honking",
    "cat": "a cat meowing",
    "chainsaw": "a chainsaw cutting",
    "chirping_birds": "birds chirping",
    "church_bells": "church bells ringing",
    "clapping": "people clapping",
    "clock_alarm": "an alarm clock ringing",
    "clock_tick": "a clock ticking",
    "coughing": "a person coughing",
    "cow": "a cow mooing",
    "crackling_fire": "a crackling fire",
    "crickets": "crickets chirping",
    "crow": "a crow cawing",
    "crying_baby": "a baby crying",
    "dog": "a dog barking",
    "door_wood_creaks": "a wooden door creaking",
    "door_wood_knock": "knocking on a wooden door",
    "drinking_sipping": "someone drinking and sipping",
    "engine": "an engine running",
    "fireworks": "fireworks exploding",
    "footsteps": "footsteps walking",
    "frog": "a frog croaking",
    "glass_breaking": "glass breaking",
    "hand_saw": "a hand saw sawing wood",
    "helicopter": "a helicopter flying",
    "hen": "a hen clucking",
    "insects": "insects buzzing",
    "keyboard_typing": "typing on a keyboard",
    "laughing": "people laughing",
    "mouse_click": "a computer mouse clicking",
    "pig": "a pig oinking",
    "pouring_water": "water being poured",
    "rain": "rain falling",
    "rooster": "a rooster crowing",
    "sea_waves": "sea waves crashing",
    "sheep": "a sheep bleating",
    "siren": "a siren wailing",
    "sneezing": "a person sneezing",
    "snoring": "a person snoring",
    "thunderstorm": "a thunderstorm with thunder",
    "toilet_flush": "a toilet flushing",
    "train": "a train passing",
    "vacuum_cleaner": "a vacuum cleaner running",
    "washing_machine": "a washing machine running",
    "water_drops": "water dripping",
    "wind": "wind blowing",
    # UrbanSound8K (dog_bark -> dog, car_horn and siren are ESC-50 labels too)
    "air_conditioner": "an air conditioner humming",
    "children_playing": "children playing and shouting",
    "drilling": "a drill drilling",
    "engine_idling": "an engine idling",
    "gun_shot": "a gun shot",
    "jackhammer": "a jackhammer pounding",
    "street_music": "music playing in the street",
}

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
for _i, _w in enumerate(DIGIT_WORDS):
    PHRASES[str(_i)] = f"a man saying the number {_w}"

TEMPLATES = ("the sound of {}", "{}", "a recording of {}")


def canonical(label: str) -> str:
    """A manifest label as a vocabulary label (aliases resolved, digit words to digits)."""
    label = label.strip()
    if label in DIGIT_WORDS:
        return str(DIGIT_WORDS.index(label))
    return ALIASES.get(label, label)


def phrase(label: str) -> str:
    """The words for a label; unknown labels read as their name ("hair_dryer" -> "hair dryer")."""
    label = canonical(label)
    return PHRASES.get(label, label.replace("_", " "))


def prompts(label: str) -> list[str]:
    return [t.format(phrase(label)) for t in TEMPLATES]


def vocabulary(labels: Iterable[str]) -> list[str]:
    """Sorted distinct canonical labels."""
    return sorted({canonical(lab) for lab in labels})
