"""The benchmark: ``python -m bench run [--quick]`` writes ``bench/RESULTS.md``.

Starts ``perkamo serve`` against a fresh embedded PostgreSQL with a realistic program (the
demo program — all six modules — plus a top-up rule and a cheap reward for the redemption
workload), drives it with the load generator ``python -m bench load`` uses (separate client
processes, 127.0.0.1 only, every run bounded in time; bench/loadgen.py), samples the
server's CPU and RSS with psutil, measures the framework ceiling (a minimal quart-trio echo
app on the same hypercorn settings) in the same run, and measures actor memory in a
separate process. Durable acknowledgement, as always.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from perkamo.access import admin
from perkamo.configuration import demo_program, store
from storage import EmbeddedPostgres
from storage import spaces as space_store
from storage import webhooks as hook_store
from storage.migrations import migrate

from . import loadgen, workloads
from .loadgen import Maker, Tally

HERE = Path(__file__).parent
USERS = 100_000


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def bench_space(url: str) -> str:
    """Migrate, and create the Space ``bench`` with the bench program; returns its key."""
    with psycopg.connect(url) as conn:
        migrate(conn)
        space = admin.create_space(conn, "bench", "Bench", "test")
        _, key = admin.create_key(conn, space)
        # The bench measures the engine, not the per-key rate limit.
        space_store.set_limits(conn, "bench", {"rate": 10**9, "burst": 10**9})
        conn.commit()
        store(conn, space.id, "bench", bench_program(), True, "modules.{module}")
    return key


def bench_program() -> dict[str, Any]:
    modules = demo_program()[1]
    modules["events"]["rules"].append(
        {
            "key": "topup",
            "name": "Top up",
            "event": "topup",
            "award": [{"wallet": "points", "formula": "{{n}}"}],
        }  # fmt: skip
    )
    modules["wallets"]["rewards"].append(
        {
            "key": "sticker",
            "name": "Sticker",
            "cost": {"wallet": "points", "amount": 1},
            "effect": {"type": "sticker"},
        }  # fmt: skip
    )
    return modules


@dataclass
class Sampler:
    """Samples a process's RSS every 50 ms; CPU from cpu_times at start and stop."""

    pid: int
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _cpu0: float = 0.0
    _t0: float = 0.0
    cpu_percent: float = 0.0

    def _tree(self) -> list[psutil.Process]:
        """The server and its workers (``serve --workers N``): their CPU adds up."""
        proc = psutil.Process(self.pid)
        return [proc, *proc.children(recursive=True)]

    def _cpu(self) -> float:
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def _rss(self) -> int:
        total = 0
        for proc in self._tree():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def __enter__(self) -> Sampler:
        self._cpu0, self._t0 = self._cpu(), time.perf_counter()
        self.peak_rss = self._rss()

        def loop() -> None:
            while not self._stop.wait(0.05):
                self.peak_rss = max(self.peak_rss, self._rss())

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        elapsed = time.perf_counter() - self._t0
        self.cpu_percent = 100 * (self._cpu() - self._cpu0) / elapsed


@dataclass
class Result:
    name: str
    command: str
    requests_per_s: float
    items_per_s: float
    p50: str
    p90: str
    p99: str
    errors: int
    cpu_percent: float
    peak_rss_mib: float
    note: str = ""

    @property
    def cpu_us_per_item(self) -> float:
        """Server CPU seconds over the run ÷ items (µs): far steadier than throughput."""
        return self.cpu_percent / 100 / self.items_per_s * 1e6 if self.items_per_s else 0.0


def ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.2f}ms"


def drive(
    target: workloads.Target,
    make: Maker,
    seconds: int,
    connections: int,
    rate: float | None = None,
    clients: int = 2,
) -> tuple[Tally, str]:
    """Run one workload against ``target``; returns the tally and the equivalent command."""
    plan = loadgen.Plan(target.host, target.port, make, seconds, connections, rate, clients)
    tally = loadgen.run(plan)
    mode = f"--rate {rate:.0f}" if rate is not None else f"--connections {connections}"
    return tally, f"{mode} --duration {seconds}"


