"""One load-generator process of ``python -m bench streams``: a trio program holding a few
thousand live streams open (raw HTTP/1.1 sockets, 127.0.0.1 only) until its deadline.

It mints each customer's stream token on one keep-alive connection (``POST
/v1/browser-tokens``, like a shop's backend would), opens the stream, and reads it: for
every ``event: change`` whose transaction id carries a send time (``lat-<ns>-…``) it records
how long the change took to arrive. At ``event: expired`` it mints a fresh token and opens
the stream again (a re-open). Every half second it reports to its parent through a pipe.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import trio

_LATENCY = re.compile(rb'"transaction_id":"lat-(\d+)-')
_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)


@dataclass
class Plan:
    host: str
    port: int
    key: str  # the server key that mints (the shop's backend)
    browser_key: str
    customers: list[str]
    ttl: int  # the stream tokens' lifetime asked for (the server clamps to 300 s)
    deadline: float  # time.time() at which everything closes
    opens_per_second: float = 400.0  # this process's pace of first opens


@dataclass
class Counts:
    opened: int = 0  # streams open now
    opens: int = 0  # first opens
    reopens: int = 0  # after ``expired``
    mints: int = 0
    keep_alives: int = 0
    changes: int = 0
    snapshots: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # since the last report

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Minter:
    """Mints stream tokens over one keep-alive connection (requests one at a time)."""

    def __init__(self, plan: Plan, counts: Counts) -> None:
        self.plan, self.counts = plan, counts
        self._sock: trio.SocketStream | None = None
        self._lock = trio.Lock()
        self._buffer = b""

    async def token(self, customer: str) -> str:
        body = json.dumps({
            "browser_key": self.plan.browser_key, "user_id": customer, "purpose": "stream",
            "ttl_seconds": self.plan.ttl,
        }).encode()  # fmt: skip
        head = (
            f"POST /v1/browser-tokens HTTP/1.1\r\nhost: {self.plan.host}\r\n"
            f"x-perkamo-api-key: {self.plan.key}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        async with self._lock:
            if self._sock is None:
                self._sock = await trio.open_tcp_stream(self.plan.host, self.plan.port)
            await self._sock.send_all(head + body)
            answer = await self._answer(self._sock)
        self.counts.mints += 1
        return str(json.loads(answer)["token"])

    async def _answer(self, sock: trio.SocketStream) -> bytes:
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += await sock.receive_some(65536)
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        found = _CONTENT_LENGTH.search(head)
        length = int(found.group(1)) if found else 0
        while len(rest) < length:
            rest += await sock.receive_some(65536)
        self._buffer = rest[length:]
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
        return rest[:length]


class Minters:
    """A few minting connections, so that a slow answer does not hold every first open."""

    def __init__(self, plan: Plan, counts: Counts, size: int = 8) -> None:
        self._minters = [Minter(plan, counts) for _ in range(size)]
        self._next = 0

    async def token(self, customer: str) -> str:
        self._next = (self._next + 1) % len(self._minters)
        return await self._minters[self._next].token(customer)


async def _hold(plan: Plan, customer: str, minter: Minters, counts: Counts) -> None:
    """One customer's stream, re-opened with a fresh token whenever it expires."""
    first = True
    while time.time() < plan.deadline:
        try:
            token = await minter.token(customer)
            sock = await trio.open_tcp_stream(plan.host, plan.port)
        except (OSError, RuntimeError, ValueError) as exc:
            counts.error(type(exc).__name__)
            await trio.sleep(1)
            continue
        async with sock:
            request = f"GET /v1/client/stream?token={token} HTTP/1.1\r\nhost: {plan.host}\r\n\r\n"
            try:
                await sock.send_all(request.encode())
                counts.opens += first
                counts.reopens += not first
                first = False
                if await _read(sock, counts):
                    return  # the server closed for good (a shutdown)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                counts.error(type(exc).__name__)
                await trio.sleep(1)


async def _read(sock: trio.SocketStream, counts: Counts) -> bool:
    """Read a stream until it expires (False: open it again) or closes (True)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await sock.receive_some(65536)
        if not chunk:
            counts.error("closed before answering")
            return True
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        counts.error(head.split(b"\r\n", 1)[0].decode())
        await trio.sleep(1)
        return False
    counts.opened += 1
    pending = head.partition(b"\r\n\r\n")[2]
    try:
        while True:
            now = time.time()
            counts.keep_alives += pending.count(b": keep-alive")
            counts.snapshots += pending.count(b"event: profile")
            for sent in _LATENCY.findall(pending):
                counts.latencies.append(now - int(sent) / 1e9)
            counts.changes += pending.count(b"event: change")
            if b"event: expired" in pending:
                return False
            try:
                pending = await sock.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return True
            if not pending:
                return True
    finally:
        counts.opened -= 1


async def _main(plan: Plan, pipe: Connection) -> None:
    counts = Counts()
    minter = Minters(plan, counts)
    with trio.move_on_at(trio.current_time() + plan.deadline - time.time()):
        async with trio.open_nursery() as outer:

            async def report() -> None:
                while True:
                    await trio.sleep(0.5)
                    pipe.send(_snapshot(counts))
                    counts.latencies = []

            outer.start_soon(report)
            async with trio.open_nursery() as streams:
                for customer in plan.customers:
                    streams.start_soon(_hold, plan, customer, minter, counts)
                    await trio.sleep(1 / plan.opens_per_second)
            outer.cancel_scope.cancel()  # every stream ended (the server stopped)
    pipe.send(_snapshot(counts))
    pipe.send(None)


def _snapshot(counts: Counts) -> dict[str, Any]:
    return {**counts.__dict__, "errors": dict(counts.errors), "latencies": list(counts.latencies)}


def run(plan: Plan, pipe: Connection) -> None:
    """The process's entry point (multiprocessing)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    trio.run(_main, plan, pipe)
