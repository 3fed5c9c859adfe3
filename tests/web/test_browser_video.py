"""A video hit on the search page in a real headless Chromium: a player with the matching
frame as its poster that starts at the hit's moment."""

from __future__ import annotations

import pytest

from search.engine import Engine
from search.index import Index
from search.settings import Settings
from tests.fakes import FakeEncoder
from tests.web.browser import chromium, live_server, require_chromium, wait_for
from tests.web.media_corpus import build
from web.app import create_app

pytestmark = pytest.mark.browser


def test_a_video_hit_plays_from_its_moment(tmp_path):
    require_chromium()
    pytest.importorskip("av", reason="PyAV is not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    db = build(tmp_path)
    app = create_app(Settings(db=db), engine=Engine(Index.open(db), FakeEncoder()))
    with live_server(app) as base, chromium() as driver:
        driver.get(base + "/")
        driver.find_element(By.CSS_SELECTOR, "input[name=modality][value=video]+span").click()
        driver.find_element(By.ID, "q").send_keys("green", Keys.ENTER)
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "li.card-video video"))
        video = driver.find_element(By.CSS_SELECTOR, "li.card-video video")
        assert "#t=3" in video.get_attribute("src") and "/thumbnail" in video.get_attribute(
            "poster"
        )
        start = float(video.get_attribute("data-start"))
        assert round(start) == 3
        wait_for(driver, lambda d: d.execute_script("return arguments[0].readyState", video) >= 1)
        at = driver.execute_script("return arguments[0].currentTime", video)
        assert abs(at - start) < 0.5  # the player starts at the green scene, not at 0
        window = driver.find_element(By.CSS_SELECTOR, "li.card-video .window").text
        assert window.startswith("picture match at 3.0")
        # the poster is the matching frame, served as a JPEG
        size = driver.execute_script(
            "const r = await fetch(arguments[0].poster); return (await r.blob()).size", video
        )
        assert size > 500