class Server:
    def __init__(
        self, url: str, workdir: Path, workers: int = 1, cpus: list[int] | None = None
    ) -> None:
        self.url, self.workdir, self.workers = url, workdir, workers
        self.cpus = cpus  # pinned to these cores (``taskset``), when given
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        env = {**os.environ, "PERKAMO_DATABASE_URL": self.url, "PERKAMO_LOG_LEVEL": "warning"}
        started = time.perf_counter()
        pin = ["taskset", "-c", ",".join(map(str, self.cpus))] if self.cpus else []
        self.proc = subprocess.Popen(
            [
                *pin,
                sys.executable,
                "-m",
                "perkamo",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.workdir),
                "--workers",
                str(self.workers),
            ],  # fmt: skip
            env=env,
        )
        with httpx.Client() as client:
            while time.perf_counter() - started < 60:
                try:
                    if client.get(self.base + "/readyz").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise SystemExit("the server did not become ready")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def seed(base: str, key: str) -> None:
    """Profiles the read and redemption workloads use."""
    headers = {"x-perkamo-api-key": key}
    with httpx.Client(timeout=60) as client:
        for start in range(0, 1000, 100):
            items = [{"user_id": f"reader-{n}", "event": "app.opened", "transaction_id": f"seed-r{n}"}
                     for n in range(start, start + 100)]  # fmt: skip
            client.post(base + "/v1/events:batch", json={"events": items}, headers=headers)
        funds: list[dict[str, Any]] = [
                 {"user_id": f"spender-{n}", "event": "topup", "transaction_id": f"seed-s{n}",
                  "context": {"n": 10**9}} for n in range(100)]  # fmt: skip
        client.post(base + "/v1/events:batch", json={"events": funds}, headers=headers)


def applied_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
    assert row is not None
    return int(row[0])


_BATCH = {"events": ("page.viewed",), "context": {"path": "/pricing"}}

# (name, workload maker, items per request, target overrides)
_WORKLOADS: list[tuple[str, Any, int, dict[str, Any]]] = [
    ("1 single events, 100k users, uniform", workloads.single, 1, {}),
    ("2 single events, Zipf-skewed users", workloads.zipf, 1,
     {"events": ("lesson.finished",), "context": {"lesson_id": 7}}),
    ("3 single events, one user", workloads.one_user, 1, {"events": ("app.opened",), "context": {}}),
    ("4 batches of 100 events, 100 distinct users", workloads.batch, 100, _BATCH),
    ("4u batches of 100 events of one user", workloads.batch_one_user, 100,
     {"events": ("page.viewed",), "context": {"path": "/pricing"}, "users": 10_000}),
    ("5 90 % events / 10 % profile reads", workloads.mixed, 1, {}),
    ("6 redemptions, 100 users", workloads.redeem, 1, {"reward": "sticker"}),
]  # fmt: skip


class Bench:
    """One run's server, database and results."""

    def __init__(self, url: str, server: Server, key: str, seconds: int, connections: int):
        self.url, self.server, self.key = url, server, key
        self.seconds, self.connections = seconds, connections
        self.results: list[Result] = []
        self.runs = 0
        self.clients = 2  # load generator processes
        self.last_tally = Tally()

    def target(self, **overrides: Any) -> workloads.Target:
        self.runs += 1
        base = {"host": "127.0.0.1", "port": self.server.port, "key": self.key,
                "users": USERS, "run": f"b{int(time.time())}-{self.runs}"}  # fmt: skip
        return workloads.Target(**{**base, **overrides})

    def measure(
        self,
        name: str,
        pid: int,
        target: workloads.Target,
        make: Maker,
        items: int = 1,
        rate: float | None = None,
        note: str = "",
    ) -> Result:
        log(f"workload {name} ({self.seconds} s)")
        before = applied_events(self.url) if items > 1 else 0
        with Sampler(pid) as sampler:
            tally, mode = drive(target, make, self.seconds, self.connections, rate, self.clients)
        self.last_tally = tally
        rps = tally.requests / self.seconds
        items_per_s = tally.items / self.seconds
        if items > 1:
            # Batch items the server refused (503 overloaded inside the 200) are not
            # throughput: count what the event log gained.
            applied = applied_events(self.url) - before
            refused = max(0, tally.items - applied)
            items_per_s = applied / self.seconds
            note = f"{applied:,} items applied, {refused:,} refused by admission"
        command = f"python -m bench load --workload … {mode}"
        result = Result(
            name, command, rps, items_per_s, ms(tally.percentile(0.5)),
            ms(tally.percentile(0.9)), ms(tally.percentile(0.99)), tally.failed + tally.refused,
            sampler.cpu_percent, sampler.peak_rss / 2**20, note,
        )  # fmt: skip
        self.results.append(result)
        return result


