"""``python -m bench lots [--quick] [--base REV]``: what lots cost (docs/program.md "Points that wait and points that expire"), printed as Markdown for bench/RESULTS.md.

1. The engine's CPU per event (bench/engine_cost.py) for the demo program and the same with
   lots, on this code and on ``--base`` (a git revision before lots, checked out in a
   temporary worktree): the cost of lots, and no regression for wallets without them.
2. Server CPU per event, ``perkamo serve`` on a fresh embedded PostgreSQL with two Spaces
   running the bench program — ``plain`` and ``lots`` (its points wallet with
   ``pending_days: 14`` and ``expiry: {after_days: 365}``) — under the same workloads: single
   events over 100,000 users, batches of 100 events of one user, and single events to 1,000
   customers who already hold 30 lots (a purchase a day for 30 days).
3. A sweep of 100,000 profiles with something due (pending points to release): how fast the
   sweeper ticks them at its default pace and at a high one, and the p99 of live single
   events at a fixed 200 requests/s meanwhile, against the same traffic with nothing due.

Everything runs on 127.0.0.1, bounded in time. The machine may be shared: say so with the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg

from perkamo.access import admin
from perkamo.configuration import store
from perkamo.program import EngineEvent, ProfileState, apply, compile_program
from storage import EmbeddedPostgres
from storage import spaces as space_store
from storage.migrations import migrate

from . import workloads
from .loadgen import Maker
from .run import Sampler, Server, bench_program, drive, log, ms

HERE = Path(__file__).parent
ROOT = HERE.parent
DUE = 100_000


def lots_program() -> dict[str, Any]:
    modules = bench_program()
    points = next(w for w in modules["wallets"]["wallets"] if w["key"] == "points")
    points.update({"pending_days": 14, "expiry": {"after_days": 365}})
    return modules


# -- 1. the engine, before and after --------------------------------------------------------


def engine(base: str, repeat: int, rounds: int) -> dict[str, Any]:
    """Best of ``rounds`` interleaved runs per configuration, on this tree and on ``base``."""
    best: dict[tuple[str, bool, int], float] = {}
    kept: dict[tuple[bool, int], int] = {}
    with tempfile.TemporaryDirectory(prefix="perkamo-base-") as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree),
                        base], check=True)  # fmt: skip
        try:
            for n in range(rounds):
                for name, path in (("before", tree), ("after", ROOT)):
                    log(f"engine cost, {name} ({n + 1}/{rounds})")
                    out = subprocess.run(
                        [sys.executable, str(HERE / "engine_cost.py"), str(repeat)],
                        env={**os.environ, "PYTHONPATH": str(path)}, capture_output=True,
                        text=True, check=True, cwd=path,
                    ).stdout  # fmt: skip
                    for r in json.loads(out):
                        key = (name, r["lots"], r["days"])
                        best[key] = min(best.get(key, float("inf")), r["us_per_event"])
                        kept[(r["lots"], r["days"])] = r["lots_kept"]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False)  # fmt: skip
    return {"best": {f"{k[0]} {'lots' if k[1] else 'plain'} {k[2]}": v for k, v in best.items()},
            "lots_kept": {f"{'lots' if k[0] else 'plain'} {k[1]}": v for k, v in kept.items()}}  # fmt: skip


# -- 2 and 3. the server -----------------------------------------------------------------------


def spaces(url: str) -> dict[str, tuple[int, str]]:
    """The Spaces ``plain`` and ``lots``: (id, key) each."""
    found = {}
    with psycopg.connect(url) as conn:
        migrate(conn)
        for slug, program in (("plain", bench_program()), ("lots", lots_program())):
            space = admin.create_space(conn, slug, slug.title(), "test")
            _, key = admin.create_key(conn, space)
            space_store.set_limits(conn, slug, {"rate": 10**9, "burst": 10**9})
            conn.commit()
            store(conn, space.id, "bench", program, True, "modules.{module}")
            found[slug] = (space.id, key)
    return found


def seed_lots(base: str, key: str, users: int, days: int) -> None:
    """``users`` customers with a purchase a day for ``days`` days (one lot a day)."""
    start = datetime.now(UTC) - timedelta(days=days)
    with httpx.Client(timeout=120) as client:
        for u in range(users):
            items = [{"user_id": f"holder-{u}", "event": "purchase.completed",
                      "transaction_id": f"seed-{u}-{d}", "context": {"amount": 12900,
                      "currency": "CZK"}, "occurred_at": (start + timedelta(days=d)).isoformat()}
                     for d in range(days)]  # fmt: skip
            answer = client.post(f"{base}/v1/events:batch", json={"events": items},
                                 headers={"x-perkamo-api-key": key})  # fmt: skip
            answer.raise_for_status()


def holders(target: workloads.Target, users: int) -> Maker:
    """Single purchases of the customers ``seed_lots`` made."""

    def make(rng: Any, n: int) -> tuple[bytes, int]:
        body = workloads._event(target, f"holder-{rng.randrange(users)}", n)
        return workloads._request(target, "POST", "/v1/events", body), 1

    return make


def cpu_per_event(
    server: Server, target: workloads.Target, make: Any, seconds: int
) -> dict[str, Any]:
    assert server.proc is not None
    with Sampler(server.proc.pid) as sampler:
        tally, _ = drive(target, make, seconds, 32)
    per_s = tally.items / seconds
    cpu = sampler.cpu_percent / 100 / per_s * 1e6 if per_s else 0.0
    return {"items_per_s": round(per_s), "cpu_us_per_item": round(cpu), "errors": tally.failed,
            "p99": ms(tally.percentile(0.99))}  # fmt: skip


def seed_due(url: str, space_id: int, count: int, tag: str) -> None:
    """``count`` profiles whose pending points were due days ago (as a snapshot write
    leaves them: state, next due time)."""
    program = compile_program({m: ("bench", b) for m, b in lots_program().items()})
    received = datetime.now(UTC) - timedelta(days=20)
    event = EngineEvent("purchase.completed", {"amount": 12900, "currency": "CZK"}, received, {})
    state, _ = apply(ProfileState(), event, program, received)
    text = msgspec.json.encode(state).decode()
    due = state.wallets["points"].due
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO profiles (space_id, user_id, traits, state, version, created_at,"
            " updated_at, next_due, due_shard) SELECT %s, %s || g, '{}', %s::jsonb, 1, %s, %s,"
            " %s, 0 FROM generate_series(1, %s) g",
            (space_id, f"due-{tag}-", text, received, received, due, count),
        )


def due_left(url: str, space_id: int) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM profiles WHERE space_id = %s AND next_due <= now()", (space_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def sweep(url: str, server: Server, space_id: int, live: workloads.Target, seconds: int,
          tag: str) -> dict[str, Any]:  # fmt: skip
    """Seed the due profiles, then live traffic at 200/s while the sweeper works."""
    seed_due(url, space_id, DUE, tag)
    timeline: list[tuple[float, int]] = []
    started = time.perf_counter()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            timeline.append((time.perf_counter() - started, due_left(url, space_id)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    tally, _ = drive(live, workloads.single(live), seconds, 32, rate=200)
    while due_left(url, space_id) and time.perf_counter() - started < 600:
        time.sleep(1)
    stop.set()
    watcher.join()
    cleared = next((t for t, left in timeline if left == 0), time.perf_counter() - started)
    first = next((t for t, left in timeline if left < DUE), 0.0)
    return {"ticks_per_s": round(DUE / max(cleared - first, 1e-9)), "cleared_after_s": round(cleared, 1),
            "live_p50": ms(tally.percentile(0.5)), "live_p99": ms(tally.percentile(0.99)),
            "live_errors": tally.failed}  # fmt: skip


def _cpu_figures(
    server: Server, keys: dict[str, str], seconds: int, holders_n: int, rounds: int
) -> dict[str, Any]:
    """Each workload on ``plain`` then ``lots``, ``rounds`` times interleaved (a shared
    machine drifts): the lowest CPU per event of each, and every run's figures."""
    figures: dict[str, Any] = {}

    def to_holders(target: workloads.Target) -> Maker:
        return holders(target, holders_n)

    workload_makers: list[tuple[str, Callable[[workloads.Target], Maker], dict[str, Any]]] = [
        ("single events, 100k users", workloads.single, {}),
        ("batches of 100 events of one user", workloads.batch_one_user, {"users": 10_000}),
        ("single events, customers with 30 lots", to_holders, {}),
    ]
    for name, make, extra in workload_makers:
        for n in range(rounds):
            for slug, key in keys.items():
                target = workloads.Target("127.0.0.1", server.port, key,
                                          run=f"{slug}-{time.time_ns()}", **extra)  # fmt: skip
                log(f"{name} ({slug}, {seconds} s, round {n + 1}/{rounds})")
                found = cpu_per_event(server, target, make(target), seconds)
                runs = figures.setdefault(f"{slug}: {name}", {"runs": []})["runs"]
                runs.append(found)
                figures[f"{slug}: {name}"]["cpu_us_per_item"] = min(
                    r["cpu_us_per_item"] for r in runs
                )
    return figures


