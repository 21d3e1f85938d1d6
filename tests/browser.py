"""The browser half in tests: a Space with the demo program, a browser key, tokens minted
through the API, and browser calls (a token, an origin) through the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

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


async def browser_setup(runtime: Runtime, api: Api, space: SpaceKey, **policy: Any) -> Browser:
    """The demo program in ``space`` and a browser key (``policy`` over a shop's default:
    its origin, every configured event)."""
    await activate_demo(runtime.db, runtime.programs, space.space.id)
    body = {"name": "Shop", "allowed_origins": [SHOP], "allowed_events": ["*"], **policy}
    created = await api.post("/v1/admin/browser-keys", body)
    assert created.status == 201, created.body
    return Browser(api, space, created.body["key"], created.body["id"])


@dataclass
class Sse:
    """One Server-Sent Event as received."""

    event: str
    data: Any
    id: int | None


class EventStream:
    """A live stream read over a raw socket (HTTP/1.1, chunked): ``status`` and ``headers``
    of the answer, then ``await next_event()`` per event (keep-alive comments are counted in
    ``comments``); ``ended()`` once the server closed the stream."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._raw = bytearray()  # received, not yet de-chunked
        self._text = ""  # de-chunked, not yet parsed into events
        self._eof = False
        self._chunked = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""  # a refusal's whole body
        self.comments = 0

    async def _more(self) -> None:
        chunk = await self._sock.receive_some(65536)
        if not chunk:
            self._eof = True
        self._raw += chunk

    async def start(self) -> None:
        while b"\r\n\r\n" not in self._raw:
            await self._more()
            assert not self._eof, "closed before an answer"
        head, _, rest = bytes(self._raw).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v for k, v in (ln.split(": ", 1) for ln in lines[1:])}
        self._raw = bytearray(rest)
        self._chunked = self.headers.get("transfer-encoding") == "chunked"
        if not self._chunked:
            length = int(self.headers.get("content-length", "0"))
            while len(self._raw) < length and not self._eof:
                await self._more()
            self.body = bytes(self._raw[:length])

    async def _dechunk(self) -> bool:
        """One more chunk of the body into ``_text``; False at the end of the body."""
        while True:
            line_end = self._raw.find(b"\r\n")
            if line_end >= 0:
                size = int(self._raw[:line_end].split(b";")[0], 16)
                if size == 0:
                    return False
                if len(self._raw) >= line_end + 2 + size + 2:
                    start = line_end + 2
                    self._text += self._raw[start : start + size].decode()
                    del self._raw[: start + size + 2]
                    return True
            if self._eof:
                return False
            await self._more()

    async def next_event(self, within: float = 5.0) -> Sse:
        import json

        import trio

        with trio.fail_after(within):
            while True:
                while "\n\n" in self._text:
                    block, _, self._text = self._text.partition("\n\n")
                    event, data, event_id = "message", "", None
                    for line in block.split("\n"):
                        if line.startswith(":"):
                            self.comments += 1
                            continue
                        name, _, value = line.partition(": ")
                        if name == "event":
                            event = value
                        elif name == "data":
                            data = value
                        elif name == "id":
                            event_id = int(value)
                    if data:
                        return Sse(event, json.loads(data), event_id)
                if not await self._dechunk():
                    raise EOFError("the stream ended")

    async def ended(self, within: float = 5.0) -> bool:
        import trio

        with trio.fail_after(within):
            while await self._dechunk():
                pass
        return True


@asynccontextmanager
async def stream(
    port: int, token: str, *, last_event_id: int | None = None, origin: str | None = SHOP
) -> AsyncIterator[EventStream]:
    target = f"/v1/client/stream?token={token}"
    if last_event_id is not None:
        target += f"&last_event_id={last_event_id}"
    head = f"GET {target} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n"
    if origin:
        head += f"origin: {origin}\r\n"
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    async with sock:
        await sock.send_all((head + "\r\n").encode())
        events = EventStream(sock)
        with trio.fail_after(5):
            await events.start()
        yield events
