"""Moves interrupted and moves beside a running server, with real processes in real time:
an import killed with SIGKILL in the middle of its COPY leaves no trace and runs again; an
``import-balances`` run killed midway completes when run again, nothing doubled; a server
serves a Space imported under it at once, and an ``import-balances`` run beside it sends
each customer's rows to it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
import trio

from bench.moving import generate
from perkamo.configuration import store
from tests.conftest import forget_dead_members
from tests.perkamo.moving.conftest import Cli
from tests.perkamo.moving.shop import PROGRAM
from tests.perkamo.moving.test_import_refusals import orphans, spaces_named
from tests.server_process import ServerProcess
from tests.spaces import make_space

pytestmark = pytest.mark.slow


def start(url: str, workdir: Path, *argv: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PERKAMO_DATABASE_URL": url, "PERKAMO_DATA_DIR": str(workdir)}
    return subprocess.Popen(
        [sys.executable, "-m", "perkamo", *argv],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def one(url: str, query: str, *params: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def others_busy(url: str) -> int:
    """Sessions of this database other than the asking one still running or in a
    transaction (a killed client's backend rolls back and goes)."""
    return one(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')",
    )


async def until(condition: Callable[[], bool], seconds: float) -> None:
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.02)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def test_an_import_killed_in_its_copy_leaves_no_trace_and_runs_again(
    pg_url, fresh_url, cli: Cli, tmp_path
):
    slug = "killed-" + secrets.token_hex(3)
    await trio.to_thread.run_sync(generate, pg_url, slug, 20_000, 200_000)
    exported = tmp_path / "big.jsonl"
    assert cli(pg_url, "export", slug, "--output", str(exported))[0] == 0

    proc = start(fresh_url, tmp_path, "import", str(exported))
    copying = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state = 'active' AND query LIKE 'COPY \"events\"%%'"
    )
    await until(lambda: one(fresh_url, copying) > 0 or proc.poll() is not None, 120)
    assert proc.poll() is None, "the import ended before it could be killed"
    kill(proc)
    await until(lambda: others_busy(fresh_url) == 0, 30)
    assert spaces_named(fresh_url, slug) == 0 and orphans(fresh_url) == 0
    assert one(fresh_url, "SELECT count(*) FROM api_keys") == 0

    code, _, err = cli(fresh_url, "import", str(exported))
    assert code == 0, err
    moved = "SELECT count(*) FROM events e JOIN spaces s ON s.id = e.space_id WHERE s.slug = %s"
    assert one(fresh_url, moved, slug) == 200_000


async def test_an_import_balances_run_killed_midway_completes_when_run_again(
    pg_url, cli: Cli, tmp_path
):
    forget_dead_members(pg_url)
    space = make_space(pg_url)
    with psycopg.connect(pg_url) as conn:
        store(conn, space.space.id, "v1", PROGRAM, True, "modules.{module}")
    rows = 20_000
    balances = tmp_path / "balances.csv"
    balances.write_text(
        "user_id,wallet,amount\n" + "".join(f"c-{n},points,{n % 50 + 1}\n" for n in range(rows))
    )
    count = "SELECT count(*) FROM adjustments WHERE space_id = %s"

    proc = start(pg_url, tmp_path, "import-balances", space.slug, str(balances))
    await until(lambda: one(pg_url, count, space.space.id) >= 2000 or proc.poll() is not None, 120)
    assert proc.poll() is None, "the run ended before it could be killed"
    kill(proc)
    await until(lambda: others_busy(pg_url) == 0, 30)
    before = one(pg_url, count, space.space.id)
    assert 0 < before < rows

    forget_dead_members(pg_url)
    code, out, err = await trio.to_thread.run_sync(
        lambda: cli(pg_url, "import-balances", space.slug, str(balances))
    )
    assert code == 0, err
    assert f"balances: {rows - before} applied, {before} duplicate, 0 refused" in out
    assert one(pg_url, count, space.space.id) == rows
    wrong = (
        "SELECT count(*) FROM profiles WHERE space_id = %s AND"
        " (state -> 'wallets' -> 'points' ->> 'balance')::numeric"
        " <> substring(user_id from 3)::int %% 50 + 1"
    )
    assert one(pg_url, wrong, space.space.id) == 0
    code, out, _ = cli(pg_url, "verify", "--space", space.slug)
    assert code == 0 and f"{rows} profiles verified, ok" in out


async def test_a_running_server_serves_an_imported_space_at_once_and_owns_its_openings(
    pg_url, fresh_url, cli: Cli, tmp_path
):
    space = make_space(pg_url)
    with psycopg.connect(pg_url) as conn:
        store(conn, space.space.id, "v1", PROGRAM, True, "modules.{module}")
    exported = tmp_path / "space.jsonl"
    assert cli(pg_url, "export", space.slug, "--output", str(exported))[0] == 0

    server = ServerProcess(fresh_url, tmp_path)
    await server.start()
    try:
        headers = {"x-perkamo-api-key": space.key}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as client:
            assert (await client.get("/v1/program")).status_code == 401  # cached as unknown
            assert cli(fresh_url, "import", str(exported))[0] == 0

            async def served() -> bool:
                return (await client.get("/v1/program")).status_code == 200

            with trio.fail_after(2):  # the notification, not a restart
                while not await served():
                    await trio.sleep(0.05)

            balances = tmp_path / "balances.csv"
            balances.write_text("user_id,wallet,amount,earned\nann,points,40,150\n")
            code, out, err = await trio.to_thread.run_sync(
                lambda: cli(fresh_url, "import-balances", space.slug, str(balances))
            )
            assert code == 0, err
            ann = (await client.get("/v1/customer/ann")).json()
            assert ann["wallets"]["points"] == 40 and ann["level"]["level"] == 2
            again = {"user_id": "ann", "event": "buy", "transaction_id": "t1",
                     "context": {"amount": 2}}  # fmt: skip
            applied = (await client.post("/v1/events", json=again)).json()
            assert applied["wallet_state"]["points"] == 42  # the server's copy is current
    finally:
        server.kill()
