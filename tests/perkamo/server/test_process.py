"""The server as a real process: graceful shutdown, crash safety, restart idempotency."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
import trio

from tests.server_process import ServerProcess
from tests.spaces import SpaceKey, committed

# These tests kill the server mid-response on purpose; httpx then leaves its response-body
# async generator to the garbage collector. That is the client library's cleanup, not ours.
pytestmark = [
    pytest.mark.slow,  # real server processes in real time
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <async_generator object ByteStream"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


def event(tx: str, user: str) -> dict:
    return {"user_id": user, "event": "lesson.finished", "transaction_id": tx}


async def drive_load(
    base_url: str, key: str, attempted: list[str], answered: list[str], stop: trio.Event
) -> None:
    """Twenty concurrent clients sending distinct events until ``stop`` or failure."""
    headers = {"x-perkamo-api-key": key}

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while not stop.is_set():
            tx = f"w{n}-{i}"
            attempted.append(tx)
            try:
                r = await client.post(
                    base_url + "/v1/events",
                    json=event(tx, f"user-{i % 7}-{n % 3}"),
                    headers=headers,
                )
            except httpx.TransportError:
                return
            if r.status_code == 200 and r.json()["applied"]:
                answered.append(tx)
            i += 1

    async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(worker, n, client)


async def load_then(server: ServerProcess, key: str, acknowledged: int, act) -> tuple[list, list]:
    """Drive load until ``acknowledged`` events were answered, then ``await act()`` while the
    load goes on; returns (attempted, answered) transaction ids."""
    attempted: list[str] = []
    answered: list[str] = []
    stop = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive_load, server.base_url, key, attempted, answered, stop)
            while len(answered) < acknowledged:
                await trio.sleep(0.01)
            await act()
            stop.set()
    return attempted, answered


async def test_sigterm_shuts_down_cleanly_and_loses_nothing(server, space: SpaceKey, pg_url):
    headers = {"x-perkamo-api-key": space.key}
    async with httpx.AsyncClient() as client:
        # Real HTTP, with an encoded "/" in the user id routed as one segment.
        r = await client.post(
            server.base_url + "/v1/identify", json={"user_id": "a/b"}, headers=headers
        )
        assert r.status_code == 200
        r = await client.get(server.base_url + "/v1/profile/a%2Fb", headers=headers)
        assert (r.status_code, r.json()["user_id"]) == (200, "a/b")
        assert r.headers["x-perkamo-request-id"].startswith("req_")
    codes: list[int] = []

    async def terminate() -> None:
        server.signal(signal.SIGTERM)
        codes.append(await server.wait())

    _, answered = await load_then(server, space.key, 200, terminate)
    assert codes == [0], server.log()
    assert "shutdown complete" in server.log()
    log = committed(pg_url, space.space.id)
    assert all(log.get(tx) == 1 for tx in answered)
    assert space.key not in server.log()  # keys are never logged


async def test_sigkill_under_load_loses_no_acknowledged_event(server, space, pg_url, tmp_path):
    async def kill() -> None:
        server.kill()  # SIGKILL mid-load: no shutdown code runs

    attempted, answered = await load_then(server, space.key, 300, kill)
    assert len(attempted) > len(answered)  # some requests were in flight at the kill
    log = committed(pg_url, space.space.id)
    missing = [tx for tx in answered if log.get(tx) != 1]
    assert missing == [], "acknowledged events lost"

    # Restart and re-send every event of the run, answered or not: each applies exactly once.
    again = ServerProcess(pg_url, tmp_path)
    await again.start()
    try:
        headers = {"x-perkamo-api-key": space.key}
        duplicates = set()
        async with httpx.AsyncClient(timeout=10) as client:
            for tx in attempted:
                n, i = tx[1:].split("-")
                body = event(tx, f"user-{int(i) % 7}-{int(n) % 3}")
                r = await client.post(again.base_url + "/v1/events", json=body, headers=headers)
                assert r.status_code == 200, r.text
                if r.json()["duplicate"]:
                    duplicates.add(tx)
        assert set(answered) <= duplicates  # answered before the crash: now duplicates
        log = committed(pg_url, space.space.id)
        assert set(log) == set(attempted)
        assert set(log.values()) == {1}
    finally:
        again.kill()


async def test_a_retry_after_restart_is_a_duplicate(server, space, pg_url, tmp_path):
    headers = {"x-perkamo-api-key": space.key}
    body = event("restart-1", "r")
    async with httpx.AsyncClient() as client:
        first = await client.post(server.base_url + "/v1/events", json=body, headers=headers)
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
        again = ServerProcess(pg_url, tmp_path)
        await again.start()
        try:
            retry = await client.post(again.base_url + "/v1/events", json=body, headers=headers)
        finally:
            again.kill()
    assert retry.status_code == 200
    assert retry.json() == {**first.json(), "duplicate": True}
    assert committed(pg_url, space.space.id) == {"restart-1": 1}


async def test_port_in_use_is_a_clear_error(server, pg_url, tmp_path):
    clash = ServerProcess(pg_url, tmp_path)
    clash.port = server.port
    with pytest.raises(AssertionError):
        await clash.start()
    assert await clash.wait() == 1
    assert "cannot listen on" in clash.log()
    assert "Traceback" not in clash.log()


async def test_idle_keep_alive_connections_do_not_hold_a_shutdown(pg_url, tmp_path):
    """An idle keep-alive connection is closed when a shutdown begins, not at the end of the
    grace period (10 s here). See perkamo/http/hypercorn_fix.py."""
    server = ServerProcess(pg_url, tmp_path, env={"PERKAMO_SHUTDOWN_GRACE_SECONDS": "10"})
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            assert (await client.get("/healthz")).status_code == 200  # the connection stays open
            await trio.sleep(0.2)
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            assert await server.wait(timeout=15) == 0
            assert time.monotonic() - started < 4, "an idle connection held the shutdown"
    finally:
        server.kill()


async def test_sigterm_with_keep_alive_clients_exits_without_waiting_out_the_grace_period(
    pg_url, tmp_path, space
):
    """16 keep-alive clients under load and one idle one; the grace period is 10 s. After
    SIGTERM every request is answered at once — 200 when it was in flight, 503
    shutting_down (with connection: close) when it arrived on an open connection — or finds
    its connection closed; nothing hangs, the server exits well before the grace period,
    and every acknowledged event is committed."""
    server = ServerProcess(pg_url, tmp_path, env={"PERKAMO_SHUTDOWN_GRACE_SECONDS": "10"})
    await server.start()
    headers = {"x-perkamo-api-key": space.key}
    answered: list[str] = []
    after: list[tuple[str, float]] = []  # outcome and latency of requests sent after SIGTERM
    signalled = trio.Event()

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as http:
            for i in range(10_000):
                sent = time.monotonic()
                late = signalled.is_set()
                try:
                    r = await http.post(
                        "/v1/events", json=event(f"k{n}-{i}", f"u{n}"), headers=headers
                    )
                except httpx.TransportError:
                    if late:
                        after.append(("closed", time.monotonic() - sent))
                    if signalled.is_set():
                        return
                    raise
                if r.status_code == 200:
                    answered.append(f"k{n}-{i}")
                if late:
                    outcome = str(r.status_code)
                    if r.status_code == 503:
                        assert r.json()["error"] == "shutting_down"
                        assert r.headers["connection"] == "close"
                    after.append((outcome, time.monotonic() - sent))

    try:
        async with httpx.AsyncClient(base_url=server.base_url) as idle:
            assert (await idle.get("/healthz")).status_code == 200  # stays open, idle
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    for n in range(16):
                        nursery.start_soon(client, n)
                    while len(answered) < 200:
                        await trio.sleep(0.01)
                    started = time.monotonic()
                    server.signal(signal.SIGTERM)
                    signalled.set()
                    assert await server.wait(timeout=15) == 0
                    exited_after = time.monotonic() - started
    finally:
        server.kill()
    assert exited_after < 4, f"the shutdown waited {exited_after:.1f} s"
    assert after and {outcome for outcome, _ in after} <= {"200", "503", "closed"}, after
    assert max(latency for _, latency in after) < 4
    log = committed(pg_url, space.space.id)
    assert all(log.get(tx) == 1 for tx in answered)
