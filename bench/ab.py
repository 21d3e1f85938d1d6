"""``python -m bench ab``: a few workloads of ``bench run``, short, for side-by-side A/B runs.

    python -m bench ab [--only 1,1b,4,5,W1,W4] [--seconds 10] [--rate R]

Starts a fresh embedded PostgreSQL and ``perkamo serve`` from the current directory's code
(run it from each tree to compare two commits; interleave the runs), and prints one JSON line
per workload: requests and items per second, server CPU µs per item, p50 and p99. ``1b`` is
offered half of what ``1`` reached in the same run (or ``--rate``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from storage import EmbeddedPostgres

from . import workloads
from .run import Bench, Server, bench_space, log, seed

_BATCH = {"events": ("page.viewed",), "context": {"path": "/pricing"}}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench ab")
    parser.add_argument("--only", default="1,1b,4")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    wanted = args.only.split(",")
    with tempfile.TemporaryDirectory(prefix="perkamo-ab-") as tmp:
        workdir = Path(tmp)
        pg = EmbeddedPostgres(workdir / "pg")
        url = pg.start()
        server = Server(url, workdir)
        try:
            key = bench_space(url)
            server.start()
            seed(server.base, key)
            assert server.proc is not None
            bench = Bench(url, server, key, args.seconds, args.connections)
            rate = args.rate
            for name in [w for w in wanted if not w.startswith("W")]:
                rate = _one(bench, server.proc.pid, name, rate)
            server.stop()
            if any(w.startswith("W") for w in wanted):
                two = Server(url, workdir, workers=2)
                two.start()
                time.sleep(2)
                bench.server = two
                try:
                    assert two.proc is not None
                    for name in [w for w in wanted if w.startswith("W")]:
                        _one(bench, two.proc.pid, name, None)
                finally:
                    two.stop()
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
            pg.stop()


def _one(bench: Bench, pid: int, name: str, rate: float | None) -> float | None:
    base = name.removeprefix("W")
    if base in ("1", "1b"):
        target = bench.target()
        make, items = workloads.single(target), 1
    elif base == "4":
        target = bench.target(**_BATCH)
        make, items = workloads.batch(target), 100
    elif base == "5":
        target = bench.target()
        make, items = workloads.mixed(target), 1
    else:
        raise SystemExit(f"unknown workload {name}")
    paced = rate / 2 if base == "1b" and rate is not None else None
    result = bench.measure(name, pid, target, make, items, rate=paced)
    log(name)
    print(
        json.dumps(
            {
                "workload": name,
                "rps": round(result.requests_per_s),
                "items_per_s": round(result.items_per_s),
                "cpu_us": round(result.cpu_us_per_item),
                "cpu_percent": round(result.cpu_percent),
                "p50": result.p50,
                "p99": result.p99,
                "errors": result.errors,
                "failures": _failures(bench),
                "offered": paced,
            }
        ),  # fmt: skip
        flush=True,
    )
    return result.requests_per_s if base == "1" else rate


def _failures(bench: Bench) -> dict[str, int]:
    """What the answers other than 2xx were (status and code; connection errors)."""
    tally = bench.last_tally
    return {**{k: v for k, v in tally.statuses.items() if not k.startswith("2")}, **tally.errors}
