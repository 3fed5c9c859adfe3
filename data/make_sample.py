"""Build the small demo corpus under data/sample/ (generated, never committed).

Photos come from scikit-image's bundled images, texts are written here, and sounds are
synthesised with numpy, so the corpus needs no network and no shared data.

Usage: python data/make_sample.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

IMAGES = {
    # file name: scikit-image loader (all ship inside the scikit-image wheel)
    "coffee.jpg": "coffee",
    "astronaut.jpg": "astronaut",
    "cat.jpg": "chelsea",
    "rocket.jpg": "rocket",
    "cameraman.png": "camera",
    "clock.png": "clock",
    "coins.png": "coins",
    "horse.png": "horse",
    "moon.png": "moon",
    "galaxies.jpg": "hubble_deep_field",
    "brick_wall.png": "brick",
    "tissue_sample.jpg": "immunohistochemistry",
}

TEXTS = {
    "espresso.md": (
        "# Making espresso at home\n\nGrind fresh coffee beans finely, tamp the grounds evenly "
        "and pull a shot of about 30 ml in 25 seconds. A good espresso has a thick golden crema. "
        "Steam the milk to 60 degrees for a cappuccino and pour it into the cup slowly."
    ),
    "launch_report.txt": (
        "The rocket lifted off from the launch pad at dawn. The first stage burned for two "
        "minutes before separating, and the upper stage carried the satellite into orbit. "
        "Engineers in mission control cheered as telemetry confirmed a stable orbit."
    ),
    "cat_care.txt": (
        "Cats sleep up to sixteen hours a day. Give your cat fresh water, a scratching post "
        "and a quiet place to rest. Kittens need to see a vet for vaccinations in their first "
        "months, and older cats benefit from regular dental checks."
    ),
    "clockmaking.md": (
        "# A short history of clocks\n\nMechanical clocks appeared in European church towers "
        "in the 14th century. The pendulum clock, invented by Christiaan Huygens in 1656, kept "
        "time to within a minute a day. Quartz watches replaced most mechanical movements after "
        "1970."
    ),
    "garden_notes.txt": (
        "Mow the lawn once a week in summer and water the grass early in the morning. Plant "
        "tomatoes after the last frost, and pick the ripe strawberries before the birds do."
    ),
    "football_match.txt": (
        "The home team won the match two goals to one. The striker scored with a header in the "
        "final minute, and the crowd in the stadium sang until the referee blew the whistle."
    ),
    "moon_facts.md": (
        "# The Moon\n\nThe Moon orbits the Earth every 27.3 days. Its craters were made by "
        "asteroid impacts, and the dark plains called maria are ancient lava flows. Twelve "
        "astronauts walked on its surface between 1969 and 1972."
    ),
    "bread_recipe.txt": (
        "Mix 500 g flour, 350 ml warm water, 10 g salt and 7 g yeast. Knead for ten minutes, "
        "let the dough rise for an hour, shape the loaf and bake it at 230 degrees for 35 minutes "
        "until the crust is brown."
    ),
}

SR = 16_000


def _siren(seconds: float = 5.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    freq = 700 + 400 * np.sin(2 * np.pi * 0.5 * t)  # wailing up and down
    return 0.4 * np.sin(2 * np.pi * np.cumsum(freq) / SR)


def _clock_tick(seconds: float = 5.0) -> np.ndarray:
    out = np.zeros(int(seconds * SR))
    rng = np.random.default_rng(0)
    for start in range(0, len(out) - 400, SR // 2):  # two ticks a second
        out[start : start + 400] += rng.standard_normal(400) * np.exp(-np.arange(400) / 60)
    return 0.5 * out / np.abs(out).max()


def _bells(seconds: float = 6.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for strike in (0.0, 1.5, 3.0, 4.5):
        tt = np.clip(t - strike, 0, None)
        env = np.where(t >= strike, np.exp(-tt * 1.2), 0)
        for partial, amp in ((440, 1.0), (880 * 1.19, 0.5), (1320 * 1.02, 0.3), (2200, 0.2)):
            out += amp * env * np.sin(2 * np.pi * partial * tt)
    return 0.3 * out / np.abs(out).max()


def _rain(seconds: float = 5.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(int(seconds * SR))
    # soft low-passed noise with random droplet clicks
    kernel = np.ones(8) / 8
    out = np.convolve(noise, kernel, mode="same") * 0.2
    drops = rng.integers(0, len(out) - 200, 120)
    for d in drops:
        out[d : d + 200] += rng.standard_normal(200) * np.exp(-np.arange(200) / 30) * 0.3
    return out / np.abs(out).max() * 0.5


SOUNDS = {"siren.wav": _siren, "clock_ticking.flac": _clock_tick, "bells.wav": _bells, "rain.ogg": _rain}


def build(out: Path) -> list[Path]:
    import skimage.data

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, loader in IMAGES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = getattr(skimage.data, loader)()
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        img = Image.fromarray(array).convert("RGB")
        path = out / "photos" / name
        path.parent.mkdir(exist_ok=True)
        img.save(path, quality=90)
        written.append(path)
    for name, body in TEXTS.items():
        path = out / "notes" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(body + "\n", encoding="utf-8")
        written.append(path)
    for name, make in SOUNDS.items():
        path = out / "sounds" / name
        path.parent.mkdir(exist_ok=True)
        sf.write(path, make().astype(np.float32), SR)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "sample"
    files = build(target)
    print(f"wrote {len(files)} files under {target}")
