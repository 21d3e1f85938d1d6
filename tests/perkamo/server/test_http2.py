"""HTTP/2 in cleartext (prior knowledge and ``Upgrade: h2c``) against a real server process:
an answer sent before the request's body has fully arrived (a 401, a 413) must leave the
process serving, whatever frames the peer sends next. Found from outside: the next DATA
frame raised ``KeyError`` in hypercorn's HTTP/2 protocol and ended the process."""

from __future__ import annotations

import msgspec
import pytest
import trio
from hpack import Encoder
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.h2_client import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    H2Client,
    frame,
)
from tests.inprocess_server import serving
from tests.raw_http import parse, receive_all
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


def post(path: str, key: str | None = None, length: int | None = None) -> list[tuple[str, str]]:
    headers = [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "x")]
    headers.append(("content-type", "application/json"))
    if key is not None:
        headers.append(("x-perkamo-api-key", key))
    if length is not None:
        headers.append(("content-length", str(length)))
    return headers


HEALTH = [(":method", "GET"), (":path", "/healthz"), (":scheme", "http"), (":authority", "x")]


async def still_serving(server: ServerProcess) -> None:
    """The process is alive and answers a new HTTP/1.1 connection."""
    assert server.proc is not None and server.proc.poll() is None, server.log()[-3000:]
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            assert parse(await receive_all(stream))[0] == 200


@pytest.mark.parametrize(
    "case", ["unauthenticated", "many-small-frames", "declared-too-large", "streamed-too-large"]
)
async def test_an_early_answer_then_more_data_frames_keeps_the_process_serving(server, space, case):
    """The early answer arrives whole with its JSON body; the DATA frames the peer sends
    after it (ignoring the server's RST_STREAM, as a hostile peer would) are dropped; the
    same connection then serves a next request, and so does the process. (Many small
    frames sent at once fill the app's queue: the connection must not wait on it.)"""
    expected = (413, "payload_too_large") if "too-large" in case else (401, "missing_api_key")
    for upgrade in (False, True):
        with trio.fail_after(20):
            async with H2Client.open(server.port, upgrade=upgrade) as client:
                if upgrade:
                    assert (await client.answer(1)).status == 200
                if case == "unauthenticated":
                    stream_id = client.request(post("/v1/events"), end_stream=False)
                    await client.send_body(stream_id, b"x" * 10, end=False)
                elif case == "many-small-frames":
                    stream_id = client.request(post("/v1/events"), end_stream=False)
                    await client.flush()
                    await client.send_raw(frame(DATA, 0, stream_id, b"x") * 2000)
                elif case == "declared-too-large":
                    headers = post("/v1/events", space.key, 2 * MIB)
                    stream_id = client.request(headers, end_stream=False)
                    await client.send_body(stream_id, b"x" * 10, end=False)
                else:
                    stream_id = client.request(post("/v1/events", space.key), end_stream=False)
                    await client.flush()
                    await client.send_body(stream_id, b"x" * (MIB + 100_000), end=False)
                answer = await client.answer(stream_id)
                assert answer.status == expected[0], (upgrade, answer)
                assert msgspec.json.decode(answer.body)["error"] == expected[1]
                await client.settle(0.2)
                assert answer.reset == 0, (upgrade, answer)  # RST_STREAM(NO_ERROR) after it
                # (A body ended short of its declared content-length is a protocol error:
                # h2 closes the connection for it. That case sends no END_STREAM.)
                ends = END_STREAM if case != "declared-too-large" else 0
                for last in (False, False, True):
                    await client.send_raw(frame(DATA, ends if last else 0, stream_id, b"y" * 10))
                await client.settle(0.3)
                assert not client.closed
                next_id = client.request(HEALTH)
                await client.flush()
                assert (await client.answer(next_id)).status == 200
        await still_serving(server)
    assert "Traceback" not in server.log()


async def test_a_slow_http2_request_gets_408_and_an_idle_connection_closes(pg_url, tmp_path, space):
    """The read timeout (2 s here) bounds each stream's request, and an HTTP/2 connection
    with no open stream is idle: a body that stops arriving gets 408 on its stream while
    the connection's other streams are served; then the connection, idle, is closed, as is
    one that only ever sent its preface."""
    server = ServerProcess(pg_url, tmp_path, env={"PERKAMO_READ_TIMEOUT_SECONDS": "2"})
    await server.start()
    try:
        with trio.fail_after(15):
            async with (
                H2Client.open(server.port) as slow,
                H2Client.open(server.port) as silent,
            ):
                started = trio.current_time()
                stream_id = slow.request(post("/v1/events", space.key), end_stream=False)
                await slow.send_body(stream_id, b"{", end=False)
                other = slow.request(HEALTH)
                await slow.flush()
                assert (await slow.answer(other)).status == 200
                answer = await slow.answer(stream_id)
                timed_out = trio.current_time() - started
                assert (answer.status, answer.ended) == (408, True), answer
                assert msgspec.json.decode(answer.body)["error"] == "request_timeout"
                assert 2 <= timed_out < 4
                await silent.settle(10)
                assert silent.closed and 2 <= trio.current_time() - started < 4
                await slow.settle(10)
                assert slow.closed and 4 <= trio.current_time() - started < 7
    finally:
        server.kill()
    assert "Traceback" not in server.log()


