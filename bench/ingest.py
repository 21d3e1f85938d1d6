"""A short ingestion run: single events and 100-event batches against a real server.

    python -m bench ingest [--seconds 10] [--clients 32]

Starts ``perkamo serve`` on a fresh embedded PostgreSQL in a temporary directory, drives it
from this (separate) process over loopback with httpx, and prints events/s. Durable
acknowledgement, as always. This is the quick check; the full benchmark (wrk, latency at fixed
rates, the framework ceiling) is a separate piece of work.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import trio

from perkamo import admin
from storage import EmbeddedPostgres
from storage.migrations import migrate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        with trio.fail_after(30):
            while True:
                if proc.poll() is not None:
                    raise SystemExit("server exited during start-up")
                try:
                    if (await client.get(base + "/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)


async def _drive(
    base: str, key: str, seconds: float, clients: int, batch: int, users: int
) -> tuple[int, int, int]:
    """Closed loop: each client sends as fast as answers come. Returns (events, requests,
    errors)."""
    counts = {"events": 0, "requests": 0, "errors": 0}
    deadline = trio.current_time() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"x-perkamo-api-key": key}

    async def client_loop(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while trio.current_time() < deadline:
            items = [
                {
                    "user_id": f"user-{(n * 7919 + i * batch + j) % users}",
                    "event": "lesson.finished",
                    "transaction_id": f"{batch}-{n}-{i}-{j}",
                    "context": {"lesson_id": j},
                }
                for j in range(batch)
            ]
            i += 1
            if batch == 1:
                r = await client.post(base + "/v1/events", json=items[0], headers=headers)
            else:
                r = await client.post(
                    base + "/v1/events:batch", json={"events": items}, headers=headers
                )
            counts["requests"] += 1
            if r.status_code == 200:
                counts["events"] += batch
            else:
                counts["errors"] += 1

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async with trio.open_nursery() as nursery:
            for n in range(clients):
                nursery.start_soon(client_loop, n, client)
    return counts["events"], counts["requests"], counts["errors"]


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench ingest")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="perkamo-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        server: subprocess.Popen[bytes] | None = None
        try:
            with psycopg.connect(url) as conn:
                migrate(conn)
                space = admin.create_space(conn, "bench", "Bench", "test")
                _, key = admin.create_key(conn, space)
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            env = {**os.environ, "PERKAMO_DATABASE_URL": url, "PERKAMO_LOG_LEVEL": "warning"}
            server = subprocess.Popen(
                [sys.executable, "-m", "perkamo", "serve", "--host", "127.0.0.1"]
                + ["--port", str(port), "--data-dir", tmp],
                env=env,
            )
            trio.run(_wait_ready, base, server)
            for label, batch in (("single events", 1), ("batches of 100", 100)):
                print(f"running {label} for {args.seconds:.0f} s ...", flush=True)
                started = time.perf_counter()
                events, requests, errors = trio.run(
                    _drive, base, key, args.seconds, args.clients, batch, args.users
                )
                elapsed = time.perf_counter() - started
                print(
                    f"{label:>16}: {events / elapsed:8.0f} events/s "
                    f"({requests / elapsed:.0f} requests/s, {errors} errors, "
                    f"{args.clients} clients, {args.users} users)",
                    flush=True,
                )
        finally:
            if server is not None:
                server.send_signal(signal.SIGTERM)
                server.wait(30)
            pg.stop()
