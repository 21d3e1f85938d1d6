"""A live stream served by a member that does not own its profile (docs/api.md "The browser half"): it
subscribes at the owner over the cluster link, gets the changes the owner commits, and
when the owner is SIGKILLed it sends a fresh snapshot and then every later change."""

from __future__ import annotations

import httpx
import psycopg
import pytest
import trio

from perkamo.cluster.shards import LOCK_NAMESPACE, shard_of
from storage import members
from tests.browser import SHOP, stream
from tests.perkamo.cluster.test_members import split_between, start_two, until

pytestmark = pytest.mark.slow


def owned_by(pg_url: str, os_pid: int) -> set[int]:
    """The shards the server process ``os_pid`` holds."""
    with psycopg.connect(pg_url) as conn:
        backends = {
            int(pid)
            for (pid,) in conn.execute("SELECT backend_pid FROM members WHERE pid = %s", (os_pid,))
            if pid is not None
        }
        holders = members.lock_holders(conn, LOCK_NAMESPACE)
    return {shard for shard, backend in holders.items() if backend in backends}


async def test_a_stream_on_a_non_owner_follows_its_profile_through_the_owners_death(
    pg_url, tmp_path
):
    entry, owner, space = await start_two(pg_url, tmp_path)
    try:
        assert owner.proc is not None
        theirs = owned_by(pg_url, owner.proc.pid)
        user = next(
            u for u in (f"c{n}" for n in range(1000)) if shard_of(space.space.id, u) in theirs
        )
        headers = {"x-perkamo-api-key": space.key}
        async with (
            httpx.AsyncClient(base_url=entry.base_url, headers=headers, timeout=30) as api,
            httpx.AsyncClient(base_url=owner.base_url, headers=headers, timeout=30) as at_owner,
        ):
            created = await api.post(
                "/v1/admin/browser-keys",
                json={"name": "s", "allowed_origins": [SHOP], "allowed_events": ["*"]},
            )
            browser_key = created.json()["key"]

            async def stream_token() -> str:
                answer = await api.post(
                    "/v1/browser-tokens",
                    json={"browser_key": browser_key, "user_id": user, "purpose": "stream"},
                )
                return str(answer.json()["token"])

            async def send(client: httpx.AsyncClient, tx: str) -> None:
                body = {"user_id": user, "event": "page.viewed", "transaction_id": tx}
                for _ in range(50):  # retried through the take-over, as a client would
                    answer = await client.post("/v1/events", json=body)
                    if answer.status_code == 200:
                        return
                    await trio.sleep(0.1)
                raise AssertionError(f"{tx} never applied")

            await send(api, "before")
            async with stream(entry.port, await stream_token()) as events:
                first = await events.next_event()
                assert (first.event, first.id) == ("profile", 1)
                await send(api, "via-entry")  # forwarded to the owner, committed there
                await send(at_owner, "at-owner")
                changes = [await events.next_event() for _ in range(2)]
                assert [(c.event, c.id) for c in changes] == [("change", 2), ("change", 3)]
                assert [c.data["transaction_id"] for c in changes] == ["via-entry", "at-owner"]
                owner.kill()  # SIGKILL
                fresh = await events.next_event(within=10)
                assert fresh.event == "profile"  # a fresh snapshot after the owner's death
                assert fresh.id == 3 and fresh.data["wallets"]
                await until(lambda: split_between(pg_url, 1), 5, "the survivor took every shard")
                for n in range(3):
                    await send(api, f"after-{n}")
                later = [await events.next_event(within=10) for _ in range(3)]
                assert [(c.event, c.id) for c in later] == [
                    ("change", 4),
                    ("change", 5),
                    ("change", 6),
                ]
                assert [c.data["transaction_id"] for c in later] == [
                    "after-0",
                    "after-1",
                    "after-2",
                ]
    finally:
        entry.kill()
        owner.kill()
    assert "Traceback" not in entry.log()


async def test_a_customers_browser_bucket_is_one_however_many_members_a_page_reaches(
    pg_url, tmp_path
):
    first, second, space = await start_two(pg_url, tmp_path)
    try:
        headers = {"x-perkamo-api-key": space.key}
        async with (
            httpx.AsyncClient(base_url=first.base_url, headers=headers, timeout=30) as a,
            httpx.AsyncClient(base_url=second.base_url, timeout=30) as b,
        ):
            created = await a.post("/v1/admin/browser-keys", json={
                "name": "r", "allowed_origins": [SHOP], "rate": {"per_second": 0.01, "burst": 4},
            })  # fmt: skip
            minted = await a.post(
                "/v1/browser-tokens",
                json={"browser_key": created.json()["key"], "user_id": "rate-me"},
            )
            bearer = {"authorization": f"Bearer {minted.json()['token']}"}
            statuses = []
            for n in range(6):  # alternating members: one bucket at the profile's owner
                client = a if n % 2 == 0 else b
                statuses.append(
                    (await client.get("/v1/client/program", headers=bearer)).status_code
                )
            assert statuses == [200, 200, 200, 200, 429, 429]
    finally:
        first.kill()
        second.kill()
