"""The web page in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Types a query, waits for result pictures, checks the unreadable-query message and an image drop,
and saves screenshots under ``test-output/`` (or ``$CMHASH_TEST_OUTPUT``). Skips with the reason
when no Chromium can be found (`.ci/run` installs it with apt-get).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")

import cmhash
from serve_fixtures import serving, tag_index

torch.set_num_threads(1)
OUTPUT = Path(os.environ.get("CMHASH_TEST_OUTPUT", Path(__file__).resolve().parents[1] / "test-output"))


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver") or ("/usr/lib/chromium/chromedriver" if Path("/usr/lib/chromium/chromedriver").exists() else None)
    if not chromium or not driver:
        pytest.skip("no Chromium/chromedriver found (Debian: apt-get install -y chromium chromium-driver; .ci/run does this)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from cmhash.serve import create_app

    root, _, idx = tag_index(tmp_path_factory.mktemp("page"), backend="numpy")
    browser = _browser()
    try:
        with serving(create_app(cmhash.open_index(idx))) as url:
            yield browser, url, root
    finally:
        browser.quit()


def _wait(browser, css, timeout=20):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))


def test_typing_a_query_shows_result_pictures(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser, url, _ = page
    browser.get(url + "/")
    box = _wait(browser, "#q")
    box.send_keys("dog sky", Keys.ENTER)
    _wait(browser, "#results .card img")
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert len(cards) == 20
    assert all("d = " in c.find_element(By.CSS_SELECTOR, ".badge").text for c in cards)
    loaded = browser.execute_script("return Array.from(document.querySelectorAll('#results img')).filter(i => i.complete && i.naturalWidth > 0).length")
    if loaded < len(cards):  # thumbnails still arriving
        import time

        time.sleep(1)
        loaded = browser.execute_script("return Array.from(document.querySelectorAll('#results img')).filter(i => i.complete && i.naturalWidth > 0).length")
    assert loaded == len(cards)
    assert "read as: dog, sky" in browser.find_element(By.ID, "summary").text
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT / "serve_page_results.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_an_unreadable_query_shows_the_message_not_results(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser, url, _ = page
    browser.get(url + "/")
    box = _wait(browser, "#q")
    box.send_keys("xyzzy", Keys.ENTER)
    msg = _wait(browser, "#message")
    assert "vocabulary of 8 tags" in msg.text and "Try:" in msg.text
    assert browser.find_elements(By.CSS_SELECTOR, "#results .card") == []
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(OUTPUT / "serve_page_unreadable.png"))
    msg.find_element(By.CSS_SELECTOR, ".chip").click()  # a suggested tag runs a search
    _wait(browser, "#results .card")


def test_an_image_gives_a_list_of_texts(page):
    from selenium.webdriver.common.by import By

    browser, url, root = page
    browser.get(url + "/")
    _wait(browser, "#q")
    browser.find_element(By.ID, "file").send_keys(str(root / "images128" / "im4.jpg"))
    _wait(browser, "#text-results li")
    items = browser.find_elements(By.CSS_SELECTOR, "#text-results li")
    assert len(items) == 20 and all("d = " in i.text for i in items)
    browser.save_screenshot(str(OUTPUT / "serve_page_image_query.png"))
