"""An isolated group-commit flush: how many units per second the writer's statements take,
with no HTTP and no actors in the way.

    python -m bench.flush [--units 2000] [--rounds 5]

Each unit is what one new profile's first event stages: an event row, a new snapshot and a
usage increment. Runs against a fresh embedded PostgreSQL (fsync on) and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from storage import EmbeddedPostgres, EventRow, GroupCommitWriter, SnapshotWrite, Unit, connect
from storage.migrations import migrate


def units(space_id: int, n: int) -> list[Unit]:
    now = datetime.now(UTC)
    run = secrets.token_hex(4)
    made = []
    for i in range(n):
        user = f"u-{run}-{i}"
        outcome = '{"applied":true,"duplicate":false,"delta":[{"wallet":"points","amount":50}]}'
        event = EventRow(
            space_id, f"t-{run}-{i}", user, "purchase.completed",
            '{"amount":12900,"currency":"CZK"}', now, now, secrets.token_bytes(32), outcome, 1, 0,
        )  # fmt: skip
        state = '{"wallets":{"points":{"balance":50,"earned":50}},"rules":{"r":{"fired":1}}}'
        snapshot = SnapshotWrite(space_id, user, "{}", state, 0, now)
        made.append(
            Unit(
                {"events": [event]},
                snapshot,
                usage={(space_id, now.date().replace(day=1), "events"): 1},
            )
        )
    return made


def measure(url: str, size: int, rounds: int) -> dict[str, Any]:
    with connect(url) as conn:
        space_id = conn.execute(
            "INSERT INTO spaces (slug, name, environment) VALUES (%s, 'Flush', 'test')"
            " RETURNING id",
            (f"flush-{secrets.token_hex(3)}",),
        ).fetchone()[0]  # type: ignore[index]
        conn.commit()
    writer = GroupCommitWriter(url)
    seconds = []

    async def flush_all() -> None:
        for _ in range(rounds):
            batch = units(space_id, size)
            started = time.perf_counter()
            verdicts = await writer._flush(batch)  # the flush alone
            seconds.append(time.perf_counter() - started)
            assert all(v.status.value == "committed" for v in verdicts), verdicts[:3]
        writer._close_connection()

    trio.run(flush_all)
    best = min(seconds)
    return {"units_per_flush": size, "rounds": rounds, "best_seconds": best,
            "units_per_second": size / best, "median_seconds": sorted(seconds)[rounds // 2]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perkamo-flush-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        try:
            with connect(url) as conn:
                migrate(conn)
            print(json.dumps(measure(url, args.units, args.rounds)))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
