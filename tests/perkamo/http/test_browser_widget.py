"""The browser flow in a real browser (headless Chromium through Selenium, against ``perkamo
serve --demo`` as a real process): the demo page's live points widget updates within 2 s
of an event sent through the server API, without a reload; and a page from an origin the
browser key does not allow is refused by the browser itself (CORS), while the same page
from an allowed origin is served. Saves the widget's screenshot for the README."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.chromium import open_chromium
from tests.server_process import ServerProcess, free_port

pytestmark = pytest.mark.slow

SHOT = Path(__file__).resolve().parents[3] / "docs" / "browser-widget.png"
_PROBE = """<!doctype html><title>waiting</title><script type="module">
const params = new URLSearchParams(location.search);
try {
  const answer = await fetch(params.get("api") + "/v1/client/program", {
    headers: {authorization: "Bearer " + params.get("token")},
  });
  document.title = "read " + answer.status;
} catch (error) {
  document.title = "refused: " + error.name;
}
</script>"""


@contextmanager
def page_server(port: int) -> Iterator[None]:
    """A shop's own page, served from ``http://<host>:port`` (another origin than the API)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = _PROBE.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def demo(pg_url, tmp_path) -> ServerProcess:
    server = ServerProcess(pg_url, tmp_path, "--demo")
    await server.start()
    yield server
    server.kill()


def _points(driver) -> str:
    return str(driver.find_element(By.ID, "points").get_attribute("data-points") or "")


async def test_the_demo_widget_updates_live_without_a_reload(demo, tmp_path):
    key = (tmp_path / "demo-key").read_text().strip()
    driver = open_chromium()
    try:
        driver.set_window_size(600, 520)
        driver.get(demo.base_url + "/demo/")
        wait = WebDriverWait(driver, 15)
        wait.until(lambda d: d.find_element(By.ID, "state").text == "live")
        before = _points(driver)
        driver.execute_script("window.loadedOnce = true")  # gone if the page reloads
        body = {
            "user_id": "demo_customer", "event": "purchase.completed",
            "transaction_id": f"order-{time.time_ns()}", "context": {"amount": 12900},
        }  # fmt: skip
        sent = time.monotonic()
        answer = httpx.post(
            demo.base_url + "/v1/events", json=body, headers={"x-perkamo-api-key": key}
        )
        assert answer.status_code == 200
        gained = sum(d["amount"] for d in answer.json()["delta"] if d["wallet"] == "points")
        assert gained > 0
        WebDriverWait(driver, 2, poll_frequency=0.02).until(lambda d: _points(d) != before)
        took = time.monotonic() - sent
        assert float(_points(driver)) == float(before or 0) + gained
        assert driver.execute_script("return window.loadedOnce") is True
        assert "purchase.completed" in driver.find_element(By.ID, "last").text
        print(f"widget updated {took * 1000:.0f} ms after the event was sent")
        driver.save_screenshot(str(SHOT))
    finally:
        driver.quit()


async def test_a_page_from_an_origin_the_key_does_not_allow_is_refused_by_the_browser(
    demo, tmp_path
):
    key = (tmp_path / "demo-key").read_text().strip()
    browser_key = (tmp_path / "demo-browser-key").read_text().strip()
    token = httpx.post(
        demo.base_url + "/v1/browser-tokens",
        json={"browser_key": browser_key, "user_id": "demo_customer"},
        headers={"x-perkamo-api-key": key},
    ).json()["token"]
    port = free_port()
    query = f"/?api={demo.base_url}&token={token}"
    driver = open_chromium()
    try:
        with page_server(port):
            # The demo key allows http://localhost:* (a test Space) and the server's own
            # origin; http://127.0.0.1:<another port> it does not.
            driver.get(f"http://127.0.0.1:{port}{query}")
            WebDriverWait(driver, 10).until(lambda d: d.title != "waiting")
            assert driver.title == "refused: TypeError"  # the browser refused to read it
            driver.get(f"http://localhost:{port}{query}")
            WebDriverWait(driver, 10).until(lambda d: d.title != "waiting")
            assert driver.title == "read 200"
    finally:
        driver.quit()
