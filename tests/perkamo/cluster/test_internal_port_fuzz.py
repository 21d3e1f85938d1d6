"""No input on the internal port can end a member: random bytes, random JSON and random
unicode in the handshake, and random frames after a valid one, each end at most their own
connection; the member keeps answering a real peer afterwards (issue: one ``hello`` whose
proof held non-ASCII text made ``hmac.compare_digest`` raise and the process exit)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perkamo.cluster import protocol
from perkamo.cluster.protocol import Challenge, FrameReader, Hello, Request, Responses, Welcome
from perkamo.cluster.server import InternalServer
from perkamo.profiles.commands import Read
from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from tests.conftest import forget_dead_members


def _framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# What a stranger may send where a Hello belongs: bytes, JSON, and Hello-shaped JSON with
# text from every plane where the proof and the member belong.
strangers = st.one_of(
    st.binary(max_size=200).map(lambda b: len(b).to_bytes(4, "big") + b),
    st.binary(max_size=64),
    json_values.map(lambda v: _framed(msgspec.json.encode(v))),
    st.tuples(st.text(max_size=40), st.text(min_size=1, max_size=80)).map(
        lambda t: protocol.encode_frame(Hello(*t))
    ),
    st.text(max_size=40).map(
        lambda t: _framed(msgspec.json.encode({"type": "hello", "member": 1, "proof": [t]}))
    ),
)
# What an authenticated peer's frames may hold after the handshake.
frames = st.one_of(
    json_values.map(lambda v: _framed(msgspec.json.encode(v))),
    st.tuples(
        st.integers(), st.integers(), st.text(max_size=20), st.text(max_size=20), json_values
    ).map(
        lambda t: _framed(
            msgspec.json.encode(
                {
                    "type": "request",
                    "id": t[0],
                    "space_id": t[1],
                    "user_id": t[2],
                    "message": {"kind": t[3], "received_at": "2026-01-01T00:00:00Z", "x": t[4]},
                    "seconds": 1.0,
                }
            )
        )
    ),  # fmt: skip
    st.binary(max_size=64),
)


def _secret(pg_url: str) -> str:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT secret FROM cluster_secret").fetchone()
    assert row is not None
    return str(row[0])


async def _connect(address: str) -> tuple[trio.SocketStream, FrameReader, Challenge]:
    host, _, port = address.rpartition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    reader = FrameReader(stream)
    challenge = await reader.next()
    assert isinstance(challenge, Challenge)
    return stream, reader, challenge


async def _drain(stream: trio.SocketStream) -> None:
    """Read until the member closes (or a second passes): whatever it does, it is alive."""
    with trio.move_on_after(1):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
    await stream.aclose()


async def _a_real_peer_is_answered(address: str, secret: str, space_id: int) -> None:
    with trio.fail_after(10):
        stream, reader, challenge = await _connect(address)
        await protocol.send(stream, Hello("peer", protocol.proof(secret, challenge.nonce)))
        assert isinstance(await reader.next(), Welcome)
        read = Read(received_at=datetime.now(UTC))
        await protocol.send(stream, Request(1, space_id, "nobody", read, 3.0))
        answer = await reader.next()
        assert isinstance(answer, Responses) and [r.id for r in answer.items] == [1]
        await stream.aclose()


async def _run(pg_url: str, tmp_path: Any, space_id: int, work: Any) -> None:
    forget_dead_members(pg_url)
    with trio.fail_after(120):
        async with open_runtime(Settings(data_dir=tmp_path), pg_url) as runtime:
            address = runtime.cluster.membership.address
            assert address is not None
            await work(runtime, address, _secret(pg_url))
            await _a_real_peer_is_answered(address, _secret(pg_url), space_id)


def test_a_non_ascii_proof_is_refused_not_fatal(pg_url, tmp_path, space):
    async def work(runtime: Any, address: str, secret: str) -> None:
        stream, _, _ = await _connect(address)
        await protocol.send(stream, Hello("x", "é" * 64))
        await _drain(stream)
        assert runtime.cluster.stats.refused_handshakes >= 1

    trio.run(_run, pg_url, tmp_path, space.space.id, work)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(hellos=st.lists(strangers, min_size=10, max_size=25), after=st.lists(frames, max_size=25))
def test_no_input_on_the_internal_port_ends_the_member(pg_url, tmp_path, space, hellos, after):
    async def work(runtime: Any, address: str, secret: str) -> None:
        for payload in hellos:
            stream, _, _ = await _connect(address)
            try:
                await stream.send_all(payload)
            except trio.BrokenResourceError:
                pass
            await _drain(stream)
        stream, reader, challenge = await _connect(address)
        await protocol.send(stream, Hello("peer", protocol.proof(secret, challenge.nonce)))
        assert isinstance(await reader.next(), Welcome)
        for payload in after:
            try:
                await stream.send_all(payload)
            except trio.BrokenResourceError:
                break
        await _drain(stream)

    trio.run(_run, pg_url, tmp_path, space.space.id, work)


def test_a_failing_connection_handler_ends_only_its_connection(
    pg_url, tmp_path, space, monkeypatch: pytest.MonkeyPatch
):
    original = InternalServer._serve
    failures = [RuntimeError("injected"), KeyError(1)]

    async def failing(self: InternalServer, stream: trio.SocketStream) -> None:
        if failures:
            raise failures.pop(0)
        await original(self, stream)

    monkeypatch.setattr(InternalServer, "_serve", failing)

    async def work(runtime: Any, address: str, secret: str) -> None:
        for _ in range(2):
            stream, _, _ = await _connect_raw(address)
            await _drain(stream)
        assert not failures
        assert runtime.cluster.stats.failed_connections == 2

    trio.run(_run, pg_url, tmp_path, space.space.id, work)


async def _connect_raw(address: str) -> tuple[trio.SocketStream, None, None]:
    host, _, port = address.rpartition(":")
    return await trio.open_tcp_stream(host, int(port)), None, None
