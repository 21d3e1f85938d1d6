"""``GET /docs`` in a real browser: headless Chromium against a real server process renders
the reference from ``/openapi.json`` with the vendored Redoc, and nothing the page asks for
leaves the server's origin."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import trio
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from tests.chromium import open_chromium
from tests.server_process import ServerProcess

# Real server processes in real time: left out by `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.mark.slow
async def test_the_reference_renders_in_a_browser_without_outside_requests(server):
    # Selenium blocks: the browser runs in a thread while the server is a real process.
    await trio.to_thread.run_sync(_read_the_reference, server)


def _read_the_reference(server: ServerProcess) -> None:
    driver = open_chromium(network_log=True)
    try:
        driver.get(server.base_url + "/docs")
        heading = "//h2[normalize-space()='Record one event']"
        try:
            WebDriverWait(
                driver, 20, poll_frequency=0.2, ignored_exceptions=[WebDriverException]
            ).until(ready.presence_of_element_located((By.XPATH, heading)))
        except TimeoutException:
            said = driver.find_element(By.TAG_NAME, "body").text[:800]
            raise AssertionError(f"the reference did not render; the page says: {said}") from None
        # The operation's own section shows its method and path (the right-hand panel).
        section = driver.find_element(By.XPATH, heading + "/ancestor::div[@id][1]")
        assert section.get_attribute("id") == "operation/post_v1_events"
        assert "POST\n/v1/events" in section.text, section.text[:800]
        body = driver.find_element(By.TAG_NAME, "body").text
        for summary in ("Create or update a profile", "Redeem a reward", "The process is alive"):
            assert summary in body
        origin = urlsplit(server.base_url)
        outside = _requests_leaving(driver.get_log("performance"), origin.netloc)
        assert not outside, f"requests left {origin.netloc}: {outside}"
    finally:
        driver.quit()


def _requests_leaving(log: list[dict[str, str]], netloc: str) -> list[str]:
    """The http(s) requests the page started for another origin and the browser did not
    refuse itself (its content security policy blocks before anything is sent)."""
    started: dict[str, str] = {}
    refused: set[str] = set()
    for entry in log:
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            started[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason") == "csp":
            refused.add(params["requestId"])
    assert any(url.endswith("/openapi.json") for url in started.values()), started
    return [
        url
        for request, url in started.items()
        if urlsplit(url).scheme in ("http", "https")
        and urlsplit(url).netloc != netloc
        and request not in refused
    ]