def _headers_block(kind: str) -> bytes:
    """A header block as a fresh encoder writes it (it refers to no dynamic table entry)."""
    headers = {
        "health": HEALTH,
        "post": post("/v1/events"),
        "post-with-length": post("/v1/events", length=40),
        "bare": [(":method", "GET")],
        "connect": [(":method", "CONNECT"), (":authority", "x")],
        "extended-connect": [(":method", "CONNECT"), (":protocol", "websocket"), *HEALTH[1:]],
        "odd-method": [(":method", "G\xe9T"), *HEALTH[1:]],
        "odd-path": [*HEALTH[:1], (":path", "/h\xe9"), *HEALTH[2:]],
    }[kind]
    return bytes(Encoder().encode(headers))


_stream_ids = st.sampled_from([0, 1, 2, 3, 5, 7, 2**31 - 1])
_frames = st.one_of(
    st.builds(
        lambda sid, data, end: frame(DATA, END_STREAM if end else 0, sid, data),
        _stream_ids, st.binary(max_size=200), st.booleans(),
    ),
    st.builds(
        lambda sid, kind, flags: frame(HEADERS, flags, sid, _headers_block(kind)),
        _stream_ids, st.sampled_from(
            ["health", "post", "post-with-length", "bare", "connect", "extended-connect",
             "odd-method", "odd-path"]
        ),
        st.sampled_from([END_HEADERS, END_HEADERS | END_STREAM, 0, END_STREAM]),
    ),
    st.builds(
        lambda sid, code: frame(RST_STREAM, 0, sid, code.to_bytes(4, "big")),
        _stream_ids, st.integers(0, 15),
    ),
    st.builds(
        lambda sid, increment: frame(WINDOW_UPDATE, 0, sid, increment.to_bytes(4, "big")),
        _stream_ids, st.integers(0, 2**31 - 1),
    ),
    st.builds(
        lambda values, ack: frame(
            SETTINGS, 1 if ack else 0, 0,
            b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in values.items()),
        ),
        st.dictionaries(st.integers(1, 9), st.integers(0, 2**32 - 1), max_size=3), st.booleans(),
    ),
    st.builds(frame, st.integers(0, 255), st.integers(0, 255), _stream_ids, st.binary(max_size=20)),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames, min_size=1, max_size=12), st.booleans())
@example(  # malformed requests and upgrades on new streams: each refused, none a failure
    [
        frame(HEADERS, END_HEADERS | END_STREAM, sid, _headers_block(kind))
        for sid, kind in ((3, "odd-method"), (5, "odd-path"), (7, "connect"))
    ]
    + [frame(HEADERS, END_HEADERS, 2**31 - 1, _headers_block("extended-connect"))],
    False,
)
def test_http2_frames_after_an_early_answer_never_end_the_process(
    h2_server: ServerProcess, frames: list[bytes], upgrade: bool
) -> None:
    async def scenario() -> None:
        with trio.fail_after(10):
            async with H2Client.open(h2_server.port, upgrade=upgrade) as client:
                stream_id = client.request(post("/v1/events"), end_stream=False)
                await client.send_body(stream_id, b"x" * 10, end=False)
                assert (await client.answer(stream_id, whole=False)).status == 401
                for raw in frames:
                    await client.send_raw(raw)
                await client.settle(0.05)
            await still_serving(h2_server)
        # Not even one connection failed: hostile frames are refused, never a defect.
        assert "Traceback" not in h2_server.log()

    trio.run(scenario)


async def test_an_http2_websocket_request_is_refused_with_the_json_400(runtime, settings):
    """Extended CONNECT (RFC 8441, a WebSocket over HTTP/2) and plain CONNECT: the upgrade
    is refused on its stream, as over HTTP/1.1, and the connection goes on."""
    extended = [(":method", "CONNECT"), (":protocol", "websocket"), *HEALTH[1:]]
    plain = [(":method", "CONNECT"), (":authority", "x")]
    async with serving(runtime, settings) as port, H2Client.open(port) as client:
        with trio.fail_after(10):
            for headers in (extended, plain, HEALTH):
                stream_id = client.request(headers, end_stream=headers is HEALTH)
                await client.flush()
                answer = await client.answer(stream_id)
                if headers is HEALTH:
                    assert answer.status == 200
                else:
                    assert answer.status == 400, answer
                    body = msgspec.json.decode(answer.body)
                    assert body["error"] == "validation_error"
                    assert body["details"][0]["path"] == "headers.upgrade"


async def test_http2_header_lists_over_16_kib_close_the_connection(runtime, settings):
    """The head limit of HTTP/1.1 (16 KiB) holds for an HTTP/2 header list (name and value
    plus 32 bytes per field, RFC 9113 §6.5.2): within it a request is served; beyond it the
    connection is closed, and the server goes on."""
    async with serving(runtime, settings) as port:
        with trio.fail_after(10):
            for pad, served in ((15_000, True), (17_000, False), (60_000, False)):
                async with H2Client.open(port) as client:
                    stream_id = client.request([*HEALTH, ("x-pad", "p" * pad)])
                    await client.flush()
                    answer = await client.answer(stream_id)
                    assert (answer.status == 200) is served and client.closed is not served


@pytest.fixture(scope="module")
def h2_server(pg_url, tmp_path_factory):
    """One server process for every example of the fuzz test."""
    server = ServerProcess(pg_url, tmp_path_factory.mktemp("h2-fuzz"))
    trio.run(server.start)
    yield server
    server.kill()
