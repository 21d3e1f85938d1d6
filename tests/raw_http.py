"""HTTP/1.1 spoken byte by byte over a socket, for tests of what clients send that no HTTP
library would (trickled headers, contradicting framing, unknown versions)."""

from __future__ import annotations

import trio


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


async def receive_all(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body
