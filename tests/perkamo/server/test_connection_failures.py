"""No input from a peer can end a process: whatever fails inside a connection's handling —
HTTP/1.1 or HTTP/2, its reading or its sending task — closes that connection and is logged
on one line; the server keeps serving. The failure is injected into hypercorn's own protocol
code, in-process, so that anything escaping the connection escapes this test."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import trio
from h2.settings import SettingCodes
from hypercorn import protocol as hypercorn_protocol
from quart_trio.asgi import TrioASGIHTTPConnection

from tests.h2_client import DATA, H2Client, frame
from tests.inprocess_server import serving
from tests.raw_http import parse, receive_all

HEALTH = [(":method", "GET"), (":path", "/healthz"), (":scheme", "http"), (":authority", "x")]


class InjectedFailure(Exception):
    pass


def inject(monkeypatch: pytest.MonkeyPatch, cls: type, method: str) -> Callable[[], None]:
    """Make ``cls.method`` raise once, the next time it runs after the returned ``arm()``."""
    original = getattr(cls, method)
    armed = False

    async def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal armed
        if armed:
            armed = False
            raise InjectedFailure(f"injected into {cls.__name__}.{method}")
        return await original(self, *args, **kwargs)

    def arm() -> None:
        nonlocal armed
        armed = True

    monkeypatch.setattr(cls, method, failing)
    return arm


async def http1_health(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        return await receive_all(stream)


async def h2_health(port: int) -> int | None:
    """The status of a whole answer (None: the connection closed before it ended)."""
    async with H2Client.open(port) as client:
        stream_id = client.request(HEALTH)
        await client.flush()
        answer = await client.answer(stream_id)
        return answer.status if answer.ended else None


@pytest.mark.parametrize(
    ("protocol", "method"),
    [("H11Protocol", "handle"), ("H2Protocol", "handle"), ("H2Protocol", "_send_data")],
    ids=["http1-reading", "http2-reading", "http2-sending"],
)
async def test_a_failure_in_a_connection_closes_it_and_the_server_keeps_serving(
    runtime, settings, monkeypatch, caplog, protocol, method
):
    arm = inject(monkeypatch, getattr(hypercorn_protocol, protocol), method)
    caplog.set_level(logging.ERROR, logger="perkamo.server.connections")
    async with serving(runtime, settings) as port:
        with trio.fail_after(10):
            for attempt in range(3):  # the failing connection, then two that work
                if attempt == 0:
                    arm()
                if protocol == "H11Protocol":
                    raw = await http1_health(port)
                    assert (raw == b"") if attempt == 0 else (parse(raw)[0] == 200), raw
                else:
                    status = await h2_health(port)
                    assert status == (None if attempt == 0 else 200)
    failures = [r for r in caplog.records if r.name == "perkamo.server.connections"]
    assert len(failures) == 1, failures
    assert failures[0].exc_info and "InjectedFailure" in caplog.text
    assert failures[0].client.startswith("127.0.0.1:")  # which peer, on the same line


async def test_an_app_failing_while_a_body_streams_in_does_not_wedge_the_connection(
    runtime, settings, monkeypatch, caplog
):
    """The app fails (a defect, injected) while an HTTP/2 request's body is still arriving,
    and the peer's flow-control window holds back the 500: the DATA frames that keep
    coming must not leave the connection's reader waiting on the failed app's queue
    (``streams.py``, 1), or the WINDOW_UPDATE behind them is never read and the connection
    is wedged for good. Once the window opens, the 500 arrives and the next request is
    served."""
    arm = inject(monkeypatch, TrioASGIHTTPConnection, "handle_request")
    async with serving(runtime, settings) as port, H2Client.open(port) as client:
        with trio.fail_after(10):
            client.connection.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 0})
            await client.flush()
            await client.settle(0.2)  # the server acknowledges the settings
            arm()
            stream_id = client.request(post_headers(), end_stream=False)
            await client.flush()
            await client.answer(stream_id, whole=False)  # the 500's headers; its body waits
            await client.send_raw(frame(DATA, 0, stream_id, b"x") * 50)
            client.connection.increment_flow_control_window(65535, stream_id)
            await client.flush()
            answer = await client.answer(stream_id)
            assert answer.status == 500 and b"internal_error" in answer.body, answer
            next_id = client.request(HEALTH)
            client.connection.increment_flow_control_window(65535, next_id)
            await client.flush()
            assert (await client.answer(next_id)).status == 200
    assert "InjectedFailure" in caplog.text


def post_headers() -> list[tuple[str, str]]:
    return [(":method", "POST"), (":path", "/v1/events"), (":scheme", "http"), (":authority", "x")]
