"""Headless Chromium through Selenium (Debian's chromium and chromium-driver; ``make test``
installs them), for the tests that look at pages in a real browser."""

from __future__ import annotations

import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def open_chromium(
    *, network_log: bool = False, console_log: bool = False, width: int = 1280
) -> webdriver.Chrome:
    """A headless browser, ``width`` × 1000 without scrollbars. ``network_log``: keep the
    DevTools network events (``driver.get_log("performance")``); ``console_log``: keep the
    page's console messages (``driver.get_log("browser")``)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, (
        "the browser tests need Debian's chromium and chromium-driver: `make test` installs "
        "them when run as root, otherwise: sudo apt-get install chromium chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},1000",
                 "--disable-dev-shm-usage", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(flag)
    logs = {"performance": "ALL"} if network_log else {}
    if console_log:
        logs["browser"] = "ALL"
    if logs:
        options.set_capability("goog:loggingPrefs", logs)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.implicitly_wait(0)
    return driver
