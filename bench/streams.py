"""``python -m bench streams``: live streams at scale (docs/api.md "The browser half") — writes
``bench/RESULTS-streams.md``, which ``python -m bench run`` includes in ``RESULTS.md``.

One ``perkamo serve`` process on a fresh embedded PostgreSQL, in one run:

0. minting browser tokens, closed loop, and the framework's JSON echo app (bench/echo_app.py)
   beside it — server CPU per request, so figures compare on a shared machine;
1. single-event ingestion (closed loop, 100,000 users) with no stream open;
2. ``--streams`` live streams opened by load-generator processes (a trio program each,
   ``--per-process`` streams apiece; every stream its own customer, its token minted like a
   shop's backend would) — the server's RSS before and after;
3. ``--rate`` events per second to streamed customers (open loop): commit → delivery
   latency, measured from the event's send time to its change's arrival (an upper bound:
   it includes the event's own request);
4. single-event ingestion again, the streams idle and open: the ratio to 1.

Stream tokens are asked for with ``--ttl`` (the server clamps stream tokens to 300 s): a
stream that expires mints a fresh token and opens again; re-opens and mints per second are
reported apart from keep-alives. Loopback only; every phase is bounded in time and the
load generators stop by themselves at their deadline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from storage import EmbeddedPostgres

from . import loadgen, stream_holder, workloads
from .run import HERE, USERS, Server, bench_space, free_port, log, machine, ms

TARGETS = {"rss_mib": 500.0, "p99_ms": 100.0, "ratio": 0.90}


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def _browser_key(base: str, key: str) -> str:
    body = {"name": "bench streams", "allowed_origins": ["http://localhost:*"],
            "allowed_events": ["*"], "rate": {"per_second": 10_000, "burst": 10_000}}  # fmt: skip
    answer = httpx.post(
        base + "/v1/admin/browser-keys", json=body, headers={"x-perkamo-api-key": key}
    )
    answer.raise_for_status()
    return str(answer.json()["key"])


def _ingest(
    target: workloads.Target, seconds: int, connections: int, pid: int
) -> tuple[float, str, float]:
    """Closed-loop single events: req/s, p99, and the server's CPU µs per request (less
    moved by the other work on a shared machine than req/s)."""
    process = psutil.Process(pid)
    before = sum(process.cpu_times()[:2])
    make = workloads.single(target)
    tally = loadgen.run(loadgen.Plan(target.host, target.port, make, seconds, connections, None))
    cpu = sum(process.cpu_times()[:2]) - before
    return tally.requests / seconds, ms(tally.percentile(0.99)), cpu / max(tally.requests, 1) * 1e6


def _closed_loop(port: int, make: loadgen.Maker, seconds: int, pid: int) -> tuple[float, float]:
    """req/s over 32 connections, and the serving process's CPU µs per request."""
    process = psutil.Process(pid)
    before = sum(process.cpu_times()[:2])
    tally = loadgen.run(loadgen.Plan("127.0.0.1", port, make, seconds, 32, None))
    cpu = sum(process.cpu_times()[:2]) - before
    return tally.requests / seconds, cpu / max(tally.requests, 1) * 1e6


def _tokens_vs_echo(
    server_port: int, pid: int, key: str, browser_key: str, seconds: int
) -> dict[str, float]:
    """Minting browser tokens next to the framework's JSON echo (bench/echo_app.py), side by
    side in the same run (the ``bench load --workload tokens`` requests)."""
    target = workloads.Target("127.0.0.1", server_port, key, users=USERS, browser_key=browser_key)
    mint_rps, mint_us = _closed_loop(server_port, workloads.tokens(target), seconds, pid)
    port = free_port()
    echo = subprocess.Popen([sys.executable, "-m", "bench.echo_app", str(port)])
    try:
        for _ in range(200):
            try:
                httpx.post(f"http://127.0.0.1:{port}/echo", json={})
                break
            except httpx.TransportError:
                time.sleep(0.05)
        echo_target = workloads.Target("127.0.0.1", port, key, run="echo")
        echo_rps, echo_us = _closed_loop(port, workloads.echo(echo_target), seconds, echo.pid)
    finally:
        echo.send_signal(signal.SIGTERM)
        echo.wait(30)
    return {"mint_rps": mint_rps, "mint_cpu_us": mint_us, "echo_rps": echo_rps,
            "echo_cpu_us": echo_us, "mint_per_core": 1e6 / mint_us, "echo_per_core": 1e6 / echo_us}  # fmt: skip


