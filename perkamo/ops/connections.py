"""HTTP/1.1 connections: what hypercorn 0.18's trio server (pinned) leaves undone, in one place.

:class:`ConnectionServer` replaces hypercorn's ``TCPServer`` (``install()``), and the few
protocol-level answers hypercorn writes itself get the JSON error body. Each point below was
a defect found from outside; the test named beside it fails without the mend.

1. **Ending a request inside the request's task.** hypercorn finishes a request — tells the
   app the stream closed, then starts the connection's next cycle or closes it (for
   ``Connection: close``, HTTP/1.0, a shutdown) — from the task that sent the response's last
   byte: the app's task. quart-trio cancels that task's scope as soon as it receives the
   ``http.disconnect`` this very step queues, so the step was cancelled halfway: the socket
   stayed open until the read timeout (the bare quart-trio echo app shows it), and under load
   at a shutdown a connection could be left neither idle nor closed, holding the shutdown
   for its whole grace period. The step is shielded here (bounded: if the app's queue is
   full it gives up and closes the connection).
   (``tests/perkamo/test_connections.py::test_connection_close_and_http_1_0_close_at_once``,
   ``tests/perkamo/test_process.py::
   test_sigterm_with_keep_alive_clients_exits_without_waiting_out_the_grace_period``)
2. **Lingering close.** Closing a socket whose client is still sending makes the kernel
   reset the connection, and the client may lose the answer it was sent (a 401 before the
   body, a 413). The close sends FIN first and reads (discarding) for up to
   ``LINGER_SECONDS`` before it lets go.
3. **A deadline for the whole request.** hypercorn's read timeout restarts on every byte,
   so a body trickled in at one byte a second was never dropped; its own idle timer is not
   restarted after a connection's first request (it is restarted from the same cancelled
   task as in 1; restarting it shielded costs a task start per request). One sweeper task
   checks every connection twice a second: a request whose headers and body have not fully
   arrived within the read timeout gets ``408 request_timeout`` and is closed; a connection
   idle that long is closed.
   (``test_connections.py::test_slow_clients_get_408_and_are_closed``)
4. **A connection limit.** Beyond ``max_connections`` a new connection is answered ``503
   overloaded`` and closed at once, long before file descriptors run out.
   (``test_connections.py::test_connections_beyond_the_limit_are_refused_early``)
5. **Protocol errors** that h11 detects (malformed or duplicate ``content-length``, headers
   over 16 KiB) were answered with an empty body; they get the JSON envelope.
   (``test_connections.py::test_protocol_errors_have_the_json_error_body``)
6. **Shutdown.** :func:`close_idle_until_done` closes idle connections until none is left
   (busy ones close after their response, through 1), so a shutdown waits for work, not for
   the grace period. (``tests/perkamo/test_process.py::
   test_sigterm_with_keep_alive_clients_exits_without_waiting_out_the_grace_period``)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar

import h11
import msgspec
import trio
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol import http_stream as hypercorn_stream
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer

from perkamo.errors import Code, PerkamoError
from perkamo.http.errors import error_body, new_request_id

LINGER_SECONDS = 2.0
REFUSAL_LINGER_SECONDS = 0.5
SWEEP_SECONDS = 0.5
_STATUS_TEXT = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class Limits:
    read_timeout: float = 30.0  # headers and body of one request; also the idle keep-alive
    max_connections: int = 4096


def error_bytes(exc: PerkamoError) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The JSON error body for answers written below the app, and its headers."""
    request_id = new_request_id(None)
    body = _encoder.encode(error_body(exc, request_id))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"x-perkamo-request-id", request_id.encode()),
        *((k.encode(), v.encode()) for k, v in exc.headers.items()),
    ]
    return body, headers


def _raw_response(status: int, exc: PerkamoError) -> bytes:
    body, headers = error_bytes(exc)
    head = f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Error')}\r\n".encode()
    return head + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body


