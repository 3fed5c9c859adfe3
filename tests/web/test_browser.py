"""The search page in a real headless Chromium: type, upload, listen, "more like this"."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from search.engine import Engine
from search.index import Index
from search.settings import Settings
from tests.fakes import FakeEncoder
from tests.web.browser import chromium, live_server, require_chromium, wait_for
from tests.web.conftest import png_bytes
from web.app import create_app

pytestmark = pytest.mark.browser

# a green PNG drawn on a canvas, handed to the page as a dropped or pasted file
_DROP_JS = """
const event = arguments[0];
const canvas = Object.assign(document.createElement("canvas"), {width: 32, height: 32});
const g = canvas.getContext("2d");
g.fillStyle = "rgb(20, 210, 40)";
g.fillRect(0, 0, 32, 32);
canvas.toBlob((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], "green.png", {type: "image/png"}));
  const init = {bubbles: true, cancelable: true};
  document.dispatchEvent(event === "drop"
    ? new DragEvent("drop", {...init, dataTransfer: data})
    : new ClipboardEvent("paste", {...init, clipboardData: data}));
}, "image/png");
"""


def _cards(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#results li.card")


def _ids(driver) -> list[int]:
    # read in one script call: the grid may be swapped between two WebDriver calls
    return driver.execute_script(
        "return [...document.querySelectorAll('#results li.card')].map(c => +c.dataset.id)"
    )


def _shot(driver, tmp_path: Path, name: str) -> Path:
    out = Path(os.environ.get("CROSSFIND_SCREENSHOTS", tmp_path)) / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out))
    assert out.stat().st_size > 5_000  # a rendered page, not a blank
    return out


def test_search_page_in_chromium(corpus, tmp_path):
    require_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    app = create_app(Settings(db=corpus.db), engine=Engine(Index.open(corpus.db), FakeEncoder()))
    with live_server(app) as base, chromium() as driver:
        driver.get(base + "/")
        assert "crossfind" in driver.title
        assert "9 files indexed" in driver.find_element(By.ID, "results").text
        _shot(driver, tmp_path, "1-home")

        # type a query: results replace the grid without a page load, matches are marked
        box = driver.find_element(By.ID, "q")
        box.send_keys("green forest", Keys.ENTER)
        wait_for(driver, lambda d: len(_cards(d)) > 0)
        assert set(_ids(driver)[:2]) == {corpus.ids["forest.txt"], corpus.ids["green.png"]}
        marks = [m.text for m in driver.find_elements(By.CSS_SELECTOR, ".snippet mark")]
        assert "green" in marks and "forest" in marks
        assert "q=green+forest" in driver.current_url  # shareable URL of the search
        thumb = driver.find_element(By.CSS_SELECTOR, "li.card-image img")
        wait_for(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", thumb) > 0)
        _shot(driver, tmp_path, "2-text-query")

        # only the matches by default; "Everything" lists every item, "Name" orders the list
        from selenium.webdriver.support.ui import Select

        matches = len(_cards(driver))
        names = {i: n for n, i in corpus.ids.items()}
        Select(driver.find_element(By.ID, "show")).select_by_value("all")
        wait_for(driver, lambda d: len(_cards(d)) == len(names) > matches)
        Select(driver.find_element(By.ID, "sort")).select_by_value("name")
        wait_for(driver, lambda d: [names[i] for i in _ids(d)] == sorted(names.values()))
        assert "show=all" in driver.current_url and "sort=name" in driver.current_url
        Select(driver.find_element(By.ID, "show")).select_by_value("matches")
        Select(driver.find_element(By.ID, "sort")).select_by_value("relevance")
        wait_for(driver, lambda d: len(_cards(d)) == matches)

        # upload an image query: a part chip with a weight slider appears, blue comes first
        image = tmp_path / "query.png"
        image.write_bytes(png_bytes((25, 35, 235)))
        box.clear()
        driver.find_element(By.CSS_SELECTOR, "input[name=modality][value=image]+span").click()
        driver.find_element(By.ID, "image-file").send_keys(str(image))
        wait_for(
            driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".part-image input[type=range]")
        )
        wait_for(driver, lambda d: _ids(d) and _ids(d)[0] == corpus.ids["blue.jpg"])
        assert {c.get_attribute("class") for c in _cards(driver)} == {"card card-image"}
        _shot(driver, tmp_path, "3-image-query")

        # audio: players start at the matching window
        driver.find_element(By.CSS_SELECTOR, ".part-image button").click()  # drop the image
        driver.find_element(By.CSS_SELECTOR, "input[name=modality][value=image]+span").click()
        driver.find_element(By.CSS_SELECTOR, "input[name=modality][value=audio]+span").click()
        box.send_keys("high", Keys.ENTER)
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "li.card-audio audio"))
        audio = driver.find_element(By.CSS_SELECTOR, "li.card-audio audio")
        assert "#t=" in audio.get_attribute("src")
        start = float(audio.get_attribute("data-start"))
        wait_for(driver, lambda d: d.execute_script("return arguments[0].readyState", audio) >= 1)
        at = driver.execute_script("return arguments[0].currentTime", audio)
        assert abs(at - start) < 0.05
        assert driver.find_element(By.CSS_SELECTOR, "li.card-audio .window").text.startswith(
            "match at"
        )
        _shot(driver, tmp_path, "4-audio")

        # "more like this" on a result: that item leads the new results
        driver.find_element(By.CSS_SELECTOR, "input[name=modality][value=audio]+span").click()
        box.clear()
        box.send_keys("red", Keys.ENTER)
        wait_for(driver, lambda d: _ids(d) and _ids(d)[0] == corpus.ids["red.png"])
        before = _ids(driver)
        target = _cards(driver)[1]
        target_id = int(target.get_attribute("data-id"))
        target.find_element(By.CSS_SELECTOR, "a.like").click()
        wait_for(driver, lambda d: _ids(d) and _ids(d) != before and _ids(d)[0] == target_id)
        assert driver.find_elements(By.CSS_SELECTOR, ".part-item input[type=range]")
        assert f"like={target_id}" in driver.current_url
        _shot(driver, tmp_path, "5-more-like-this")

        # drag-and-drop and paste take images too (synthetic events carrying a real PNG file)
        driver.find_element(By.CSS_SELECTOR, ".part-item button").click()
        for event in ("drop", "paste"):
            driver.execute_script(_DROP_JS, event)
            wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".part-image"))
            wait_for(driver, lambda d: _ids(d) and _ids(d)[0] == corpus.ids["green.png"])
            driver.find_element(By.CSS_SELECTOR, ".part-image button").click()

        # the microphone: record a second of the fake device's beep, search with it as WAV
        driver.find_element(By.ID, "record").click()
        wait_for(
            driver, lambda d: "recording" in d.find_element(By.ID, "record").get_attribute("class")
        )
        time.sleep(1.5)
        driver.find_element(By.ID, "record").click()
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".part-audio"))
        assert driver.find_element(By.CSS_SELECTOR, ".part-audio .label").text == "recording.wav"
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "li.card"))
        driver.find_element(By.CSS_SELECTOR, ".part-audio button").click()

        # an undecodable upload shows an error state, not a broken page
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"this is not an image")
        driver.find_element(By.ID, "image-file").send_keys(str(bad))
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .notice.error"))
        assert "not a decodable image" in driver.find_element(By.ID, "results").text
        logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        # the failed upload's 415 is the only console error
        assert all("415" in e["message"] for e in logs), logs
