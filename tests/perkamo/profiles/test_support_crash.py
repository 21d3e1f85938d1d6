"""Support operations survive a crash: SIGKILL a real server under a mix of events,
adjustments and reversals; every acknowledged write is present exactly once, retrying
everything applies nothing twice, and ``perkamo verify`` is clean."""

from __future__ import annotations

import itertools

import httpx
import psycopg
import pytest
import trio

from perkamo.cli.main import main
from tests.perkamo.profiles.test_support import PROGRAM
from tests.server_process import ServerProcess
from tests.spaces import make_space

pytestmark = [
    pytest.mark.slow,  # real server processes in real time
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <async_generator object ByteStream"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

USERS = [f"c{n}" for n in range(6)]


def write_of(kind: str, n: int) -> tuple[str, dict]:
    """The n-th write of a kind: (path, body). Reversals name redemption r<n>."""
    user = USERS[n % len(USERS)]
    if kind == "event":
        body = {"user_id": user, "event": "topup", "transaction_id": f"e{n}",
                "context": {"n": 50}}  # fmt: skip
        return "/v1/events", body
    if kind == "adjust":
        amount = 7 if n % 3 else -3
        body = {"user_id": user, "wallet": "points", "amount": amount, "reason": "crash test",
                "transaction_id": f"a{n}"}  # fmt: skip
        return "/v1/admin/adjustments", body
    return f"/v1/admin/redemptions/r{n}/reverse", {"reason": "refund"}


def stored(pg_url: str, space_id: int, table: str) -> dict[str, int]:
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            f"SELECT transaction_id, count(*) FROM {table} WHERE space_id = %s GROUP BY 1",
            (space_id,),
        ).fetchall()
    return {tx: n for tx, n in found}


async def test_sigkill_under_events_adjustments_and_reversals(pg_url, tmp_path):
    space = make_space(pg_url)
    server = ServerProcess(pg_url, tmp_path)
    await server.start()
    headers = {"x-perkamo-api-key": space.key}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=10) as c:
        loaded = await c.post("/v1/admin/config", json={"version": "v1", "modules": PROGRAM})
        assert loaded.status_code == 200
        for user in USERS:  # points, then redemptions to reverse during the load
            body = {"user_id": user, "event": "topup", "transaction_id": f"seed-{user}",
                    "context": {"n": 100_000}}  # fmt: skip
            assert (await c.post("/v1/events", json=body)).status_code == 200
        for n in range(400):
            body = {"user_id": USERS[n % len(USERS)], "reward_key": "coupon",
                    "transaction_id": f"r{n}"}  # fmt: skip
            assert (await c.post("/v1/rewards/redeem", json=body)).status_code == 200
    attempted: list[tuple[str, int]] = []
    answered: list[tuple[str, int]] = []
    counter = itertools.count()

    async def worker(kind: str, client: httpx.AsyncClient) -> None:
        while True:
            n = next(counter)
            if kind == "reverse" and n >= 400:
                return
            path, body = write_of(kind, n)
            attempted.append((kind, n))
            try:
                r = await client.post(path, json=body)
            except httpx.TransportError:
                return
            assert r.status_code in (200, 503), r.text
            if r.status_code == 200:
                answered.append((kind, n))

    with trio.fail_after(60):
        async with (
            httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=10) as c,
            trio.open_nursery() as nursery,
        ):
            for kind in ("event", "adjust", "reverse") * 5:
                nursery.start_soon(worker, kind, c)
            while len(answered) < 300:
                await trio.sleep(0.01)
            server.kill()  # SIGKILL mid-load

    tables = {"event": "events", "adjust": "adjustments", "reverse": "reversals"}
    prefix = {"event": "e", "adjust": "a", "reverse": "r"}
    for kind, table in tables.items():
        log = stored(pg_url, space.space.id, table)
        acked = {f"{prefix[kind]}{n}" for k, n in answered if k == kind}
        assert all(log.get(tx) == 1 for tx in acked), f"acknowledged {kind} lost"

    again = ServerProcess(pg_url, tmp_path)
    await again.start()
    try:
        async with httpx.AsyncClient(base_url=again.base_url, headers=headers, timeout=10) as c:
            for kind, n in attempted:  # everything again, answered or not
                path, body = write_of(kind, n)
                r = await c.post(path, json=body)
                assert r.status_code == 200, r.text
                if (kind, n) in answered:
                    assert r.json()["duplicate"] is True
        for kind, table in tables.items():
            log = stored(pg_url, space.space.id, table)
            sent = {f"{prefix[kind]}{n}" for k, n in attempted if k == kind}
            assert sent <= set(log) and set(log.values()) == {1}, kind
    finally:
        again.kill()
    assert main(["verify", "--space", space.slug, "--database-url", pg_url]) == 0