def server_figures(quick: bool) -> dict[str, Any]:
    seconds, holders_n = (10, 100) if quick else (25, 1000)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="perkamo-bench-lots-") as tmp:
        workdir = Path(tmp)
        pg = EmbeddedPostgres(workdir / "pg")
        url = pg.start()
        server = Server(url, workdir)
        try:
            found = spaces(url)
            server.start()
            for slug, (_, key) in found.items():
                log(f"seeding {holders_n:,} customers with 30 lots each ({slug})")
                seed_lots(server.base, key, holders_n, 30)
            keys = {slug: key for slug, (_, key) in found.items()}
            figures.update(_cpu_figures(server, keys, seconds, holders_n, 1 if quick else 3))
            plain_key, lots_id = found["plain"][1], found["lots"][0]
            for rate in ("2000", "20000"):
                server.stop()
                os.environ["PERKAMO_SWEEP_RATE"] = rate
                server.start()
                live = workloads.Target("127.0.0.1", server.port, plain_key, run=f"idle-{rate}")
                log("live traffic at 200/s with nothing due")
                tally, _ = drive(live, workloads.single(live), seconds, 32, rate=200)
                figures[f"live at 200/s, nothing due ({rate})"] = {
                    "live_p50": ms(tally.percentile(0.5)),
                    "live_p99": ms(tally.percentile(0.99)),
                }
                log(f"sweeping {DUE:,} due profiles at up to {rate}/s, live traffic at 200/s")
                live = workloads.Target("127.0.0.1", server.port, plain_key, run=f"live-{rate}")
                figures[f"sweep at up to {rate}/s"] = sweep(
                    url, server, lots_id, live, seconds * 2, rate
                )
        finally:
            os.environ.pop("PERKAMO_SWEEP_RATE", None)
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
            pg.stop()
    return figures


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench lots")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--base", default="main", help="the revision before lots")
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "engine": engine(args.base, 1000 if args.quick else 3000, 2 if args.quick else 4)
    }
    if not args.skip_server:
        results["server"] = server_figures(args.quick)
    print(json.dumps(results, indent=2))
