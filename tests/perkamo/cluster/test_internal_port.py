"""The internal port: nothing answers without the cluster secret; with it, a forwarded
message is applied by the member and answered over the same connection; messages and
answers cross the wire exactly (decimals, times, errors)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import trio

from perkamo.cluster import protocol
from perkamo.cluster.protocol import (
    Challenge,
    FrameReader,
    Hello,
    Request,
    Requests,
    Response,
    Responses,
    Welcome,
)
from perkamo.errors import Code, PerkamoError
from perkamo.profiles.commands import Ingest, ProfileView, Read, Written
from tests.spaces import committed


def _address(runtime) -> tuple[str, int]:
    host, _, port = runtime.cluster.membership.address.rpartition(":")
    return host, int(port)


def _secret(pg_url: str) -> str:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT secret FROM cluster_secret").fetchone()
    assert row is not None
    return str(row[0])


def _ingest(tx: str) -> Ingest:
    return Ingest(
        transaction_id=tx, event="app.opened", context={"amount": Decimal("12.50")},
        received_at=datetime.now(UTC),
    )  # fmt: skip


async def _closed_without_answer(stream: trio.SocketStream) -> None:
    """The member closes the connection and sends nothing more."""
    async with stream:
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                raise AssertionError(f"the internal port answered: {chunk!r}")


async def test_a_peer_without_the_secret_gets_no_answer(runtime, space, pg_url):
    request = Request(1, space.space.id, "u", _ingest("x1"), 3.0)
    # A wrong proof: the connection closes; no Welcome, and the request is never applied.
    stream = await trio.open_tcp_stream(*_address(runtime))
    reader = FrameReader(stream)
    challenge = await reader.next()
    assert isinstance(challenge, Challenge)
    await protocol.send(stream, Hello("intruder", protocol.proof("guessed", challenge.nonce)))
    await protocol.send(stream, request)
    await _closed_without_answer(stream)
    # No handshake at all: a request straight away is not answered either.
    stream = await trio.open_tcp_stream(*_address(runtime))
    await FrameReader(stream).next()  # the challenge
    await protocol.send(stream, request)
    await _closed_without_answer(stream)
    # Garbage instead of a frame.
    stream = await trio.open_tcp_stream(*_address(runtime))
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await FrameReader(stream).next()  # the challenge, sent before anything is read
    await _closed_without_answer(stream)
    assert committed(pg_url, space.space.id) == {}
    assert runtime.cluster.stats.refused_handshakes >= 3


async def test_a_member_with_the_secret_is_answered(runtime, space, pg_url):
    stream = await trio.open_tcp_stream(*_address(runtime))
    reader = FrameReader(stream)
    challenge = await reader.next()
    assert isinstance(challenge, Challenge)
    await protocol.send(stream, Hello("peer", protocol.proof(_secret(pg_url), challenge.nonce)))
    assert isinstance(await reader.next(), Welcome)
    await protocol.send(stream, Request(7, space.space.id, "u", _ingest("x2"), 3.0))
    read = Read(received_at=datetime.now(UTC))
    await protocol.send(stream, Request(8, space.space.id, "u", read, 3.0))
    first, second = sorted(await _responses(reader, 2), key=lambda r: r.id)
    assert (first.id, second.id) == (7, 8)
    applied = protocol.decode_answer(first, Written)
    assert isinstance(applied, Written) and b'"applied":true' in bytes(applied.body)
    view = protocol.decode_answer(second, Read.answer_type)
    # Applied in the order sent: the read sees the event sent before it.
    assert isinstance(view, ProfileView) and view.recent_events[0].transaction_id == "x2"
    assert committed(pg_url, space.space.id) == {"x2": 1}
    # Many requests in one frame: each admitted in order and answered by its id; the
    # answers come back many to a frame.
    batch = [Request(20 + n, space.space.id, f"b{n % 3}", _ingest(f"y{n}"), 3.0) for n in range(9)]
    await protocol.send(stream, Requests([*batch, Request(40, space.space.id, "b0", read, 3.0)]))
    answers = {r.id: r for r in await _responses(reader, 10)}
    assert sorted(answers) == [*range(20, 29), 40]
    view = protocol.decode_answer(answers[40], Read.answer_type)
    assert isinstance(view, ProfileView)
    assert [e.transaction_id for e in view.recent_events][:3] == ["y6", "y3", "y0"]
    assert committed(pg_url, space.space.id) == {"x2": 1, **{f"y{n}": 1 for n in range(9)}}
    await stream.aclose()


async def _responses(reader: FrameReader, count: int) -> list[Response]:
    """The next ``count`` answers, however many frames they come in."""
    got: list[Response] = []
    with trio.fail_after(10):
        while len(got) < count:
            frame = await reader.next()
            assert isinstance(frame, Responses | Response), frame
            got += frame.items if isinstance(frame, Responses) else [frame]
    return got


def test_messages_and_answers_cross_the_wire_exactly():
    message = _ingest("t")
    frame = protocol.encode_frame(Request(1, 2, "u", message, 1.0))
    decoded = protocol._frames.decode(frame[4:])
    assert isinstance(decoded, Request) and decoded.message == message
    refusal = PerkamoError(Code.USAGE_LIMIT_EXCEEDED, "full", retry_after=9)
    back = protocol.decode_answer(protocol.encode_answer(refusal), Written)
    assert isinstance(back, PerkamoError) and back.code is Code.USAGE_LIMIT_EXCEEDED
    assert str(back) == "full" and back.headers == {"retry-after": "9"}
    assert protocol.decode_answer(protocol.encode_answer(None), Read.answer_type) is None
