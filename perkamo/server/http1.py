"""HTTP/1.1 parsing: what h11 0.16 and hypercorn 0.18 (pinned) accept that docs/api.md (errors)
refuses, and the answers they write themselves, given the JSON error body. Installed by
``connections.install()``; each point names the test that fails without it.

1. **Headers are limited as a whole.** h11 checks ``max_incomplete_event_size`` (16 KiB)
   only while a request's head is incomplete, so a head that arrived in one read (hypercorn
   reads 64 KiB at a time) was accepted up to 64 KiB: 65,000 bytes of headers answered 200.
   The head is measured as it is parsed: over 16 KiB (request line and headers, up to and
   including the empty line) is ``431 headers_too_large``, however it arrived.
2. **Only HTTP/1.x.** h11 takes any ``HTTP/d.d``: ``HTTP/9.9`` was served as HTTP/1.1 (a 404
   for an unknown path). Another major version is ``505 http_version_not_supported`` (a
   higher minor version is served as 1.1, as RFC 9110 §2.5 says); the HTTP/2 preface
   (``PRI * HTTP/2.0``) still switches to HTTP/2.
3. **Content-Length with Transfer-Encoding** was framed as chunked and the connection kept
   open, the shape of a request-smuggling attempt (RFC 9112 §6.3): it is refused, ``400
   validation_error``, and the connection closed.
4. **The JSON body** on every answer h11 makes hypercorn write (malformed request line or
   headers, duplicate or negative ``content-length``, a transfer coding other than chunked
   → ``501 not_supported``, and 1–3 above): hypercorn wrote them empty.
   (1–4: ``tests/perkamo/test_protocol_edges.py::test_protocol_edges_answer_as_documented``,
   ``tests/perkamo/test_connections.py::test_protocol_errors_have_the_json_error_body``)
5. **Ending a request inside the request's task.** hypercorn finishes a request — tells the
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
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import h11
import trio
from hypercorn.events import Closed
from hypercorn.protocol import h11 as hypercorn_h11

from perkamo.errors import Code, PerkamoError
from perkamo.server.answers import error_bytes

HEAD_LIMIT = 16 * 1024
RECYCLE_SECONDS = 1.0
_H2_PREFACE = (b"PRI", b"*", b"2.0")


class StrictConnection(h11.Connection):
    """h11's connection, refusing what it would accept against docs/api.md (errors) (1–3 above)."""

    refusal: PerkamoError | None = None  # why the last request was refused, for its answer

    def _extract_next_receive_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        before = len(self._receive_buffer)
        event = super()._extract_next_receive_event()
        if isinstance(event, h11.Request):
            refusal = refused(event, before - len(self._receive_buffer))
            if refusal is not None:
                self.refusal = refusal
                # Raised here, h11 marks the peer's state ERROR, as for its own refusals.
                raise h11.RemoteProtocolError(refusal.message, error_status_hint=refusal.status)
        return event


def refused(request: h11.Request, head_size: int) -> PerkamoError | None:
    """Why a parsed request is refused before the app sees it, if it is."""
    if head_size > HEAD_LIMIT:
        return PerkamoError(
            Code.HEADERS_TOO_LARGE, "The request line and headers are larger than 16 KiB."
        )
    version = request.http_version
    if not version.startswith(b"1.") and (request.method, request.target, version) != _H2_PREFACE:
        return PerkamoError(
            Code.HTTP_VERSION_NOT_SUPPORTED,
            f"HTTP/{version.decode('ascii', 'replace')} is not supported; use HTTP/1.1.",
        )
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        return PerkamoError(
            Code.VALIDATION_ERROR,
            "A request may not carry both content-length and transfer-encoding.",
            details=[{"path": "headers", "message": "content-length with transfer-encoding"}],
        )
    return None


def _refusal(protocol: hypercorn_h11.H11Protocol, status_code: int) -> PerkamoError:
    refusal = getattr(protocol.connection, "refusal", None)
    if isinstance(refusal, PerkamoError) and refusal.status == status_code:
        return refusal
    if status_code == 431:
        return PerkamoError(
            Code.HEADERS_TOO_LARGE, "The request line and headers are larger than 16 KiB."
        )
    if status_code == 501:
        return PerkamoError(Code.NOT_SUPPORTED, "Only the chunked transfer coding is supported.")
    return PerkamoError(
        Code.VALIDATION_ERROR,
        "The request is not valid HTTP/1.1 (request line, a header or content-length).",
        details=[{"path": "headers", "message": "not valid HTTP/1.1"}],
    )


async def _json_protocol_error(self: hypercorn_h11.H11Protocol, status_code: int) -> None:
    """The answer to a request h11 (or :class:`StrictConnection`) refused, with the JSON
    error body; its status is the error code's."""
    exc = _refusal(self, status_code)
    body, headers = error_bytes(exc)
    await self._send_h11_event(
        h11.Response(
            status_code=exc.status,
            headers=list(chain(headers, self.config.response_headers("h11"))),
        )
    )
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


_original_init = hypercorn_h11.H11Protocol.__init__
_original_recycle = hypercorn_h11.H11Protocol._maybe_recycle


def _strict_init(self: hypercorn_h11.H11Protocol, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self.connection = StrictConnection(
        h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size
    )


async def _recycle_shielded(self: hypercorn_h11.H11Protocol) -> None:
    """hypercorn's end of a request, protected from the app task's cancellation (see 5)."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + RECYCLE_SECONDS
        await _original_recycle(self)
    if scope.cancelled_caught:
        with trio.CancelScope(shield=True):
            await self.send(Closed())


def install() -> None:
    hypercorn_h11.H11Protocol.__init__ = _strict_init  # type: ignore[method-assign]
    hypercorn_h11.H11Protocol._send_error_response = _json_protocol_error  # type: ignore[method-assign]
    hypercorn_h11.H11Protocol._maybe_recycle = _recycle_shielded  # type: ignore[method-assign]
