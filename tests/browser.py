"""The browser half in tests: a Space with the demo program, a browser key, tokens minted
through the API, and browser calls (a token, an origin) through the real app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perkamo.configuration import activate_demo
from perkamo.runtime import Runtime
from tests.api_client import Answer, Api
from tests.spaces import SpaceKey

SHOP = "https://shop.example.com"


@dataclass
class Browser:
    """A shop's browser setup: its server key (``api``), a browser key and its id."""

    api: Api
    space: SpaceKey
    key: str
    key_id: str

    async def token(self, user_id: str = "customer_1", **body: Any) -> str:
        answer = await self.api.post(
            "/v1/browser-tokens", {"browser_key": self.key, "user_id": user_id, **body}
        )
        assert answer.status == 200, answer.body
        return str(answer.body["token"])

    async def call(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        json: Any = None,
        origin: str | None = SHOP,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        if origin is not None:
            sent["origin"] = origin
        return await self.api.request(method, path, json=json, headers=sent, key=None)


async def browser_setup(
    runtime: Runtime, api: Api, space: SpaceKey, **policy: Any
) -> Browser:
    """The demo program in ``space`` and a browser key (``policy`` over a shop's default:
    its origin, every configured event)."""
    await activate_demo(runtime.db, runtime.programs, space.space.id)
    body = {"name": "Shop", "allowed_origins": [SHOP], "allowed_events": ["*"], **policy}
    created = await api.post("/v1/admin/browser-keys", body)
    assert created.status == 201, created.body
    return Browser(api, space, created.body["key"], created.body["id"])
