"""Headless Chromium through Selenium (Debian's chromium and chromium-driver; ``make test``
installs them), for the tests that look at pages in a real browser."""

from __future__ import annotations

import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def open_chromium(*, network_log: bool = False) -> webdriver.Chrome:
    """A headless browser, 1280 × 1000. ``network_log``: keep the DevTools network events,
    read with ``driver.get_log("performance")``."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, (
        "the browser tests need Debian's chromium and chromium-driver: `make test` installs "
        "them when run as root, otherwise: sudo apt-get install chromium chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                 "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(flag)
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.implicitly_wait(0)
    return driver
