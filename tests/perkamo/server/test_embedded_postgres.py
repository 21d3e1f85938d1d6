"""docs/api.md "Embedded PostgreSQL" (defect D5): when the server runs its own PostgreSQL and it
dies, the server restarts it and recovers without an operator; meanwhile /readyz is 503 and
writes answer 503 storage_unavailable."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
import trio

from tests.server_process import ServerProcess

# Real server processes in real time: left out by `make test-fast`.
pytestmark = pytest.mark.slow


def postmaster_pid(data_dir) -> int:
    return int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])


async def test_a_killed_embedded_postgres_is_restarted(tmp_path):
    server = ServerProcess(None, tmp_path, "--demo")
    await server.start()
    try:
        key = (tmp_path / "demo-key").read_text().strip()
        headers = {"x-perkamo-api-key": key}
        body = {"user_id": "u", "event": "app.opened", "transaction_id": "before"}
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=headers, timeout=15
        ) as client:
            first = await client.post("/v1/events", json=body)
            assert first.status_code == 200
            pid = postmaster_pid(tmp_path)
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            saw: set[str] = set()
            with trio.fail_after(60):
                while True:  # not ready while it is down, ready again without anyone's help
                    ready = (await client.get("/readyz")).status_code
                    if ready == 503:
                        saw.add("not-ready")
                        started = time.monotonic()
                        write = await client.post(
                            "/v1/events", json={**body, "transaction_id": "during"}
                        )
                        assert time.monotonic() - started < 9
                        if write.status_code == 503:
                            assert write.json()["error"] == "storage_unavailable"
                            assert write.headers["retry-after"]
                            saw.add("refused")
                    elif ready == 200 and "not-ready" in saw:
                        break
                    await trio.sleep(0.1)
            recovered_after = time.monotonic() - killed_at
            assert postmaster_pid(tmp_path) != pid
            again = await client.post("/v1/events", json={**body, "transaction_id": "after"})
            assert again.status_code == 200, again.text
            retry = await client.post("/v1/events", json=body)
            assert retry.json() == {**first.json(), "duplicate": True}
            assert (await client.get("/v1/profile/u")).status_code == 200
        assert recovered_after < 30
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
    finally:
        server.kill()
