"""Protocol edges answer as docs/api.md (errors) says, with the JSON error body: one table, a row per
edge, each row a raw socket against a real server. Its read timeout is 7 s, longer than
hypercorn's own 5 s timers, so a row that holds is held by our code, not by theirs."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pytest
import trio

from perkamo.http.responses import ErrorBody
from tests.raw_http import parse
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow

READ_TIMEOUT = 7.0
HEAD_LIMIT = 16 * 1024  # request line and headers, up to and including the empty line
IDLE = (READ_TIMEOUT, READ_TIMEOUT + 2)  # when a timed-out connection is answered or closed


@dataclass(frozen=True)
class Row:
    name: str
    head: bytes  # sent at once (after ``delay``)
    status: int | None  # None: the server sends nothing at all
    code: str | None = None  # the JSON error body's code (None: a success)
    closes: bool = True  # the server closes the connection after the answer
    drip: bytes = b""  # then sent every 0.5 s while the connection is open
    delay: float = 0.0
    at: tuple[float, float] | None = None  # when the answer (no answer: the close) comes
    close_at: tuple[float, float] | None = None  # when the close comes, after an answer


def padded(prefix: bytes, size: int) -> bytes:
    """A GET whose request line and headers are exactly ``size`` bytes."""
    bare = prefix + b"x-pad: \r\n\r\n"
    return prefix + b"x-pad: " + b"p" * (size - len(bare)) + b"\r\n\r\n"


def rows(key: bytes) -> list[Row]:
    health = b"GET /healthz HTTP/1.1\r\nhost: x\r\n"
    identify = (
        b"POST /v1/identify HTTP/1.1\r\nhost: x\r\nx-perkamo-api-key: " + key + b"\r\n"
        b"content-type: application/json\r\n"
    )
    body = b'{"user_id":"u"}'
    length = b"content-length: %d\r\n" % len(body)
    chunked = b"transfer-encoding: chunked\r\n\r\nf\r\n" + body + b"\r\n0\r\n\r\n"
    websocket = (
        b"connection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    return [
        Row("slow headers", b"GET /healthz HTTP/1.1\r\n", 408, "request_timeout",
            drip=b"x-a: b\r\n", at=IDLE),
        Row("idle new connection", b"", None, at=IDLE),
        Row("idle keep-alive connection", health + b"\r\n", 200, close_at=IDLE),
        Row("a request after 6 s idle", health + b"\r\n", 200, closes=False, delay=6.0),
        Row("headers of 16 KiB", padded(health, HEAD_LIMIT), 200, closes=False),
        Row("headers over 16 KiB", padded(health, HEAD_LIMIT + 1), 431, "headers_too_large"),
        Row("headers of 60 KB", padded(health, 60_000), 431, "headers_too_large"),
        Row("content-length and chunked", identify + length + chunked, 400, "validation_error"),
        Row("transfer-encoding gzip", identify + b"transfer-encoding: gzip, chunked\r\n\r\n",
            501, "not_supported"),
        Row("HTTP/9.9", b"GET /healthz HTTP/9.9\r\nhost: x\r\n\r\n", 505,
            "http_version_not_supported"),
        Row("HTTP/2.0 request line", b"GET /healthz HTTP/2.0\r\nhost: x\r\n\r\n", 505,
            "http_version_not_supported"),
        Row("content-encoding gzip", identify + length + b"content-encoding: gzip\r\n\r\n" + body,
            415, "unsupported_media_type", closes=False),
        Row("content-encoding identity",
            identify + length + b"content-encoding: identity\r\n\r\n" + body, 200, closes=False),
        Row("websocket upgrade, /v1/usage", b"GET /v1/usage HTTP/1.1\r\nhost: x\r\n" + websocket,
            400, "validation_error"),
        Row("websocket upgrade, /healthz", health + websocket, 400, "validation_error"),
    ]  # fmt: skip


@dataclass
class Outcome:
    raw: bytes = b""
    answered_at: float | None = None
    closed_at: float | None = None
    reset: bool = False


def _complete(raw: bytes) -> bool:
    head, found, body = raw.partition(b"\r\n\r\n")
    if not found:
        return False
    return len(body) >= int(parse(raw)[1].get("content-length", "0"))


async def run(port: int, row: Row) -> Outcome:
    outcome = Outcome()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream, trio.open_nursery() as nursery:
        started = trio.current_time()
        await trio.sleep(row.delay)
        await stream.send_all(row.head)

        async def drip() -> None:
            while True:
                await trio.sleep(0.5)
                await stream.send_all(row.drip)

        if row.drip:
            nursery.start_soon(drip)
        with trio.move_on_after(READ_TIMEOUT + 5) as reading:
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    outcome.reset = True
                    chunk = b""
                now = trio.current_time() - started
                if not chunk:
                    outcome.closed_at = now
                    break
                outcome.raw += chunk
                if outcome.answered_at is None and _complete(outcome.raw):
                    outcome.answered_at = now
                    if not row.closes:  # a kept-alive connection: a close would come at once
                        reading.deadline = trio.current_time() + 1
        nursery.cancel_scope.cancel()
    return outcome


def problems(row: Row, outcome: Outcome) -> list[str]:
    found = []
    if outcome.reset:
        found.append("the connection was reset")
    if row.status is None:
        if outcome.raw:
            found.append(f"expected no answer, got {outcome.raw[:80]!r}")
    elif outcome.answered_at is None:
        found.append(f"no whole answer: {outcome.raw[:120]!r}")
    else:
        status, headers, body = parse(outcome.raw)
        if status != row.status:
            found.append(f"status {status}, expected {row.status}: {outcome.raw[:300]!r}")
        elif row.code is not None:
            error = msgspec.json.decode(body, type=ErrorBody)
            if (headers.get("content-type"), error.error) != ("application/json", row.code):
                found.append(f"body {body!r}, expected the JSON error {row.code}")
            if not error.message or headers.get("x-perkamo-request-id") != error.request_id:
                found.append(f"error body without message or request id: {body!r}")
        if row.closes and row.status >= 400 and headers.get("connection") != "close":
            found.append("no connection: close on an answer that closes the connection")
    if row.closes != (outcome.closed_at is not None):
        found.append(f"closed at {outcome.closed_at}, expected closes={row.closes}")
    when = outcome.closed_at if row.status is None else outcome.answered_at
    for bounds, at in ((row.at, when), (row.close_at, outcome.closed_at)):
        if bounds is not None and (at is None or not bounds[0] <= at <= bounds[1]):
            found.append(f"at {at} s, expected within {bounds}")
    return found


async def test_protocol_edges_answer_as_documented(pg_url, tmp_path, space):
    server = ServerProcess(
        pg_url, tmp_path, env={"PERKAMO_READ_TIMEOUT_SECONDS": f"{READ_TIMEOUT:g}"}
    )
    await server.start()
    table = rows(space.key.encode())
    outcomes: dict[str, Outcome] = {}

    async def one(row: Row) -> None:
        outcomes[row.name] = await run(server.port, row)

    try:
        with trio.fail_after(READ_TIMEOUT + 15):
            async with trio.open_nursery() as nursery:
                for row in table:
                    nursery.start_soon(one, row)
    finally:
        server.kill()
    failed = {row.name: found for row in table if (found := problems(row, outcomes[row.name]))}
    assert not failed, "\n".join(f"{name}: {'; '.join(found)}" for name, found in failed.items())
    assert "Traceback" not in server.log()
