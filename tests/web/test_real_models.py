"""The served app with the real bundled encoder over real photos and news texts, in Chromium.

Set ``CROSSFIND_SCREENSHOT=docs/screenshot.png`` to refresh the README's screenshot.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from search.engine import Engine
from search.index import Index
from search.settings import Settings
from tests.web.browser import chromium, live_server, require_chromium, wait_for
from web.app import create_app

pytestmark = [pytest.mark.models, pytest.mark.shared_data, pytest.mark.slow]


def _rows(folder: Path, split: str | None = None) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if split is None or r["split"] == split]


@pytest.fixture(scope="module")
def real_index(shared_data, bundled_encoder, tmp_path_factory):
    from indexer.pipeline import index_paths

    photos = _rows(shared_data / "flickr8k_1k", "test")
    captions = {str(shared_data / "flickr8k_1k" / r["path"]): r["caption"] for r in photos}
    news = _rows(shared_data / "agnews_test")[:40]
    sounds = [r for r in _rows(shared_data / "esc50_folds1235") if r["label"] in ("dog", "rain")][
        :8
    ]
    paths = [Path(p) for p in captions]
    paths += [shared_data / "agnews_test" / r["path"] for r in news]
    paths += [shared_data / "esc50_folds1235" / r["path"] for r in sounds]
    db = tmp_path_factory.mktemp("real") / "db"
    settings = Settings(db=db, workers=1)
    with Index.open_for_write(db, bundled_encoder.id, bundled_encoder.dim) as index:
        report = index_paths(paths, index, bundled_encoder, settings, progress=False)
    assert report.by_modality["image"].added == len(photos)
    return db, captions


def test_bundled_encoder_serves_the_page_and_api(real_index, bundled_encoder, tmp_path):
    db, captions = real_index
    app = create_app(Settings(db=db), engine=Engine(Index.open(db), bundled_encoder))
    with TestClient(app) as client:
        body = client.post(
            "/api/search",
            json={
                "parts": [{"text": "a dog running on the grass"}],
                "filters": {"modality": ["image"]},
            },
        ).json()
        top = [captions[h["path"]].lower() for h in body["results"][:5]]
        assert sum("dog" in c for c in top) >= 3, top
        # only the matches: mostly dog photos, far fewer than the whole list
        auto = client.post("/api/search", json={"parts": [{"text": "a dog running on the grass"}],
                                                "min_score": "auto", "k": 100}).json()["results"]
        dogs = [captions[h["path"]].lower() for h in auto if h["modality"] == "image"]
        assert 3 <= len(auto) < 40 and sum("dog" in c for c in dogs) >= 0.6 * len(dogs), dogs
        # the news corpus answers a news question with news
        news = client.post("/api/search", json={"parts": [{"text": "oil prices and the economy"}]})
        assert news.json()["results"][0]["modality"] == "text"

    require_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with live_server(app) as base, chromium(1280, 860) as driver:
        driver.get(base + "/?show=all")
        driver.find_element(By.ID, "q").send_keys("a dog running on the grass", Keys.ENTER)
        wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.card")) >= 8)
        everything = len(driver.find_elements(By.CSS_SELECTOR, "li.card"))
        # the default view: only the matches, mostly dog photos (and dog sounds)
        driver.get(base + "/")
        driver.find_element(By.ID, "q").send_keys("a dog running on the grass", Keys.ENTER)
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "li.card"))
        shown = len(driver.find_elements(By.CSS_SELECTOR, "li.card"))
        assert 3 <= shown < everything and "show=all" not in driver.current_url
        # every visible thumbnail has loaded before the picture is taken
        wait_for(
            driver,
            lambda d: d.execute_script(
                "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
            ),
            timeout=30,
        )
        shot = tmp_path / "real-search.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 50_000
        target = os.environ.get("CROSSFIND_SCREENSHOT")
        if target:
            _save_small(shot, Path(target))


def _save_small(shot: Path, target: Path, max_bytes: int = 300_000) -> None:
    """The README copy: a palette PNG, shrunk until it is under ``max_bytes``."""
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    target.parent.mkdir(parents=True, exist_ok=True)
    width = image.width
    while True:
        small = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        small.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
        if target.stat().st_size <= max_bytes or width < 600:
            return
        width = int(width * 0.85)
