"""The console in a real browser: headless Chromium through Selenium (Debian's chromium and
chromium-driver; ``make test`` installs them), against a real server process and a real
webhook receiver. It walks an operator's main paths at 1440 px — set up a rule by form,
try it, activate it with a reason, watch an event arrive in the live tail, open its
delivery, resend it, adjust a customer, read the analytics — then checks the layout at
390 px, and saves a screenshot of every screen it visits to ``docs/console/``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import trio
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.chromium import open_chromium
from tests.perkamo.console.helpers import add_operator
from tests.perkamo.console.test_operations import AnsweringReceiver
from tests.server_process import ServerProcess, demo_program

# Real server processes in real time: left out by `make test-fast`.
pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "console"
USER = "ann/smith <b>"  # a slash and markup: routed and escaped in a real browser
LONG_USER = "customer-" + "x" * 156  # 165 characters: must never widen a page
WIDE, NARROW = 1440, 390


def _driver() -> webdriver.Chrome:
    return open_chromium(console_log=True, width=WIDE)


class Walk:
    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver, self.base, self.width = driver, base, WIDE
        SHOTS.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def size(self, width: int) -> None:
        self.width = width
        self.driver.set_window_size(width, 1000 if width == WIDE else 844)

    def shot(self, name: str) -> None:
        height = self.driver.execute_script("return document.body.scrollHeight")
        self.driver.set_window_size(self.width, max(700, min(int(height) + 40, 2400)))
        self.driver.save_screenshot(str(SHOTS / f"{name}.png"))
        self.size(self.width)

    def fill(self, name: str, value: str, within: str = "") -> None:
        field = self.driver.find_element(By.CSS_SELECTOR, f"{within} [name='{name}']".strip())
        field.clear()
        field.send_keys(value)

    def choose(self, name: str, value: str) -> None:
        Select(self.driver.find_element(By.NAME, name)).select_by_value(value)

    def submit(self, selector: str, confirm: bool = False) -> None:
        self.driver.find_element(By.CSS_SELECTOR, selector).click()
        if confirm:  # the page asks before a destructive or lasting change
            WebDriverWait(self.driver, 3).until(ready.alert_is_present()).accept()

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

    def fits(self, path: str) -> None:
        """The page is no wider than the window: long ids wrap or truncate, tables scroll
        inside their box."""
        self.open(path)
        wide = self.driver.execute_script("return document.documentElement.scrollWidth")
        assert wide <= self.width, f"{path} is {wide} px wide at {self.width} px"

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


async def test_an_operator_runs_the_program_from_the_console(server, pg_url, nursery):
    receiver = AnsweringReceiver([])
    receiver.answer = b'{"received": true}'
    await nursery.start(receiver.serve)
    # Selenium blocks: the walk runs in a thread while the server is a real process.
    await trio.to_thread.run_sync(_walk, server, pg_url, receiver.url)


def _walk(server: ServerProcess, pg_url: str, receiver_url: str) -> None:
    admin_email, password = add_operator(pg_url, "walker", "admin")
    viewer_email, viewer_password = add_operator(pg_url, "looker", "viewer")
    driver = _driver()
    started = time.monotonic()
    clients: list[httpx.Client] = []
    try:
        walk = Walk(driver, server.base_url)
        slug = f"browser-{int(time.time())}"
        key = _set_up(walk, admin_email, password, slug)
        api = httpx.Client(base_url=server.base_url, headers={"x-perkamo-api-key": key})
        clients.append(api)  # closed at the end of the walk
        assert api.post("/v1/admin/config", json=demo_program()).status_code == 200
        _hook_up(walk, slug, receiver_url)
        _rule_by_form(walk, slug)
        _event_to_delivery(walk, api, slug)
        _customer_and_analytics(walk, api, slug)
        _the_rest(walk, slug)
        _narrow(walk, slug)
        walk.size(WIDE)
        _viewer(walk, slug, viewer_email, viewer_password)
    finally:
        driver.quit()
        for client in clients:
            client.close()
    assert time.monotonic() - started < 120
    assert "Traceback" not in server.log()


def _set_up(walk: Walk, email: str, password: str, slug: str) -> str:
    walk.open("/console/spaces")  # not logged in: the login page
    walk.wait_for("Log in")
    walk.shot("login")
    walk.login(email, password)
    errors = [e for e in walk.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors  # e.g. an invalid pattern attribute is a console error
    walk.fill("slug", slug)
    walk.fill("name", "Browser shop")
    walk.submit("form[action='/console/spaces'] button")
    walk.wait_for("Secret keys")
    walk.submit(f"form[action='/console/spaces/{slug}/keys'] button")
    walk.wait_for("shown once")
    key = walk.driver.find_element(By.ID, "new-key").text.strip()
    assert key.startswith("sk_test_")
    walk.shot("keys")
    walk.driver.refresh()  # post → redirect → get: a refresh shows the list, no new key
    walk.wait_for("Secret keys")
    assert "shown once" not in walk.text()
    walk.open("/console/spaces")
    walk.shot("spaces")
    return key


def _hook_up(walk: Walk, slug: str, receiver_url: str) -> None:
    walk.open(f"/console/spaces/{slug}/webhooks")
    walk.fill("url", receiver_url)
    walk.submit("form[action$='/webhooks/endpoint'] button")
    walk.wait_for("Signing secret")
    time.sleep(1.2)  # the server learns of the endpoint


def _rule_by_form(walk: Walk, slug: str) -> None:
    program = f"/console/spaces/{slug}/program"
    walk.open(program + "/rules")
    walk.wait_for("Points for purchases")
    walk.driver.find_element(By.LINK_TEXT, "Add a rule").click()
    walk.wait_for("Add a rule")
    for name, value in (
        ("name", "Big basket bonus"),
        ("key", "big_basket"),
        ("event", "purchase.completed"),
        ("conditions_0_path", "context.amount"),
        ("conditions_0_value", "10000"),
        ("award_0_amount", "25"),
        ("try_context", '{"amount": 12900, "currency": "CZK"}'),
    ):
        walk.fill(name, value)
    walk.choose("conditions_0_op", "gte")
    walk.choose("award_0_wallet", "points")
    walk.submit("button[formaction$='/rules/try']")
    walk.wait_for("points: +75 instead of +50")
    walk.shot("rule-try")
    walk.fill("label", "big-basket")
    walk.submit("#rule-form button[type=submit]:not([formaction])")
    walk.wait_for("Draft big-basket saved")
    walk.shot("rules")
    walk.driver.find_element(By.PARTIAL_LINK_TEXT, "Review and activate big-basket").click()
    walk.wait_for("Reason (kept in the audit log)")
    walk.fill("reason", "bigger baskets, bigger thanks")
    walk.shot("review")
    walk.submit("form[action$='/program/activate'] button", confirm=True)
    walk.wait_for("Activated events big-basket")
    walk.shot("program")


def _event_to_delivery(walk: Walk, api: httpx.Client, slug: str) -> None:
    order = {
        "user_id": USER,
        "event": "purchase.completed",
        "transaction_id": "order-1",
        "context": {"amount": 12900, "currency": "CZK"},
    }
    assert api.post("/v1/events", json=order).status_code == 200
    walk.open(f"/console/spaces/{slug}/events")
    walk.wait_for("order-1")
    live = {**order, "transaction_id": "order-2-live"}
    assert api.post("/v1/events", json=live).status_code == 200
    long = {**order, "user_id": LONG_USER, "transaction_id": "order-3-long"}
    assert api.post("/v1/events", json=long).status_code == 200
    walk.wait_for("order-2-live", seconds=4)  # the live tail, without a reload
    walk.shot("events")
    walk.driver.find_element(By.LINK_TEXT, "order-1").click()
    walk.wait_for("big_basket")
    walk.shot("event")
    walk.driver.find_element(By.CSS_SELECTOR, "a[href*='/webhooks/dlv_']").click()
    walk.wait_for("Payload as sent")
    for _ in range(40):  # the receiver answers within a moment
        if "HTTP 200" in walk.text():
            break
        time.sleep(0.1)
        walk.driver.refresh()
    walk.wait_for("HTTP 200")
    walk.submit("form[action$='/resend'] button")
    walk.wait_for("queued again")
    walk.shot("delivery")


def _customer_and_analytics(walk: Walk, api: httpx.Client, slug: str) -> None:
    walk.open(f"/console/spaces/{slug}/events/order-1")
    walk.driver.find_element(By.PARTIAL_LINK_TEXT, "ann/smith").click()
    walk.wait_for("Ledger")
    assert "ann/smith <b>" in walk.text()  # shown as text, not markup
    walk.fill("amount", "40")
    walk.fill("reason", "parcel arrived late")
    walk.submit("form[action$='/adjust'] button", confirm=True)
    walk.wait_for("Adjusted points by +40")
    assert "parcel arrived late" in walk.text()  # in the ledger
    walk.shot("customer")
    walk.open(f"/console/spaces/{slug}/customers")
    walk.shot("customers")
    walk.open(f"/console/spaces/{slug}/analytics")
    walk.wait_for("outstanding now")
    walk.wait_for("Counted", seconds=8)  # the level rollup, counted in the background
    walk.shot("analytics")


def _the_rest(walk: Walk, slug: str) -> None:
    walk.open(f"/console/spaces/{slug}/program/events")
    events_body = demo_program()["modules"]["events"]
    _set_textarea(walk.driver, _json_with(events_body, "ten"))
    walk.fill("version", "v3")
    walk.submit("#editor button[type=submit]:not([formaction])")
    walk.wait_for("body.rules[0].award[0]")
    walk.shot("module-error")
    walk.open(f"/console/spaces/{slug}/webhooks")
    walk.wait_for("enabled")
    walk.shot("webhooks")
    walk.open(f"/console/spaces/{slug}/usage")
    walk.wait_for("Events per day")
    walk.shot("usage")
    walk.open(f"/console/spaces/{slug}/backtests")
    walk.wait_for("Start a back-test")
    walk.shot("backtests")
    walk.open("/console/audit")
    walk.wait_for("program.activate")
    walk.shot("audit")
    walk.open(f"/console/spaces/{slug}/no-such-screen")
    walk.wait_for("Log out")  # a 404 keeps the navigation


def _narrow(walk: Walk, slug: str) -> None:
    """390 px: the menu collapses, nothing is wider than the screen."""
    walk.size(NARROW)
    base = f"/console/spaces/{slug}"
    long = LONG_USER
    for path in (
        "/events",
        "/customers",
        "/webhooks",
        f"/customers/{long}",
        "/analytics",
        "/program/rules",
        "/events/order-3-long",
        "/backtests",
    ):
        walk.fits(base + path)
    walk.fits("/console/audit")
    walk.open(base + "/events")
    header = walk.driver.find_element(By.CSS_SELECTOR, "header.top")
    assert header.size["height"] < 80, header.size
    walk.shot("mobile-events")
    walk.driver.find_element(By.CSS_SELECTOR, "label.menu-button").click()
    out = walk.driver.find_element(By.XPATH, "//button[text()='Log out']")
    box = out.rect
    assert out.is_displayed() and box["x"] >= 0 and box["x"] + box["width"] <= NARROW, box
    walk.shot("mobile-menu")
    walk.open(base + "/customers/" + "ann%2Fsmith%20%3Cb%3E")
    walk.wait_for("Ledger")
    walk.shot("mobile-customer")


def _viewer(walk: Walk, slug: str, email: str, password: str) -> None:
    walk.submit("header form button")  # log out
    walk.wait_for("Log in")
    walk.login(email, password)
    walk.open(f"/console/spaces/{slug}/keys")
    walk.wait_for("Secret keys")
    assert not walk.driver.find_elements(By.CSS_SELECTOR, "form[action$='/revoke']")
    status = walk.driver.execute_script(
        "const token = document.querySelector('input[name=csrf_token]').value;"
        "const x = new XMLHttpRequest(); x.open('POST', '/console/spaces', false);"
        "x.setRequestHeader('content-type', 'application/x-www-form-urlencoded');"
        "x.send('slug=viewer-made&csrf_token=' + encodeURIComponent(token));"
        "return x.status;"
    )
    assert status == 403  # a viewer cannot change anything, even by hand
    walk.submit("header form button")
    walk.wait_for("Log in")


def _json_with(events_body: dict, amount: object) -> str:
    body = json.loads(json.dumps(events_body))
    body["rules"][0]["award"] = [{"wallet": "points", "amount": amount}]
    return json.dumps(body, indent=2)


def _set_textarea(driver: webdriver.Chrome, text: str) -> None:
    area = driver.find_element(By.NAME, "body")
    driver.execute_script("arguments[0].value = arguments[1];", area, text)