class Holders:
    """The load-generator processes holding the streams, and what they report."""

    def __init__(self, plans: list[stream_holder.Plan]) -> None:
        self.pipes = []
        self.processes = []
        context = multiprocessing.get_context("fork")
        for plan in plans:
            parent, child = context.Pipe(duplex=False)
            process = context.Process(target=stream_holder.run, args=(plan, child), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        self.latest: list[dict[str, Any]] = [{} for _ in plans]
        self.latencies: list[float] = []
        self.collecting = False

    def poll(self, seconds: float) -> None:
        """Read reports for ``seconds``."""
        end = time.time() + seconds
        while time.time() < end:
            for i, pipe in enumerate(self.pipes):
                while pipe.poll():
                    report = pipe.recv()
                    if report is None:
                        continue
                    if self.collecting:
                        self.latencies += report["latencies"]
                    self.latest[i] = report
            time.sleep(0.05)

    def total(self, name: str) -> int:
        return sum(int(r.get(name, 0)) for r in self.latest)

    def errors(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for report in self.latest:
            for what, n in report.get("errors", {}).items():
                merged[what] = merged.get(what, 0) + n
        return merged

    def stop(self) -> None:
        for process in self.processes:
            process.join(timeout=15)
            if process.is_alive():
                process.kill()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    pg = EmbeddedPostgres(workdir / "pg")
    url = pg.start()
    server = Server(url, workdir)
    try:
        key = bench_space(url)
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        browser_key = _browser_key(server.base, key)
        log(f"0 minting browser tokens vs the framework's echo ({args.seconds} s each)")
        tokens = _tokens_vs_echo(server.port, pid, key, browser_key, args.seconds)
        log(f"   {tokens['mint_per_core']:,.0f} vs {tokens['echo_per_core']:,.0f} per core-second")
        target = workloads.Target("127.0.0.1", server.port, key, users=USERS, run="base")
        log(f"1 single events without streams ({args.seconds} s)")
        without, p99_without, cpu_without = _ingest(target, args.seconds, args.connections, pid)
        log(f"   {without:,.0f} req/s")
        idle_rss = _rss(pid)
        count, per = args.streams, args.per_process
        deadline = time.time() + 60 + count / 300 + 3 * args.seconds + 60
        plans = [
            stream_holder.Plan(
                "127.0.0.1",
                server.port,
                key,
                browser_key,
                [f"stream-{n}" for n in range(start, min(start + per, count))],
                args.ttl,
                deadline,
            )  # fmt: skip
            for start in range(0, count, per)
        ]
        log(f"2 opening {count:,} streams from {len(plans)} load-generator processes")
        holders = Holders(plans)
        opened_at = time.time()
        while holders.total("opened") < count and time.time() - opened_at < 60 + count / 200:
            holders.poll(1.0)
        open_seconds = time.time() - opened_at
        holders.poll(3.0)
        streams_rss = _rss(pid)
        opened = holders.total("opened")
        log(
            f"   {opened:,} open after {open_seconds:.1f} s; RSS +{(streams_rss - idle_rss) / 2**20:.0f} MiB"
        )
        log(f"3 {args.rate:.0f} events/s to streamed customers ({args.seconds} s)")
        streamed = workloads.Target("127.0.0.1", server.port, key, run="lat",
                                    context={"amount": 100})  # fmt: skip
        holders.collecting = True
        changes_before = holders.total("changes")
        sent = loadgen.run(loadgen.Plan(
            "127.0.0.1", server.port, workloads.streamed(streamed, count), args.seconds, 16,
            args.rate,
        ))  # fmt: skip
        holders.poll(2.0)
        holders.collecting = False
        latencies = holders.latencies
        changes = holders.total("changes") - changes_before
        log(f"   {sent.requests:,} events sent, {changes:,} changes delivered, p99 "
            f"{ms(_percentile(latencies, 0.99))}")  # fmt: skip
        log(f"4 single events with the streams open ({args.seconds} s)")
        target = workloads.Target("127.0.0.1", server.port, key, users=USERS, run="with")
        with_streams, p99_with, cpu_with = _ingest(target, args.seconds, args.connections, pid)
        log(f"   {with_streams:,.0f} req/s")
        holders.poll(0.5)
        elapsed = time.time() - opened_at
        figures = {
            "streams": count, "opened": opened, "open_seconds": round(open_seconds, 1),
            "processes": len(plans), "ttl_asked": args.ttl, "ttl_granted": min(args.ttl, 300),
            "idle_rss_mib": idle_rss / 2**20, "streams_rss_mib": streams_rss / 2**20,
            "rss_added_mib": (streams_rss - idle_rss) / 2**20,
            "kib_per_stream": (streams_rss - idle_rss) / 1024 / max(opened, 1),
            "rate": args.rate, "events_sent": sent.requests, "changes_delivered": changes,
            "send_failures": sent.failed + sent.refused,
            "event_request_p50_ms": _ms(sent.percentile(0.5)),
            "event_request_p99_ms": _ms(sent.percentile(0.99)),
            "p50_ms": _ms(_percentile(latencies, 0.5)), "p99_ms": _ms(_percentile(latencies, 0.99)),
            "max_ms": _ms(max(latencies, default=None)),
            "without_rps": without, "with_rps": with_streams, "ratio": with_streams / without,
            "p99_without": p99_without, "p99_with": p99_with,
            "cpu_us_without": round(cpu_without), "cpu_us_with": round(cpu_with),
            "cpu_ratio": cpu_without / cpu_with if cpu_with else None,
            "reopens": holders.total("reopens"), "mints": holders.total("mints"),
            "mints_per_second": holders.total("mints") / elapsed,
            "reopens_per_second": holders.total("reopens") / elapsed,
            "keep_alives": holders.total("keep_alives"),
            "keep_alives_per_second": holders.total("keep_alives") / elapsed,
            "errors": holders.errors(), "seconds": args.seconds, "connections": args.connections,
            "tokens": tokens,
        }  # fmt: skip
        server.stop()
        holders.stop()
        return figures
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
        pg.stop()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def write(out: Path, f: dict[str, Any], command: str) -> None:
    met = {
        "rss": f["rss_added_mib"] <= TARGETS["rss_mib"],
        "p99": f["p99_ms"] is not None and f["p99_ms"] <= TARGETS["p99_ms"],
        "ratio": f["ratio"] >= TARGETS["ratio"],
    }
    yes = {True: "yes", False: "**no**"}
    t = f["tokens"]
    lines = [
        "## Live streams",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{f['machine']['cpu']}, {f['machine']['cores']} cores (shared with other engineers' "
        "work: figures move between runs). One server process, the load generators on the "
        f"same cores ({f['processes']} trio processes holding the streams, loopback only).",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| {f['streams']:,} open streams in one process add ≤ 500 MiB RSS | "
        f"+{f['rss_added_mib']:.0f} MiB ({f['kib_per_stream']:.1f} KiB per stream; "
        f"{f['opened']:,} open after {f['open_seconds']} s) | {yes[met['rss']]} |",
        f"| commit → stream delivery p99 ≤ 100 ms at {f['rate']:.0f} events/s to streamed "
        f"customers | p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, max {f['max_ms']} ms "
        f"({f['changes_delivered']:,} changes of {f['events_sent']:,} events; the events' own "
        f"requests: p50 {f['event_request_p50_ms']} ms, p99 {f['event_request_p99_ms']} ms) "
        f"| {yes[met['p99']]} |",
        f"| single-event ingestion with the streams open ≥ 90 % of without (same run) | "
        f"{f['with_rps']:,.0f} vs {f['without_rps']:,.0f} req/s = {f['ratio']:.0%} "
        f"(p99 {f['p99_with']} vs {f['p99_without']}); server CPU per request "
        f"{f['cpu_us_with']} vs {f['cpu_us_without']} µs = {f['cpu_ratio']:.0%} of the "
        f"throughput on a core of its own | {yes[met['ratio']]} |",
        f"| minting browser tokens ≥ 2,000/s on one core, ≥ 90 % of the framework's echo "
        f"| {t['mint_rps']:,.0f} minted/s at {t['mint_cpu_us']:,.0f} µs of server CPU each = "
        f"{t['mint_per_core']:,.0f}/s on a core of its own; the echo app (bench/echo_app.py), "
        f"same run: {t['echo_rps']:,.0f}/s at {t['echo_cpu_us']:,.0f} µs = "
        f"{t['echo_per_core']:,.0f}/s; minting = {t['mint_per_core'] / t['echo_per_core']:.0%} "
        f"of the echo | {yes[t['mint_per_core'] >= 2000 and t['mint_per_core'] >= 0.9 * t['echo_per_core']]} |",
        "",
        f"Stream tokens asked for {f['ttl_asked']} s (granted {f['ttl_granted']} s). Over the "
        f"run: {f['reopens']:,} re-opens ({f['reopens_per_second']:.1f}/s: a fresh token after `expired`, or a connection the load generator saw reset), "
        f"{f['mints']:,} tokens minted ({f['mints_per_second']:.1f}/s, the first opens "
        f"included), {f['keep_alives']:,} keep-alives ({f['keep_alives_per_second']:.0f}/s). "
        f"Load-generator errors: {f['errors'] or 'none'}. Latency is measured from the "
        "event's send time (in its transaction id) to its change's arrival: an upper bound "
        "of commit → delivery, as it includes the event's own request.",
        "",
        f"The raw figures: `{json.dumps(f)}`",
        "",
    ]
    out.write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench streams")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--per-process", type=int, default=2_500, help="streams per generator")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s to streamed customers")
    parser.add_argument("--seconds", type=int, default=20, help="each measured phase")
    parser.add_argument("--connections", type=int, default=64, help="ingestion phases")
    parser.add_argument("--ttl", type=int, default=300, help="stream tokens asked for (s)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS-streams.md")
    args = parser.parse_args(argv)
    if not 1 <= args.streams <= 15_000 or not 1 <= args.seconds <= 120:
        raise SystemExit("--streams must be 1-15,000 and --seconds 1-120")
    command = "python -m bench streams " + " ".join(argv)
    with tempfile.TemporaryDirectory(prefix="perkamo-streams-") as tmp:
        figures = bench(args, Path(tmp))
    figures["machine"] = machine()
    write(args.out, figures, command.strip())
    log(f"wrote {args.out}")
