"""Logging in and out: argon2id passwords, throttled per account and per client address, a
new session id at every login, the session deleted at logout."""

from __future__ import annotations

import secrets

from quart import Response

from perkamo.console import security
from perkamo.console.core import LOGIN_CSRF_COOKIE, PREFIX, Page, redirect, url
from storage import console as store
from storage.database import Conn


def _safe_next(target: str | None) -> str:
    """Only a console path: never an absolute or protocol-relative URL (open redirect)."""
    if not target or not target.startswith(PREFIX + "/") or target.startswith("//"):
        return url("/spaces")
    if "\\" in target or "\r" in target or "\n" in target:
        return url("/spaces")
    return target


async def login_form(page: Page) -> Response:
    if page.session is not None:
        return redirect(_safe_next(page.query.get("next")))
    token = secrets.token_urlsafe(32)
    response = page.render(
        "login.html", login_csrf=token, next=page.query.get("next", ""), error=None
    )
    _set_cookie(page, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


async def login(page: Page) -> Response:
    email = page.form.get("email", "").strip().lower()[:320]
    password = page.form.get("password", "")[:1024]
    client = page.request.remote_addr or "unknown"
    throttle = page.console.throttle
    # Counted before the (deliberately slow) password check, where every process sees it.
    wait = await page.runtime.db.run(throttle.attempt, email, client)
    if wait:
        return _refused(page, f"Too many failed logins; try again in {wait} s.", 429, wait)
    operator = await page.runtime.db.run(store.get_operator, email) if email else None
    if not security.check_password(operator.password_hash if operator else None, password):
        return _refused(page, "Wrong email or password.", 401)
    assert operator is not None
    await page.runtime.db.run(throttle.succeeded, email, client)
    # A new session id at every login (no fixation), and the old one, if any, ends.
    old = page.request.cookies.get(security.SESSION_COOKIE)
    token, digest, csrf = security.new_session()

    def start(conn: Conn) -> None:
        if old:
            store.delete_session(conn, security.session_hash(old))
        store.create_session(conn, digest, operator.id, csrf)
        store.audit(conn, operator.email, "login")

    await page.runtime.db.run(start)
    response = redirect(_safe_next(page.form.get("next")))
    _set_cookie(page, response, security.SESSION_COOKIE, token, max_age=None)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


async def logout(page: Page) -> Response:
    token = page.request.cookies.get(security.SESSION_COOKIE)
    if token:
        await page.runtime.db.run(store.delete_session, security.session_hash(token))
    response = redirect(url("/login"))
    response.delete_cookie(security.SESSION_COOKIE, path=PREFIX)
    return response


def _refused(page: Page, message: str, status: int, retry_after: int = 0) -> Response:
    token = secrets.token_urlsafe(32)
    response = page.render(
        "login.html", status=status, login_csrf=token, next=page.form.get("next", ""), error=message
    )
    _set_cookie(page, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
    if retry_after:
        response.headers["retry-after"] = str(retry_after)
    return response


def _set_cookie(page: Page, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="Lax",
        secure=page.request.scheme == "https",
    )