class ConnectionServer(TCPServer):
    """One client connection (see the module docstring for what differs from hypercorn)."""

    live: ClassVar[set[ConnectionServer]] = set()
    limits: ClassVar[Limits] = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle = True
        self.idle_since = trio.current_time()
        self.receiving_since: float | None = None  # first byte of a request not yet complete
        self.read_done = trio.Event()
        self.closing = False
        self._feeding = trio.CancelScope()  # around handing received bytes to hypercorn

    async def run(self) -> None:
        if len(self.live) >= self.limits.max_connections:
            await self._refuse()
            return
        self.live.add(self)
        try:
            await super().run()
        finally:
            self.live.discard(self)

    async def _refuse(self) -> None:
        exc = PerkamoError(
            Code.OVERLOADED, "The server has too many open connections; retry shortly."
        )
        with trio.CancelScope(shield=True):
            # Answer, then read what the client sent (briefly): closing with unread data
            # would reset the connection and the client could lose the answer.
            with trio.move_on_after(REFUSAL_LINGER_SECONDS):
                try:
                    await self.stream.send_all(_raw_response(503, exc))
                    await self.stream.send_eof()
                    while await self.stream.receive_some(MAX_RECV):
                        pass
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await self.stream.aclose()

    async def _read_data(self) -> None:
        # hypercorn's loop, minus its per-receive timeout (the sweeper bounds whole
        # requests), and able to stop feeding hypercorn when the connection closes: a
        # request that arrived behind the last one parks hypercorn's reader (h11 paused
        # until a next cycle that a closing connection never starts); from then on what
        # the client sends is read and dropped, so the close can linger without a reset.
        try:
            ended = False
            with self._feeding:
                while True:
                    try:
                        data = await self.stream.receive_some(MAX_RECV)
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        ended = True
                        break
                    if data and self.receiving_since is None:
                        self.receiving_since = trio.current_time()
                    await self.protocol.handle(RawData(bytes(data)))
                    if data == b"":
                        ended = True
                        break
            if not ended:  # the close cancelled the feeding: drop what still arrives
                try:
                    while await self.stream.receive_some(MAX_RECV):
                        pass
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    pass
            with trio.CancelScope(shield=True):
                await self.protocol.handle(Closed())
        finally:
            self.read_done.set()
            # hypercorn's first idle timer would otherwise hold the finished connection
            # (and its slot) for the keep-alive timeout.
            with trio.CancelScope(shield=True):
                await self.idle_task.stop()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Closed):
            with trio.CancelScope(shield=True):
                await self._close()
                await self.protocol.handle(Closed())
        elif isinstance(event, Updated) and event.idle:
            # Not hypercorn's idle timer (see 3): the sweeper closes idle connections.
            self.idle = True
            self.idle_since = trio.current_time()
            self.receiving_since = self.idle_since if _buffered(self) else None
        else:
            if isinstance(event, Updated):
                self.idle = False
            await super().protocol_send(event)

    async def _close(self) -> None:
        with trio.CancelScope(shield=True):
            self.closing = True
            self._feeding.cancel()
            try:
                await self.stream.send_eof()
            except (
                trio.BrokenResourceError,
                trio.BusyResourceError,
                trio.ClosedResourceError,
                AttributeError,
            ):
                pass
            if not self.read_done.is_set():
                with trio.move_on_after(LINGER_SECONDS):
                    await self.read_done.wait()
            await self.stream.aclose()

    async def time_out(self) -> None:
        """408 for a request that did not arrive in time (unless an answer has started),
        then close."""
        with trio.CancelScope(shield=True):
            self.closing = True
            h11_connection = _h11(self)
            if h11_connection is not None and h11_connection.our_state in (
                h11.IDLE,
                h11.SEND_RESPONSE,
            ):
                exc = PerkamoError(
                    Code.REQUEST_TIMEOUT,
                    f"The request did not arrive within {self.limits.read_timeout:g} s.",
                )
                async with self.send_lock:
                    with trio.move_on_after(1):
                        try:
                            await self.stream.send_all(_raw_response(408, exc))
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
            await self._close()
            await self.protocol.handle(Closed())  # the app, if any, sees the disconnect


def _h11(connection: ConnectionServer) -> h11.Connection | None:
    protocol = getattr(getattr(connection, "protocol", None), "protocol", None)
    if isinstance(protocol, hypercorn_h11.H11Protocol) and isinstance(
        protocol.connection, h11.Connection
    ):
        return protocol.connection
    return None


def _buffered(connection: ConnectionServer) -> bool:
    """Whether part of a next request already arrived (pipelined)."""
    h11_connection = _h11(connection)
    return h11_connection is not None and bool(h11_connection.trailing_data[0])


def _incomplete(connection: ConnectionServer) -> bool:
    """A request has started to arrive and its headers or body are still missing."""
    h11_connection = _h11(connection)
    return h11_connection is not None and h11_connection.their_state in (h11.IDLE, h11.SEND_BODY)


