"""PostgreSQL going away under a running server: 503 with retry-after, never a hang, and
recovery without a restart once it is back."""

from __future__ import annotations

import psycopg
import pytest
import trio

from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from storage import EmbeddedPostgres
from storage.migrations import migrate
from tests.api_client import Api, app_for
from tests.spaces import make_space

# Real server processes in real time: left out by `make test-fast`.
pytestmark = pytest.mark.slow


async def test_database_outage_answers_503_and_recovers(tmp_path):
    server = EmbeddedPostgres(tmp_path / "outage-pg")
    url = server.start()
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
        space = make_space(url)
        async with open_runtime(Settings(data_dir=tmp_path), url) as rt:
            api = Api(app_for(rt), space.key)
            body = {"user_id": "u", "event": "e", "transaction_id": "before"}
            assert (await api.post("/v1/events", body)).status == 200

            await trio.to_thread.run_sync(server.stop)
            for n in range(3):
                with trio.fail_after(8):  # bounded: never a hang
                    down = await api.post(
                        "/v1/events", {"user_id": f"x{n}", "event": "e", "transaction_id": f"d{n}"}
                    )
                assert down.status == 503, down.body
                assert down.body["error"] in {"storage_unavailable", "outcome_unknown"}
                assert int(down.headers["retry-after"]) >= 1
            assert (await api.get("/readyz", key=None)).status == 503

            url_again = await trio.to_thread.run_sync(server.start)
            assert url_again == url
            with trio.fail_after(20):
                while True:
                    again = await api.post(
                        "/v1/events", {"user_id": "x0", "event": "e", "transaction_id": "d0"}
                    )
                    if again.status == 200:
                        break
                    await trio.sleep(0.2)
            assert again.body["applied"] is True
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM events WHERE transaction_id IN ('before', 'd0')"
                ).fetchone()
            assert row == (2,)
    finally:
        server.stop()