def _serve_workloads(bench: Bench, pid: int) -> None:
    for name, maker, items, overrides in _WORKLOADS:
        bench.measure(name, pid, bench.target(**overrides), maker(bench.target(**overrides)), items)
    half = bench.results[0].requests_per_s / 2
    bench.measure(
        f"1b single events at half the maximum rate ({half:.0f} req/s offered)",
        pid, bench.target(), workloads.single(bench.target()), rate=half,
        note="open loop: Poisson arrivals, latency counted from each request's due time",
    )  # fmt: skip
    # The webhook comparison is paired: a baseline run right before the webhook run, so
    # both see the same heap and the same number of resident profiles.
    bench.measure(
        "1a single events, no webhook (paired baseline for 1w)",
        pid, bench.target(), workloads.single(bench.target()),
    )  # fmt: skip
    hook_port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.slow_receiver", str(hook_port)])
    try:
        with psycopg.connect(bench.url) as conn:
            admin.set_webhook(conn, "bench", f"http://127.0.0.1:{hook_port}/hook")
        time.sleep(1.5)  # the server learns of the endpoint through NOTIFY
        bench.measure(
            "1w single events, slow webhook receiver (2 s per delivery)",
            pid, bench.target(), workloads.single(bench.target()),
            note="every event also queues a delivery to a receiver answering after 2 s",
        )  # fmt: skip
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(30)
        with psycopg.connect(bench.url) as conn:  # the later workloads run without one
            space = space_store.get_space(conn, "bench")
            assert space is not None
            hook_store.disable_endpoint(conn, space.id)
            conn.execute("UPDATE webhook_deliveries SET status = 'failed'"
                         " WHERE status IN ('pending', 'retrying')")  # fmt: skip


_SIDE_BY_SIDE = [  # the workloads run again with several workers
    ("1", "W1 single events, 100k users", workloads.single, 1, {}),
    ("4", "W4 batches of 100 events, 100 distinct users", workloads.batch, 100, _BATCH),
    ("3", "W3 single events, one user", workloads.one_user, 1,
     {"events": ("app.opened",), "context": {}}),
]  # fmt: skip


def _several_workers(bench: Bench, url: str, workdir: Path, workers: int) -> dict[str, Any]:
    """``serve --workers N`` on the same database: the side-by-side workloads, what the
    forwarding hop cost (the members' counters before and after each workload), and the
    hand-over when the workers joined."""
    log(f"{workers} workers (serve --workers {workers})")
    server = Server(url, workdir, workers=workers, cpus=bench.server.cpus)
    server.start()
    time.sleep(2)  # the shards settle between the workers
    bench.server, single = server, bench.server
    forwarded: dict[str, float] = {}
    try:
        assert server.proc is not None
        before = _forwarded(_member_metrics(server.base, workers))
        for _, name, maker, items, overrides in _SIDE_BY_SIDE:
            target = bench.target(**overrides)
            label = f"{name}, {workers} workers"
            bench.measure(label, server.proc.pid, target, maker(target), items)
            after = _forwarded(_member_metrics(server.base, workers))
            forwarded[label.split(" ", 1)[0]] = after - before
            before = after
        members = _member_metrics(server.base, workers)
    finally:
        server.stop()
        bench.server = single
    return {"members": members, "seconds": bench.seconds, "workers": workers,
            "forwarded": forwarded}  # fmt: skip


def _forwarded(members: dict[str, dict[str, float]]) -> float:
    return sum(m.get("perkamo_forwarded_messages_total", 0) for m in members.values())


