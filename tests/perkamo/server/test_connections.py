"""HTTP/1.1 connection hygiene against the real server (hypercorn, h11): a request answered
before its body arrived must not wedge the keep-alive connection. Found by schemathesis: an
undeclared method with a body (405) left the next request on that connection unanswered."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
import trio

from perkamo.http.responses import ErrorBody
from tests.raw_http import parse, read_response, receive_all
from tests.server_process import ServerProcess

# Real server processes in real time: left out by `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/v1/events"), ("QUERY", "/v1/identify"), ("POST", "/v1/nowhere")],
)
async def test_an_early_answer_does_not_wedge_the_connection(server, method, path):
    body = b'{"user_id": "u", "event": "e", "transaction_id": "t"}'
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            buffer = bytearray()
            head = (
                f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            )
            await stream.send_all(head.encode())
            await trio.sleep(0.2)  # the server may answer before the body arrives
            await stream.send_all(body + b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            first, _ = await read_response(stream, buffer)
            assert first in (404, 405)
            second, answer = await read_response(stream, buffer)
            assert (second, answer) == (200, b'{"status":"ok"}')


async def test_an_oversized_body_is_refused_at_once_with_connection_close(server):
    """413 without reading 2 MiB: the answer comes before the body is sent and says
    ``connection: close``, so a client does not reuse a connection whose unread body could
    be taken for its next request."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            head = "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 2097152\r\n\r\n"
            await stream.send_all(head.encode() + b"{" * 1000)
            buffer = bytearray()
            while b"\r\n\r\n" not in buffer:
                buffer += await stream.receive_some(65536)
            head_lines = bytes(buffer).split(b"\r\n\r\n")[0].lower().split(b"\r\n")
            assert head_lines[0].startswith(b"http/1.1 413")
            assert b"connection: close" in head_lines


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        b"POST /v1/events HTTP/1.0\r\ncontent-length: 2\r\n\r\n{}",
        b"GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ],
    ids=["close", "http-1.0", "post-close", "post-http-1.0", "404-close"],
)
async def test_connection_close_and_http_1_0_close_at_once(server, request_bytes):
    """The socket closes right after the answer. Before the mend in connections.py (1) it
    stayed open until the read timeout: hypercorn closed it from the request's task, whose
    scope quart-trio had cancelled."""
    with trio.fail_after(3):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(request_bytes)
            status, _, body = parse(await receive_all(stream))
    assert status in (200, 401, 404)
    msgspec.json.decode(body)  # a whole JSON answer came before the close


async def test_slow_clients_get_408_and_are_closed(pg_url, tmp_path, space):
    """A request must arrive whole within the read timeout (2 s here), however it trickles:
    headers on a fresh connection, a body, the headers of a second request on a keep-alive
    connection. An unauthenticated body is not read at all: 401 and close at once."""
    server = ServerProcess(pg_url, tmp_path, env={"PERKAMO_READ_TIMEOUT_SECONDS": "2"})
    await server.start()
    key = space.key.encode()
    results: dict[str, tuple[float, bytes]] = {}

    async def trickle(name: str, head: bytes, drip: bytes, every: float = 0.25) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            started = trio.current_time()
            await stream.send_all(head)
            received = bytearray()

            async def send_forever() -> None:
                try:
                    while True:
                        await trio.sleep(every)
                        await stream.send_all(drip)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_forever)
                try:
                    while chunk := await stream.receive_some(65536):
                        received += chunk
                except trio.BrokenResourceError:
                    pass
                nursery.cancel_scope.cancel()
            results[name] = (trio.current_time() - started, bytes(received))

    events = b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n"
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle, "headers", b"GET /healthz HTTP/1.1\r\n", b"x-a: b\r\n")
                nursery.start_soon(
                    trickle, "body", events + b"x-perkamo-api-key: " + key + b"\r\n\r\n{", b" "
                )
                nursery.start_soon(
                    trickle,
                    "second-request",
                    b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\n",
                    b"x-a: b\r\n",
                )
                nursery.start_soon(trickle, "unauthenticated", events + b"\r\n{", b" ")
    finally:
        server.kill()
    elapsed, raw = results["unauthenticated"]
    assert elapsed < 1.5 and parse(raw)[0] == 401
    assert parse(raw)[1]["connection"] == "close"
    elapsed, raw = results["second-request"]
    assert raw.startswith(b"HTTP/1.1 200")  # the first request was answered at once
    assert raw.count(b"HTTP/1.1 408") == 1 and 2 <= elapsed < 4, (elapsed, raw)
    for name in ("body", "headers"):
        elapsed, raw = results[name]
        status, headers, body = parse(raw)
        assert (status, headers["connection"]) == (408, "close"), (name, raw)
        assert msgspec.json.decode(body)["error"] == "request_timeout"
        assert 2 <= elapsed < 4, (name, elapsed)
    assert "Traceback" not in server.log()


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n", 431, "headers_too_large"),
        (
            b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n"
            b"content-length: 3\r\n\r\n{}",
            400,
            "validation_error",
        ),
        (
            b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: -2\r\n\r\n{}",
            400,
            "validation_error",
        ),
        (b"GET /healthz HTTP/1.1\r\nhost x\r\n\r\n", 400, "validation_error"),
        (b"GET /healthz\r\n\r\n", 400, "validation_error"),
    ],
    ids=["long-path", "duplicate-length", "negative-length", "bad-header", "bad-request-line"],
)
async def test_protocol_errors_have_the_json_error_body(server, request_bytes, status, code):
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(request_bytes)
            got, headers, body = parse(await receive_all(stream))
    assert got == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = msgspec.json.decode(body, type=ErrorBody)
    assert error.error == code and error.message
    assert headers["x-perkamo-request-id"] == error.request_id


async def test_connections_beyond_the_limit_are_refused_early(pg_url, tmp_path):
    """With PERKAMO_MAX_CONNECTIONS=20, twenty idle clients hold every slot: the next
    connection is answered 503 overloaded and closed at once, and a slot that frees up is
    usable again."""
    server = ServerProcess(pg_url, tmp_path, env={"PERKAMO_MAX_CONNECTIONS": "20"})
    await server.start()
    try:
        with trio.fail_after(10), contextlib.ExitStack() as stack:
            await trio.sleep(0.3)  # the readiness probe's connection is gone
            held = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(20)]
            stack.callback(lambda: [s.socket.close() for s in held])
            await trio.sleep(0.2)
            extra = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with extra:
                await extra.send_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                status, headers, body = parse(await receive_all(extra))
            assert (status, msgspec.json.decode(body)["error"]) == (503, "overloaded")
            assert headers["retry-after"]
            await held.pop().aclose()
            await trio.sleep(0.2)
            again = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with again:
                await again.send_all(
                    b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
                )
                assert parse(await receive_all(again))[0] == 200
    finally:
        server.kill()
