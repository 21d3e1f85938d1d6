"""Client connections: what hypercorn 0.18's trio server (pinned) leaves undone, in one place.

:class:`ConnectionServer` replaces hypercorn's ``TCPServer`` (``install()``, which also
installs the mends of ``http1.py``, ``http2.py`` and ``streams.py``). Each point below was a
defect found from outside; the test named beside it fails without the mend.

1. **A failure ends one connection, never the process.** hypercorn runs every connection as
   a task of the server's nursery: an exception escaping any of a connection's tasks (its
   reader, HTTP/2's sender, the app's task group) ended the whole process — one HTTP/2
   request did (``http2.py``, 1). Whatever escapes a connection now closes that connection
   and is logged on one line (with its traceback); the server keeps serving. The sweeper's
   work on a connection is guarded the same way.
   (``tests/perkamo/test_connection_failures.py::
   test_a_failure_in_a_connection_closes_it_and_the_server_keeps_serving``)
2. **Lingering close.** Closing a socket whose client is still sending makes the kernel
   reset the connection, and the client may lose the answer it was sent (a 401 before the
   body, a 413). The close sends FIN first and reads (discarding) for up to
   ``LINGER_SECONDS`` before it lets go.
3. **One timeout, the read timeout (30 s), for arrival and idleness.** hypercorn's read
   timeout restarts on every byte, so a body trickled in at one byte a second was never
   dropped; its idle timer (``keep_alive_timeout``, 5 s) starts with the connection and is
   stopped only once a request's headers are complete, so headers trickled in were dropped
   after 5 s without an answer, and a new connection was closed after 5 s idle, while a
   kept-alive one waited 30 s. Neither runs here. One sweeper task checks every connection
   twice a second: a request whose headers and body have not fully arrived within the read
   timeout gets ``408 request_timeout`` and is closed (an HTTP/2 stream: ``http2.py``, 3); a
   connection idle that long — new, or between requests — is closed. The timeout is
   ``PERKAMO_READ_TIMEOUT_SECONDS``: one number for both, as the README documents. A long
   answer (a live stream, docs/api.md "The browser half") is no request arriving: once its request
   has arrived whole the sweeper stops looking at it (thousands of open streams made its passes 40 %
   of the server's CPU). (``test_connections.py::test_slow_clients_get_408_and_are_closed``,
   ``test_protocol_edges.py::test_protocol_edges_answer_as_documented``) 4. **A connection limit.**
   Beyond ``max_connections`` a new connection is answered ``503 overloaded`` and closed at once,
   long before file descriptors run out.
   (``test_connections.py::test_connections_beyond_the_limit_are_refused_early``) 5. **Shutdown.**
   :func:`close_idle_until_done` closes idle connections until none is left (busy ones close after
   their response, through ``http1.py`` 5), so a shutdown waits for work, not for the grace period.
   (``tests/perkamo/test_process.py::
   test_sigterm_with_keep_alive_clients_exits_without_waiting_out_the_grace_period``)"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import trio
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer

from perkamo.errors import Code, PerkamoError
from perkamo.server import http1, http2, streams
from perkamo.server.answers import raw_response

log = logging.getLogger(__name__)

LINGER_SECONDS = 2.0
REFUSAL_LINGER_SECONDS = 0.5
SWEEP_SECONDS = 0.5


@dataclass(slots=True)
class Limits:
    read_timeout: float = 30.0  # headers and body of one request; also the idle keep-alive
    max_connections: int = 4096


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
        self.peer = _peer(self.stream)  # for the log line of a failure (see 1)

    async def run(self) -> None:
        try:
            if len(self.live) >= self.limits.max_connections:
                await self._refuse()
                return
            self.live.add(self)
            try:
                await super().run()  # closes the connection as it ends, however it ends
            finally:
                self.live.discard(self)
        except* Exception as failure:  # see 1 (a cancellation still propagates)
            failed(self, failure)

    async def _refuse(self) -> None:
        exc = PerkamoError(
            Code.OVERLOADED, "The server has too many open connections; retry shortly."
        )
        with trio.CancelScope(shield=True):
            # Answer, then read what the client sent (briefly): closing with unread data
            # would reset the connection and the client could lose the answer.
            with trio.move_on_after(REFUSAL_LINGER_SECONDS):
                try:
                    await self.stream.send_all(raw_response(exc))
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

    async def _idle_timeout(self) -> None:
        """Not hypercorn's idle timer (see 3): the sweeper closes idle connections."""

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Closed):
            with trio.CancelScope(shield=True):
                await self._close()
                await self.protocol.handle(Closed())
        elif isinstance(event, Updated) and event.idle:
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

    def _timeout_error(self) -> PerkamoError:
        return PerkamoError(
            Code.REQUEST_TIMEOUT,
            f"The request did not arrive within {self.limits.read_timeout:g} s.",
        )

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
                async with self.send_lock:
                    with trio.move_on_after(1):
                        try:
                            await self.stream.send_all(raw_response(self._timeout_error()))
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
            await self._close()
            await self.protocol.handle(Closed())  # the app, if any, sees the disconnect

    async def time_out_streams(self, stream_ids: list[int]) -> None:
        """HTTP/2: 408 and reset for the streams that did not arrive in time."""
        protocol = _h2(self)
        if protocol is not None:
            with trio.CancelScope(shield=True):
                await protocol.time_out(stream_ids, self._timeout_error())