def _member_metrics(base: str, workers: int) -> dict[str, dict[str, float]]:
    """The cluster figures each member reports (scraped until every worker has answered:
    the kernel spreads connections over the workers)."""
    wanted = ("perkamo_forwarded_messages_total", "perkamo_forwarded_answered_total",
              "perkamo_forwarded_seconds_total", "perkamo_served_for_members_total",
              "perkamo_shards_owned", "perkamo_hand_over_last_seconds",
              "perkamo_shards_handed_over_total", "perkamo_forward_latency_seconds")  # fmt: skip
    members: dict[str, dict[str, float]] = {}
    for _ in range(50 * workers):
        with httpx.Client() as client:  # a new connection: maybe another worker
            text = client.get(base + "/metrics").text
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name in wanted:
                labels, _, value = rest.rpartition("} ")
                member = labels.split('member="', 1)[1].split('"', 1)[0]
                key = name
                if 'quantile="0.5"' in labels:
                    key = "hop_p50"
                elif 'quantile="0.99"' in labels:
                    key = "hop_p99"
                members.setdefault(member, {})[key] = float(value)
        if len(members) >= workers:
            break
    return members


def _echo_ceiling(bench: Bench) -> None:
    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, "-m", "bench.echo_app", str(echo_port)])
    try:
        with httpx.Client() as client:
            for _ in range(300):
                try:
                    client.post(f"http://127.0.0.1:{echo_port}/echo", json={})
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
        target = bench.target(port=echo_port)
        bench.measure(
            "7 framework ceiling: quart-trio JSON echo", echo.pid, target, workloads.echo(target)
        )
    finally:
        echo.send_signal(signal.SIGTERM)
        echo.wait(30)


def _memory(quick: bool) -> tuple[dict[str, Any], str]:
    log("actor memory (separate process)")
    sizes = ["--actors", "100000", "--distinct", "1000000", "--cap", "100000"]
    if quick:
        sizes = ["--actors", "20000", "--distinct", "100000", "--cap", "20000"]
    memory = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bench.memory", *sizes],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        ).stdout  # fmt: skip
    )
    return memory, "python -m bench.memory " + " ".join(sizes)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench run")
    parser.add_argument("--quick", action="store_true", help="short runs (under two minutes)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--workers", type=int, default=2, help="workers of the W rows")
    parser.add_argument(
        "--cores", type=int, default=None,
        help="cores of this machine to use: the server and PostgreSQL on the first, the load "
        "generator pinned (taskset) to its own (a quarter, at least one)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    server_cpus, load_cpus = _cores(args.cores)
    seconds, connections = (5, 32) if args.quick else (20, 64)
    extra: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="perkamo-bench-") as tmp:
        workdir = Path(tmp)
        log("starting PostgreSQL (embedded) and loading the program")
        pg = EmbeddedPostgres(workdir / "pg")
        if server_cpus:  # PostgreSQL shares the server's cores
            os.sched_setaffinity(0, server_cpus)
        url = pg.start()
        if load_cpus:  # this process and the load generator's processes (forked from it)
            os.sched_setaffinity(0, load_cpus)
        server = Server(url, workdir, cpus=server_cpus)
        try:
            key = bench_space(url)
            server.start()
            seed(server.base, key)
            server.stop()
            extra["ready_seconds"] = server.start()  # existing data directory
            log(f"server ready in {extra['ready_seconds']:.2f} s on an existing database")
            assert server.proc is not None
            bench = Bench(url, server, key, seconds, connections)
            bench.clients = max(2, len(load_cpus or ()))
            _serve_workloads(bench, server.proc.pid)
            server.stop()
            extra["cluster"] = _several_workers(bench, url, workdir, args.workers)
            _echo_ceiling(bench)
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
            pg.stop()
    extra["memory"], extra["memory_command"] = _memory(args.quick)
    extra["connections"], extra["seconds"] = connections, seconds
    extra["cores"] = {"server": server_cpus, "load": load_cpus}
    extra["clients"] = bench.clients
    from .report import write

    write(args.out, bench.results, extra)
    log(f"wrote {args.out}")


def _cores(cores: int | None) -> tuple[list[int] | None, list[int] | None]:
    """(the server's and PostgreSQL's cores, the load generator's), or nothing pinned."""
    if cores is None:
        return None, None
    available = sorted(os.sched_getaffinity(0))
    if cores > len(available) or cores < 2:
        raise SystemExit(f"--cores {cores}: this machine offers {len(available)}")
    load = max(1, cores // 4)
    return available[: cores - load], available[cores - load : cores]
