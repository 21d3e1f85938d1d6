"""Talking to the console in-process (the real app through Quart's test client), as a
browser would: cookies kept, forms posted with their CSRF token."""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from perkamo.console import security
from storage import console as store

ORIGIN = "http://localhost"


def add_operator(
    pg_url: str, name: str, role: str, password: str = "correct horse 42"
) -> tuple[str, str]:
    """A new operator (operators span Spaces: each test gets its own email)."""
    email = f"{name}-{secrets.token_hex(4)}@shop.io"
    with psycopg.connect(pg_url) as conn:
        store.add_operator(conn, email, role, security.hash_password(password))
    return email, password


@dataclass
class Page:
    status: int
    text: str
    headers: Any

    @property
    def location(self) -> str:
        return str(self.headers.get("location", ""))

    def csrf(self) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.text)
        assert found, self.text[:500]
        return found.group(1)


class Browser:
    """One browser: its own cookies and its own client address (login failures are counted
    per address in the session-wide database, so browsers must not share one)."""

    def __init__(self, app: Any, address: str | None = None) -> None:
        self.client = app.test_client()
        self.address = address or "10.{}.{}.{}".format(*secrets.token_bytes(3))
        self._scope = {"client": (self.address, 40000)}

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Page:
        response = await self.client.get(path, headers=headers or {}, scope_base=self._scope)
        return Page(response.status_code, await response.get_data(as_text=True), response.headers)

    async def post(
        self, path: str, form: dict[str, str], headers: dict[str, str] | None = None
    ) -> Page:
        response = await self.client.post(
            path, form=form, headers={"origin": ORIGIN, **(headers or {})},
            scope_base=self._scope,
        )  # fmt: skip
        return Page(response.status_code, await response.get_data(as_text=True), response.headers)

    async def follow(self, page: Page) -> Page:
        """The GET a redirect asks for (post-redirect-get), with the flash it shows once."""
        assert page.status in (302, 303), (page.status, page.text[:500])
        return await self.get(page.location)

    async def post_and_follow(self, path: str, form: dict[str, str]) -> Page:
        return await self.follow(await self.post(path, form))

    async def login(self, email: str, password: str) -> Page:
        form = await self.get("/console/login")
        return await self.post(
            "/console/login",
            {"email": email, "password": password, "csrf_token": form.csrf(), "next": ""},
        )

    async def csrf(self) -> str:
        return (await self.get("/console/spaces")).csrf()


def text_of(page_html: str) -> str:
    """A page's words as a reader sees them: tags gone, entities decoded, spaces single."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page_html)).split())
