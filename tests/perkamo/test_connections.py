"""HTTP/1.1 connection hygiene against the real server (hypercorn, h11): a request answered
before its body arrived must not wedge the keep-alive connection. Found by schemathesis: an
undeclared method with a body (405) left the next request on that connection unanswered."""

from __future__ import annotations

import pytest
import trio

from tests.server_process import ServerProcess


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes]:
    """One HTTP/1.1 response (content-length framed) from ``stream``."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        assert chunk, "connection closed before a response"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        assert chunk
        rest += chunk
    buffer[:] = rest[length:]
    return int(lines[0].split()[1]), rest[:length]


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


async def test_slow_clients_cannot_hold_connections(pg_url, tmp_path):
    """Headers that never finish are closed by the keep-alive timer (5 s); a body that stops
    arriving, by the read timeout (PERKAMO_READ_TIMEOUT_SECONDS, 3 s here; 30 s by default)."""
    server = ServerProcess(pg_url, tmp_path, env={"PERKAMO_READ_TIMEOUT_SECONDS": "3"})
    await server.start()
    closed_after: dict[str, float] = {}

    async def stall(name: str, sent: bytes) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(sent)
            started = trio.current_time()
            assert await stream.receive_some(65536) == b""  # closed, nothing answered
            closed_after[name] = trio.current_time() - started

    try:
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stall, "headers", b"POST /v1/events HTTP/1.1\r\nhost: x\r\n")
                body = b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"
                nursery.start_soon(stall, "body", body)
        assert closed_after["headers"] < 7
        assert 2.5 < closed_after["body"] < 5
    finally:
        server.kill()
