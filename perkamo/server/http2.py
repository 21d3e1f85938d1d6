"""HTTP/2 in cleartext (prior knowledge, or ``Upgrade: h2c``): what hypercorn 0.18's
``H2Protocol`` (pinned) leaves undone. :class:`H2Protocol` replaces it (``install()``); each
point names the test that fails without it.

1. **Data for a stream already answered.** A server may answer before the request's body
   has arrived (a 401: the key is checked from the headers; a 413). hypercorn forgets the
   stream once the app has answered, and the next DATA frame for it raised ``KeyError`` in
   the connection's reader — which ended the whole process: one unauthenticated request
   (``POST /v1/events``, no key, a 40-byte body in 4 DATA frames) took a server down. Such
   frames are dropped, and their bytes given back to the connection's flow-control window
   (else a few dropped bodies would stall every stream on the connection).
2. **Ending the body of an answered request.** After a complete answer to a request whose
   body is still arriving, the stream is reset with ``NO_ERROR`` (RFC 9113 §8.1), so the
   peer stops sending a body nobody reads, and the connection stays usable.
   (1, 2: ``tests/perkamo/test_http2.py::
   test_an_early_answer_then_more_data_frames_keeps_the_process_serving`` and
   ``test_http2_frames_after_an_early_answer_never_end_the_process``)
3. **A deadline per request.** The connection sweeper (``connections.py``) bounds an HTTP/1.1
   request's arrival; here each stream's request must arrive whole (headers to END_STREAM)
   within the read timeout too, else it is answered ``408 request_timeout`` (when no answer
   has started) and reset — the other streams of the connection go on. A connection with no
   open stream is idle, and closed like an idle HTTP/1.1 one.
   (``test_http2.py::test_a_slow_http2_request_gets_408_and_an_idle_connection_closes``)
4. **Malformed requests.** A ``:method`` that is not a token, or a ``:path`` that is not
   visible ASCII, raised ``UnicodeDecodeError`` in hypercorn (h11 refuses both in HTTP/1.1):
   the stream is reset with ``PROTOCOL_ERROR`` (RFC 9113 §8.1.1). CONNECT without ``:path``
   (plain CONNECT, RFC 9113 §8.5) failed on an unbound variable: it gets the answer of every
   upgrade (``streams.py``, 2). (``test_http2.py::
   test_http2_frames_after_an_early_answer_never_end_the_process``)
5. **Headers are limited** to the 16 KiB of HTTP/1.1 (``h2_max_header_list_size``, counted
   as RFC 9113 §6.5.2 says): 60 KB of headers were served. A larger header list closes the
   connection (h2 cannot decode past it, so no 431 can be sent on the stream).
   (``test_http2.py::test_http2_header_lists_over_16_kib_close_the_connection``)
"""

from __future__ import annotations

import re
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import trio
from h2.stream import StreamState
from hypercorn import protocol as hypercorn_protocol
from hypercorn.events import Updated
from hypercorn.protocol import h2 as hypercorn_h2
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream

from perkamo.errors import PerkamoError
from perkamo.server.streams import answer

ANSWER_SECONDS = 1.0  # a 408 that the peer's flow control holds back longer is not sent
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2
_VISIBLE = re.compile(rb"[\x21-\x7e]+")


class H2Protocol(hypercorn_h2.H2Protocol):
    """hypercorn's HTTP/2 connection, with the mends of the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # hypercorn advertises h2_max_header_list_size but h2 only enforces a limit it is
        # told of by a settings change: it kept its default, 64 KiB (see 5).
        self.connection.decoder.max_header_list_size = self.config.h2_max_header_list_size
        # Stream id → when its request began, until the request has fully arrived (see 3).
        self.arriving: dict[int, float] = {}

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        # One event at a time: handing one over can let the app answer, and the stream go,
        # before the next (see 1).
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                self.connection.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
                await self._flush()
                continue
            if isinstance(event, h2.events.RequestReceived):
                self.arriving[event.stream_id] = trio.current_time()
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                self.arriving.pop(event.stream_id, None)
            await super()._handle_events([event])

    async def _create_stream(self, request: h2.events.RequestReceived) -> None:
        pseudo = {name: value for name, value in request.headers if name.startswith(b":")}
        method, path = pseudo.get(b":method", b""), pseudo.get(b":path")
        if method == b"CONNECT" and path is None:
            path = pseudo[b":path"] = b"/"  # plain CONNECT (see 4)
            request.headers = [*request.headers, (b":path", path)]
        if not _TOKEN.fullmatch(method) or path is None or not _VISIBLE.fullmatch(path):
            self.arriving.pop(request.stream_id, None)
            self._reset(request.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        await super()._create_stream(request)

    async def _send_data(self, stream_id: int) -> None:
        await super()._send_data(stream_id)
        if stream_id not in self.stream_buffers:  # the answer has ended (see 2)
            stream = self.connection.streams.get(stream_id)
            if stream is not None and stream.state_machine.state is StreamState.HALF_CLOSED_LOCAL:
                self._reset(stream_id, h2.errors.ErrorCodes.NO_ERROR)
                await self._flush()

    async def _close_stream(self, stream_id: int) -> None:
        self.arriving.pop(stream_id, None)
        await super()._close_stream(stream_id)

    def _reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        try:
            self.connection.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass  # closed meanwhile

    def late(self, now: float, limit: float) -> list[int]:
        """The streams whose request has not fully arrived within ``limit`` seconds."""
        return [stream_id for stream_id, since in self.arriving.items() if now - since > limit]

    async def time_out(self, stream_ids: list[int], exc: PerkamoError) -> None:
        """408 (unless an answer has started) and reset, for each late stream (see 3)."""
        for stream_id in stream_ids:
            self.arriving.pop(stream_id, None)
            stream = self.streams.get(stream_id)
            answered = False
            if isinstance(stream, HTTPStream) and stream.state is ASGIHTTPState.REQUEST:
                with trio.move_on_after(ANSWER_SECONDS) as sending:
                    await answer(self.stream_send, stream_id, exc)
                answered = not sending.cancelled_caught  # then reset after it (see 2)
            if not answered:
                self._reset(stream_id, h2.errors.ErrorCodes.CANCEL)
                await self._flush()
            await self._close_stream(stream_id)
        await self.send(Updated(idle=self.idle))


def install() -> None:
    setattr(hypercorn_protocol, "H2Protocol", H2Protocol)  # noqa: B010 (not re-exported)