def failed(connection: ConnectionServer, failure: BaseException) -> None:
    """One log line for a connection that failed (see 1); it is closed already or next."""
    log.error(
        "a connection failed and was closed", exc_info=failure, extra={"client": connection.peer}
    )


def _peer(stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except (AttributeError, OSError, ValueError):
        return "unknown"
    return f"{host}:{port}"


def _h11(connection: ConnectionServer) -> h11.Connection | None:
    protocol = getattr(getattr(connection, "protocol", None), "protocol", None)
    if isinstance(protocol, hypercorn_h11.H11Protocol) and isinstance(
        protocol.connection, h11.Connection
    ):
        return protocol.connection
    return None


def _h2(connection: ConnectionServer) -> http2.H2Protocol | None:
    protocol = getattr(getattr(connection, "protocol", None), "protocol", None)
    return protocol if isinstance(protocol, http2.H2Protocol) else None


def _buffered(connection: ConnectionServer) -> bool:
    """Whether part of a next request already arrived (pipelined)."""
    h11_connection = _h11(connection)
    return h11_connection is not None and bool(h11_connection.trailing_data[0])


def _incomplete(connection: ConnectionServer) -> bool:
    """A request has started to arrive and its headers or body are still missing."""
    h11_connection = _h11(connection)
    return h11_connection is not None and h11_connection.their_state in (h11.IDLE, h11.SEND_BODY)


def _is_idle(connection: ConnectionServer) -> bool:
    """No request open on the connection (HTTP/2: no stream), none arriving."""
    protocol = _h2(connection)
    if protocol is not None:
        return protocol.idle
    return connection.idle and connection.receiving_since is None


async def sweep(now: float) -> None:
    """One pass: time out late requests, close connections idle for the read timeout."""
    limit = ConnectionServer.limits.read_timeout
    work: list[Callable[[], Awaitable[None]]] = []
    for connection in ConnectionServer.live:
        if connection.closing:
            continue
        protocol = _h2(connection)
        if protocol is not None and (late := protocol.late(now, limit)):
            work.append(functools.partial(connection.time_out_streams, late))
            continue
        started = connection.receiving_since
        if protocol is None and started is not None and now - started > limit:
            if _incomplete(connection):
                work.append(connection.time_out)
            elif not connection.idle:
                # Arrived whole, answer still going (a live stream): nothing to time out
                # until it is idle again — not looked at again on every pass.
                connection.receiving_since = None
        elif _is_idle(connection) and now - connection.idle_since > limit:
            work.append(functools.partial(_close_quietly, connection))
    if not work:
        return
    async with trio.open_nursery() as nursery:
        for job in work:
            nursery.start_soon(_guarded, job)


async def _guarded(job: Callable[[], Awaitable[None]]) -> None:
    """The sweeper's work on one connection: a failure is that connection's (see 1)."""
    try:
        await job()
    except* Exception as failure:
        log.error("closing a connection failed", exc_info=failure)


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
    return [c for c in ConnectionServer.live if _is_idle(c)]


async def close_idle_until_done(poll: float = 0.05) -> None:
    """During a shutdown: close idle connections as they become idle, until none is left.
    Busy connections close themselves after their answer (the edge says ``connection:
    close``); the caller bounds this with the grace period."""
    while ConnectionServer.live:
        for connection in idle_connections():
            if not connection.closing:
                await _close_quietly(connection)
        await trio.sleep(poll)


def install(limits: Limits) -> None:
    """Make hypercorn's trio server use :class:`ConnectionServer` and the mends of
    ``http1.py``, ``http2.py`` and ``streams.py``."""
    ConnectionServer.limits = limits
    setattr(hypercorn_run, "TCPServer", ConnectionServer)  # noqa: B010 (not re-exported)
    http1.install()
    http2.install()
    streams.install()
