"""Cleartext HTTP/2 (h2c) spoken over a raw socket with the ``h2`` library, and raw frames
for what a hostile peer sends that a well-behaved client library would refuse to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio

Headers = list[tuple[str, str]]
DATA, HEADERS, RST_STREAM, SETTINGS, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x8
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One HTTP/2 frame as bytes, whatever it says (RFC 9113 §4.1)."""
    header = len(payload).to_bytes(3, "big") + bytes([kind, flags])
    return header + (stream_id & 0x7FFFFFFF).to_bytes(4, "big") + payload


@dataclass
class Answer:
    """What arrived on one stream."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    ended: bool = False
    reset: int | None = None  # the first RST_STREAM's error code, if the server reset it


class H2Client:
    """One HTTP/2 connection: requests, flow-controlled bodies, answers per stream."""

    def __init__(self, stream: trio.SocketStream, connection: h2.connection.H2Connection):
        self.stream = stream
        self.connection = connection
        self.answers: dict[int, Answer] = {}
        self.closed = False  # the server closed the connection (or sent GOAWAY)
        self._buffered = b""

    @classmethod
    @asynccontextmanager
    async def open(cls, port: int, *, upgrade: bool = False) -> AsyncIterator[H2Client]:
        """Prior knowledge, or (``upgrade``) an HTTP/1.1 ``GET /healthz`` upgraded to h2c:
        then stream 1 holds that request's answer."""
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            # The client sends what it is told to, valid or not (a test client).
            config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False)
            connection = h2.connection.H2Connection(config)
            client = cls(stream, connection)
            if upgrade:
                settings = connection.initiate_upgrade_connection()
                await stream.send_all(
                    b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\n"
                    b"upgrade: h2c\r\nhttp2-settings: " + settings + b"\r\n\r\n"
                )
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = await stream.receive_some(65536)
                    assert chunk, head
                    head += chunk
                head, _, client._buffered = head.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101"), head
                client.answers[1] = Answer()
            else:
                connection.initiate_connection()
            await client.flush()
            yield client

    async def flush(self) -> None:
        await self.send_raw(self.connection.data_to_send())

    async def send_raw(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True

    def request(self, headers: Headers, *, end_stream: bool = True) -> int:
        stream_id = self.connection.get_next_available_stream_id()
        self.connection.send_headers(stream_id, headers, end_stream=end_stream)
        self.answers[stream_id] = Answer()
        return stream_id

    async def receive(self) -> None:
        """One read from the socket, its events applied."""
        if self._buffered:
            data, self._buffered = self._buffered, b""
        else:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
        if not data:
            self.closed = True
            return
        try:
            events = self.connection.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return
        for event in events:
            self._apply(event)
        await self.flush()

    def _apply(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        answer = self.answers.setdefault(stream_id, Answer()) if stream_id else None
        if isinstance(event, h2.events.ResponseReceived) and answer is not None:
            answer.headers = {k.decode(): v.decode() for k, v in event.headers}
            answer.status = int(answer.headers[":status"])
        elif isinstance(event, h2.events.DataReceived) and answer is not None:
            answer.body += event.data
            self.connection.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.StreamEnded) and answer is not None:
            answer.ended = True
        elif isinstance(event, h2.events.StreamReset) and answer is not None:
            answer.reset = event.error_code if answer.reset is None else answer.reset
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True

    async def answer(self, stream_id: int, *, whole: bool = True) -> Answer:
        """The stream's answer: its headers (``whole``: until it ends or is reset)."""
        answer = self.answers[stream_id]
        while not self.closed and answer.reset is None and not answer.ended:
            if not whole and answer.status is not None:
                break
            await self.receive()
        return answer

    async def send_body(self, stream_id: int, body: bytes, *, end: bool = True) -> None:
        """As much of ``body`` as flow control allows, until the stream is answered or
        reset (a client may stop sending once it has the answer); ``end``: the last frame
        ends the stream."""
        answer = self.answers[stream_id]
        while body and not self.closed and answer.reset is None and answer.status is None:
            window = min(
                self.connection.local_flow_control_window(stream_id),
                self.connection.max_outbound_frame_size,
            )
            if window <= 0:
                await self.receive()
                continue
            chunk, body = body[:window], body[window:]
            self.connection.send_data(stream_id, chunk, end_stream=end and not body)
            await self.flush()

    async def settle(self, seconds: float) -> None:
        """Read whatever the server sends for ``seconds`` (or until it closes)."""
        with trio.move_on_after(seconds):
            while not self.closed:
                await self.receive()