async def sweep(now: float) -> None:
    """One pass: time out late requests, close connections idle for the read timeout."""
    limit = ConnectionServer.limits.read_timeout
    late: list[ConnectionServer] = []
    stale: list[ConnectionServer] = []
    for connection in ConnectionServer.live:
        if connection.closing:
            continue
        started = connection.receiving_since
        if started is not None and now - started > limit and _incomplete(connection):
            late.append(connection)
        elif started is None and connection.idle and now - connection.idle_since > limit:
            stale.append(connection)
    if not late and not stale:
        return
    async with trio.open_nursery() as nursery:
        for connection in late:
            nursery.start_soon(connection.time_out)
        for connection in stale:
            nursery.start_soon(_close_quietly, connection)


async def _close_quietly(connection: ConnectionServer) -> None:
    with trio.CancelScope(shield=True):
        connection.closing = True
        await connection.stream.aclose()


async def watch(limits: Limits) -> None:
    """The sweeper: runs until cancelled."""
    ConnectionServer.limits = limits
    while True:
        await trio.sleep(SWEEP_SECONDS)
        await sweep(trio.current_time())


def describe_live() -> list[str]:
    """The state of every open connection (logged when a shutdown's grace period ends)."""
    described = []
    for c in ConnectionServer.live:
        h11_connection = _h11(c)
        states = (
            f"{h11_connection.our_state.__name__}/{h11_connection.their_state.__name__}"
            if h11_connection is not None
            else "not-h11"
        )
        stream = getattr(getattr(c.protocol, "protocol", None), "stream", None)
        described.append(
            f"idle={c.idle} receiving={c.receiving_since is not None} closing={c.closing}"
            f" read_done={c.read_done.is_set()} stream={type(stream).__name__} {states}"
        )
    return described


def idle_connections() -> Iterable[ConnectionServer]:
    return [c for c in ConnectionServer.live if c.idle and c.receiving_since is None]


async def close_idle_until_done(poll: float = 0.05) -> None:
    """During a shutdown: close idle connections as they become idle, until none is left.
    Busy connections close themselves after their answer (the edge says ``connection:
    close``); the caller bounds this with the grace period."""
    while ConnectionServer.live:
        for connection in idle_connections():
            if not connection.closing:
                await _close_quietly(connection)
        await trio.sleep(poll)


RECYCLE_SECONDS = 1.0
_original_recycle = hypercorn_h11.H11Protocol._maybe_recycle


async def _recycle_shielded(self: hypercorn_h11.H11Protocol) -> None:
    """hypercorn's end of a request, protected from the app task's cancellation (see 1)."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + RECYCLE_SECONDS
        await _original_recycle(self)
    if scope.cancelled_caught:
        with trio.CancelScope(shield=True):
            await self.send(Closed())


async def _json_protocol_error(self: hypercorn_h11.H11Protocol, status_code: int) -> None:
    """h11 refused the request (malformed, duplicate or negative content-length, headers
    over the limit): the answer hypercorn writes, with the JSON error body."""
    exc: PerkamoError
    if status_code == 431:
        exc = PerkamoError(
            Code.HEADERS_TOO_LARGE, "The request line and headers are larger than 16 KiB."
        )
    else:
        exc = PerkamoError(
            Code.VALIDATION_ERROR,
            "The request is not valid HTTP/1.1 (request line, a header or content-length).",
            details=[{"path": "headers", "message": "not valid HTTP/1.1"}],
        )
    body, headers = error_bytes(exc)
    await self._send_h11_event(
        h11.Response(
            status_code=status_code,
            headers=list(chain(headers, self.config.response_headers("h11"))),
        )
    )
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


async def _json_stream_error(self: hypercorn_stream.HTTPStream, status_code: int) -> None:
    """An app that ended without answering (a defect): a JSON 500, not an empty one."""
    body, headers = error_bytes(
        PerkamoError(Code.INTERNAL_ERROR, "Something went wrong on our side; retry shortly.")
    )
    await self.send(Response(stream_id=self.stream_id, headers=headers, status_code=500))
    await self.send(Body(stream_id=self.stream_id, data=body))
    await self.send(EndBody(stream_id=self.stream_id))
    self.state = hypercorn_stream.ASGIHTTPState.CLOSED


def install(limits: Limits) -> None:
    """Make hypercorn's trio server use :class:`ConnectionServer` and the JSON answers."""
    ConnectionServer.limits = limits
    setattr(hypercorn_run, "TCPServer", ConnectionServer)  # noqa: B010 (not re-exported)
    hypercorn_h11.H11Protocol._send_error_response = _json_protocol_error  # type: ignore[method-assign]
    hypercorn_h11.H11Protocol._maybe_recycle = _recycle_shielded  # type: ignore[method-assign]
    hypercorn_stream.HTTPStream._send_error_response = _json_stream_error  # type: ignore[method-assign]
