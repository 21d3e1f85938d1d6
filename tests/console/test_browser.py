"""The console in a real browser: headless Chromium through Selenium (Debian's chromium and
chromium-driver; ``make test`` installs them), against a real server process. It walks the
main paths of CONSOLE.md and saves a screenshot of every screen it visits to
``docs/console/`` (the README shows some of them)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import trio
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

from perkamo.access.admin import set_webhook
from tests.chromium import open_chromium
from tests.console.helpers import add_operator
from tests.server_process import ServerProcess, demo_program

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
USER = "ann/smith <b>"  # a slash and markup: routed and escaped in a real browser


class Walk:
    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver, self.base = driver, base
        SHOTS.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def shot(self, name: str) -> None:
        height = self.driver.execute_script("return document.body.scrollHeight")
        self.driver.set_window_size(1280, max(700, min(int(height) + 40, 2400)))
        self.driver.save_screenshot(str(SHOTS / f"{name}.png"))
        self.driver.set_window_size(1280, 1000)

    def fill(self, name: str, value: str, within: str = "") -> None:
        field = self.driver.find_element(By.CSS_SELECTOR, f"{within} [name='{name}']".strip())
        field.clear()
        field.send_keys(value)

    def submit(self, selector: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, selector).click()

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def wait_for(self, words: str, seconds: float = 3) -> None:
        try:
            # While a page is being replaced, reading its body can fail ("node does not
            # belong to the document", a stale element): poll again until the time is up.
            WebDriverWait(
                self.driver, seconds, poll_frequency=0.1, ignored_exceptions=[WebDriverException]
            ).until(ready.text_to_be_present_in_element((By.TAG_NAME, "body"), words))
        except TimeoutException:
            said = self.text()[:800]
            raise AssertionError(f"{words!r} did not appear; the page says: {said}") from None

    def login(self, email: str, password: str) -> None:
        self.open("/console/login")
        self.fill("email", email)
        self.fill("password", password)
        self.submit("form button[type=submit]")
        self.wait_for("Log out")


@pytest.fixture
async def server(pg_url, tmp_path):
    proc = ServerProcess(pg_url, tmp_path)
    await proc.start()
    yield proc
    proc.kill()


async def test_an_operator_walks_the_console(server, pg_url):
    # Selenium blocks: the walk runs in a thread while the server is a real process.
    await trio.to_thread.run_sync(_walk, server, pg_url)


def _walk(server: ServerProcess, pg_url: str) -> None:
    admin_email, password = add_operator(pg_url, "walker", "admin")
    viewer_email, viewer_password = add_operator(pg_url, "looker", "viewer")
    driver = open_chromium()
    started = time.monotonic()
    clients: list[httpx.Client] = []
    try:
        walk = Walk(driver, server.base_url)
        walk.open("/console/spaces")  # not logged in: the login page
        walk.wait_for("Log in")
        walk.shot("login")
        walk.login(admin_email, password)
        slug = f"browser-{int(time.time())}"
        walk.fill("slug", slug)
        walk.fill("name", "Browser shop")
        walk.submit("form[action='/console/spaces'] button")
        walk.wait_for("Secret keys")
        walk.submit(f"form[action='/console/spaces/{slug}/keys'] button")
        walk.wait_for("shown once")
        key = driver.find_element(By.ID, "new-key").text.strip()
        assert key.startswith("sk_test_")
        walk.shot("keys")
        walk.open("/console/spaces")
        walk.shot("spaces")

        api = httpx.Client(base_url=server.base_url, headers={"x-perkamo-api-key": key})
        clients.append(api)  # closed at the end of the walk
        assert api.post("/v1/admin/config", json=demo_program()).status_code == 200
        receiver_port = _closed_port()
        with psycopg.connect(pg_url) as conn:
            set_webhook(conn, slug, f"http://127.0.0.1:{receiver_port}/hook")
        time.sleep(1.2)  # the server learns of the endpoint
        order = {"user_id": USER, "event": "purchase.completed", "transaction_id": "order-1",
                 "context": {"amount": 12900, "currency": "CZK"}}  # fmt: skip
        assert api.post("/v1/events", json=order).status_code == 200

        walk.open(f"/console/spaces/{slug}/events")
        walk.wait_for("order-1")
        tail = {**order, "transaction_id": "order-2-live"}
        assert api.post("/v1/events", json=tail).status_code == 200
        walk.wait_for("order-2-live", seconds=3)  # the live tail, without a reload
        walk.shot("events")
        driver.find_element(By.LINK_TEXT, "order-1").click()
        walk.wait_for("purchase_points")
        walk.shot("event")
        driver.find_element(By.PARTIAL_LINK_TEXT, "ann/smith").click()
        walk.wait_for("Ledger")
        assert "ann/smith <b>" in walk.text()  # shown as text, not markup
        walk.shot("customer")

        walk.open(f"/console/spaces/{slug}/program/events")
        events_body = demo_program()["modules"]["events"]
        _set_textarea(driver, _json_with(events_body, "ten"))
        walk.fill("version", "v2")
        walk.submit("main form button[type=submit]")
        walk.wait_for("body.rules[0].award[0]")
        walk.shot("module-error")
        _set_textarea(driver, _json_with(events_body, 20))
        walk.fill("version", "v2")
        walk.submit("main form button[type=submit]")
        walk.wait_for("Draft against active")
        walk.fill("event", "purchase.completed", "form[action$='/try']")
        walk.fill("context", '{"amount": 12900, "currency": "CZK"}', "form[action$='/try']")
        walk.submit("form[action$='/try'] button")
        walk.wait_for("Result with events v2")
        walk.shot("module-draft")
        walk.open(f"/console/spaces/{slug}/program")
        Select(driver.find_element(By.NAME, "module:events")).select_by_value("v2")
        walk.fill("reason", "double points")
        walk.submit("form[action$='/program/activate'] button")
        walk.wait_for("Activated events v2")
        walk.shot("program")

        walk.open(f"/console/spaces/{slug}/webhooks")
        walk.wait_for("dlv_")
        walk.submit("form[action$='/resend'] button")
        walk.wait_for("queued again")
        walk.shot("webhooks")
        walk.open(f"/console/spaces/{slug}/usage")
        walk.wait_for("Events per day")
        walk.shot("usage")
        walk.open(f"/console/spaces/{slug}/backtests")
        walk.submit("form[action$='/backtests'] button")
        walk.wait_for("bt_")
        walk.shot("backtests")
        walk.open("/console/audit")
        walk.wait_for("program.activate")
        walk.shot("audit")
        walk.submit("header form button")  # log out
        walk.wait_for("Log in")

        walk.login(viewer_email, viewer_password)
        walk.open(f"/console/spaces/{slug}/keys")
        walk.wait_for("Secret keys")
        assert not driver.find_elements(By.CSS_SELECTOR, "form[action$='/revoke']")
        status = driver.execute_script(
            "const token = document.querySelector('input[name=csrf_token]').value;"
            "const x = new XMLHttpRequest(); x.open('POST', '/console/spaces', false);"
            "x.setRequestHeader('content-type', 'application/x-www-form-urlencoded');"
            "x.send('slug=viewer-made&csrf_token=' + encodeURIComponent(token));"
            "return x.status;"
        )
        assert status == 403  # a viewer cannot change anything, even by hand
        walk.submit("header form button")
        walk.wait_for("Log in")
    finally:
        driver.quit()
        for client in clients:
            client.close()
    assert time.monotonic() - started < 60
    assert "Traceback" not in server.log()


def _json_with(events_body: dict, amount: object) -> str:
    body = json.loads(json.dumps(events_body))
    body["rules"][0]["award"] = [{"wallet": "points", "amount": amount}]
    return json.dumps(body, indent=2)


def _set_textarea(driver: webdriver.Chrome, text: str) -> None:
    area = driver.find_element(By.NAME, "body")
    driver.execute_script("arguments[0].value = arguments[1];", area, text)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
