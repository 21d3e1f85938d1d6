"""Two server processes on one database (defect D6; the README says what is supported).
Writes stay correct through the version check; a version race that does not settle is a
retryable 503, never a 500; and a read never serves a snapshot older than one another
process committed."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.perkamo.server.test_faults import client_for, start_server, verify_clean
from tests.server_process import ServerProcess
from tests.spaces import committed

# Real server processes in real time: left out by `make test-fast`.
pytestmark = pytest.mark.slow


async def test_two_processes_on_hot_profiles_never_answer_500(pg_url, tmp_path):
    first, space = await start_server(pg_url, tmp_path)
    second = ServerProcess(pg_url, tmp_path)
    await second.start()
    statuses: dict[int, int] = {}
    applied: set[str] = set()
    try:
        async with client_for(first, space) as a, client_for(second, space) as b:

            async def writer(client: httpx.AsyncClient, name: str) -> None:
                for i in range(40):
                    tx = f"{name}-{i}"
                    body = {"user_id": f"hot{i % 3}", "event": "app.opened", "transaction_id": tx}
                    while True:  # a careful client retries 503s with the same id
                        response = await client.post("/v1/events", json=body)
                        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                        if response.status_code != 503:
                            break
                        await trio.sleep(0.05)
                    assert response.status_code == 200, response.text
                    applied.add(tx)

            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    for n in range(12):
                        nursery.start_soon(writer, a, f"a{n}")
                        nursery.start_soon(writer, b, f"b{n}")
            assert set(statuses) <= {200, 503}, statuses
            counts = committed(pg_url, space.space.id)
            assert set(counts) == applied and set(counts.values()) == {1}

            # Freshness: B holds hot0 in memory; A writes it; B's read shows A's write.
            for n in range(5):
                before = (await b.get("/v1/profile/hot0")).json()
                body = {"user_id": "hot0", "event": "app.opened", "transaction_id": f"fresh{n}"}
                assert (await a.post("/v1/events", json=body)).status_code == 200
                after = (await b.get("/v1/profile/hot0")).json()
                assert after["events"][0]["transaction_id"] == f"fresh{n}"
                assert after["updated_at"] > before["updated_at"] or n == 0
            a_view = (await a.get("/v1/profile/hot0")).json()
            b_view = (await b.get("/v1/profile/hot0")).json()
            assert a_view["wallets"] == b_view["wallets"]
        verify_clean(pg_url, space)
    finally:
        first.kill()
        second.kill()
    assert "Traceback" not in first.log() + second.log()
