"""hypercorn 0.18's per-request streams (pinned), whatever the protocol (HTTP/1.1 or HTTP/2):
what they leave undone, mended here and installed by ``connections.install()``. Each point
names the test that fails without it.

1. **A finished app's queue never blocks the connection.** hypercorn hands a request's body
   to the app through a queue of ``max_app_queue_size`` (10) messages. When the app has
   returned without reading it all (it failed: a defect) and its 500 waits on the peer's
   flow control, nothing reads that queue any more: the eleventh DATA frame still arriving
   blocked the connection's reader for ever — and with it the WINDOW_UPDATE behind it
   that would have let the answer out. The connection was wedged, and its slot
   never freed. The queue is closed as the app returns; what is put into it afterwards is
   dropped. (``tests/perkamo/test_connection_failures.py::
   test_an_app_failing_while_a_body_streams_in_does_not_wedge_the_connection``)
2. **No WebSocket.** The API serves none, but hypercorn starts a WebSocket stream for
   ``Upgrade: websocket`` (HTTP/1.1) and for ``CONNECT`` (HTTP/2), and the app failed it:
   a 500 or a 400 with an empty body. Either is answered ``400 validation_error`` with the
   JSON body and the connection (HTTP/2: the stream) closed — 400 rather than 404, because
   the path may well exist: it is the upgrade that is refused, and ``details`` says so.
   Other ``Upgrade`` values are ignored, as RFC 9110 §7.8 allows (``h2c`` switches to
   HTTP/2). (``tests/perkamo/test_protocol_edges.py::test_protocol_edges_answer_as_documented``)
3. **An app that ended without answering** (a defect) gets a JSON 500, not an empty one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.protocol import h2 as hypercorn_h2
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol import http_stream as hypercorn_stream
from hypercorn.protocol.events import Body, EndBody, Event, Request, Response, StreamClosed
from hypercorn.trio import task_group as hypercorn_task_group
from hypercorn.typing import (
    AppWrapper,
    ASGIReceiveEvent,
    ASGISendEvent,
    Scope,
    TaskGroup,
    WorkerContext,
)

from perkamo.errors import Code, PerkamoError
from perkamo.server.answers import error_bytes

Send = Callable[[Event], Awaitable[None]]


async def _spawn_app(
    self: hypercorn_task_group.TaskGroup,
    app: AppWrapper,
    config: Config,
    scope: Scope,
    send: Callable[[ASGISendEvent | None], Awaitable[None]],
) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
    """hypercorn's ``TaskGroup.spawn_app`` with a queue closed as the app returns (see 1)."""
    sending, receiving = trio.open_memory_channel[ASGIReceiveEvent](config.max_app_queue_size)

    async def send_then_close(message: ASGISendEvent | None) -> None:
        if message is None:  # the app has returned: release whoever waits on its queue
            receiving.close()
        await send(message)

    async def put(message: ASGIReceiveEvent) -> None:
        try:
            await sending.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # nothing reads it any more

    assert self._nursery is not None
    self._nursery.start_soon(
        hypercorn_task_group._handle,
        app,
        config,
        scope,
        receiving.receive,
        send_then_close,
        trio.to_thread.run_sync,
        trio.from_thread.run,
    )
    return put


async def answer(send: Send, stream_id: int, exc: PerkamoError) -> None:
    """A whole JSON error answer on one stream."""
    body, headers = error_bytes(exc)
    await send(Response(stream_id=stream_id, headers=headers, status_code=exc.status))
    await send(Body(stream_id=stream_id, data=body))
    await send(EndBody(stream_id=stream_id))


class RefusedUpgrade:
    """Stands in for hypercorn's ``WSStream`` (see 2): the upgrade request's answer, sent
    from a task of its own so that a peer that does not read cannot hold the reader."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        task_group: TaskGroup,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        send: Send,
        stream_id: int,
    ) -> None:
        self.task_group = task_group
        self.send = send
        self.stream_id = stream_id
        self.closed = False

    @property
    def idle(self) -> bool:
        return self.closed

    async def handle(self, event: Event) -> None:
        if isinstance(event, Request) and not self.closed:
            self.closed = True
            self.task_group.spawn(self._refuse)

    async def _refuse(self) -> None:
        refusal = PerkamoError(
            Code.VALIDATION_ERROR,
            "WebSocket is not offered here; send the request without upgrading it.",
            details=[{"path": "headers.upgrade", "message": "websocket is not offered"}],
        )
        await answer(self.send, self.stream_id, refusal)
        await self.send(StreamClosed(stream_id=self.stream_id))


async def _json_stream_error(self: hypercorn_stream.HTTPStream, status_code: int) -> None:
    """An app that ended without answering (see 3)."""
    defect = PerkamoError(Code.INTERNAL_ERROR, "Something went wrong on our side; retry shortly.")
    await answer(self.send, self.stream_id, defect)
    self.state = hypercorn_stream.ASGIHTTPState.CLOSED


def install() -> None:
    hypercorn_task_group.TaskGroup.spawn_app = _spawn_app  # type: ignore[method-assign]
    setattr(hypercorn_h11, "WSStream", RefusedUpgrade)  # noqa: B010 (not re-exported)
    setattr(hypercorn_h2, "WSStream", RefusedUpgrade)  # noqa: B010
    hypercorn_stream.HTTPStream._send_error_response = _json_stream_error  # type: ignore[method-assign]
