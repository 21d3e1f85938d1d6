"""The benchmark: ``python -m bench run [--quick]`` writes ``bench/RESULTS.md``.

Starts ``perkamo serve`` against a fresh embedded PostgreSQL with a realistic program (the
demo program — all six modules — plus a top-up rule and a cheap reward for the redemption
workload), drives it from wrk (a separate process, 127.0.0.1 only, every run bounded in
time), samples the server's CPU and RSS with psutil, measures the framework ceiling (a
minimal quart-trio echo app on the same hypercorn settings) in the same run, and measures
actor memory in a separate process. Durable acknowledgement, as always.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
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

from perkamo.configuration import demo_program, store
from perkamo.ops import admin
from storage import EmbeddedPostgres
from storage import spaces as space_store
from storage.migrations import migrate

HERE = Path(__file__).parent
USERS = 100_000


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk is missing: installing it from the system packages (apt-get install wrk)")
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed; install it and run again")
    return found


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

    def __enter__(self) -> Sampler:
        proc = psutil.Process(self.pid)
        times = proc.cpu_times()
        self._cpu0, self._t0 = times.user + times.system, time.perf_counter()
        self.peak_rss = proc.memory_info().rss

        def loop() -> None:
            while not self._stop.wait(0.05):
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        times = psutil.Process(self.pid).cpu_times()
        elapsed = time.perf_counter() - self._t0
        self.cpu_percent = 100 * (times.user + times.system - self._cpu0) / elapsed


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


_LUA_HEADER = """
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end
function init(args)
  tid = wrk.thread:get("tid")
  run = os.time()
  counter = 0
  math.randomseed(run * 100 + tid)
end
"""


def lua(kind: str, key: str, pace_ms: float | None = None) -> str:
    headers = f'{{["x-perkamo-api-key"]="{key}", ["content-type"]="application/json"}}'
    tx = "run .. '-' .. tid .. '-' .. counter"
    bodies = {
        "uniform": f"""
  local user = math.random(0, {USERS - 1})
  local body = '{{"user_id":"user-' .. user .. '","event":"purchase.completed","transaction_id":"' .. {tx} .. '","context":{{"amount":12900,"currency":"CZK"}}}}'
  return wrk.format("POST", "/v1/events", {headers}, body)""",
        # Log-uniform ids: a Zipf-like skew (s ~ 1) where a few profiles are very hot.
        "zipf": f"""
  local user = math.floor(math.exp(math.random() * math.log({USERS})))
  local body = '{{"user_id":"user-' .. user .. '","event":"lesson.finished","transaction_id":"' .. {tx} .. '","context":{{"lesson_id":' .. (counter % 20) .. '}}}}'
  return wrk.format("POST", "/v1/events", {headers}, body)""",
        "one_user": f"""
  local body = '{{"user_id":"the-one","event":"app.opened","transaction_id":"' .. {tx} .. '"}}'
  return wrk.format("POST", "/v1/events", {headers}, body)""",
        "batch": f"""
  local items = {{}}
  for j = 1, 100 do
    local user = math.random(0, {USERS - 1})
    items[j] = '{{"user_id":"user-' .. user .. '","event":"page.viewed","transaction_id":"' .. {tx} .. '-' .. j .. '","context":{{"path":"/pricing"}}}}'
  end
  return wrk.format("POST", "/v1/events:batch", {headers}, '{{"events":[' .. table.concat(items, ",") .. ']}}')""",
        "batch_one_user": f"""
  local user = math.random(0, 9999)
  local items = {{}}
  for j = 1, 100 do
    items[j] = '{{"user_id":"buyer-' .. user .. '","event":"page.viewed","transaction_id":"' .. {tx} .. '-' .. j .. '","context":{{"path":"/pricing"}}}}'
  end
  return wrk.format("POST", "/v1/events:batch", {headers}, '{{"events":[' .. table.concat(items, ",") .. ']}}')""",
        "mixed": f"""
  local user = math.random(0, 999)
  if counter % 10 == 0 then
    return wrk.format("GET", "/v1/profile/reader-" .. user, {headers})
  end
  local body = '{{"user_id":"reader-' .. user .. '","event":"purchase.completed","transaction_id":"' .. {tx} .. '"}}'
  return wrk.format("POST", "/v1/events", {headers}, body)""",
        "redeem": f"""
  local user = math.random(0, 99)
  local body = '{{"user_id":"spender-' .. user .. '","reward_key":"sticker","transaction_id":"' .. {tx} .. '"}}'
  return wrk.format("POST", "/v1/rewards/redeem", {headers}, body)""",
        "echo": """
  local body = '{"user_id":"user-1","event":"purchase.completed","transaction_id":"' .. run .. '-' .. tid .. '-' .. counter .. '","context":{"amount":12900,"currency":"CZK"}}'
  return wrk.format("POST", "/echo", {["content-type"]="application/json"}, body)""",
    }
    script = (
        _LUA_HEADER + "request = function()\n  counter = counter + 1" + bodies[kind] + "\nend\n"
    )
    if pace_ms is not None:
        # Exponential gaps (Poisson arrivals) with the given mean: a fixed delay would make
        # every connection fire in lockstep, measuring bursts instead of the offered rate.
        script += f"function delay()\n  return -math.log(1 - math.random()) * {pace_ms:.3f}\nend\n"
    return script


def parse_wrk(output: str) -> dict[str, Any]:
    def latency(label: str) -> str:
        m = re.search(rf"^\s+{label}%\s+(\S+)", output, re.M)
        return m.group(1) if m else "?"

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": latency("50"),
        "p90": latency("90"),
        "p99": latency("99"),
        "errors": errors,
    }


def run_wrk(
    wrk: str, url: str, script: str, seconds: int, connections: int, workdir: Path, name: str
) -> tuple[dict[str, Any], str]:
    path = workdir / f"{name}.lua"
    path.write_text(script)
    # A 10 s client timeout: a 100-event batch under 64 connections legitimately queues
    # longer than wrk's default 2 s, which would count completed work as errors.
    command = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
               "-s", str(path), url]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    shown = (
        f"wrk -t2 -c{connections} -d{seconds}s --timeout 10s --latency"
        f" -s bench/lua/{name}.lua {url}"
    )
    return parse_wrk(out), shown


class Server:
    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        env = {**os.environ, "PERKAMO_DATABASE_URL": self.url, "PERKAMO_LOG_LEVEL": "warning"}
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [
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
        items = [{"user_id": f"spender-{n}", "event": "topup", "transaction_id": f"seed-s{n}",
                  "context": {"n": 10**9}} for n in range(100)]  # fmt: skip
        client.post(base + "/v1/events:batch", json={"events": items}, headers=headers)


def applied_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
    assert row is not None
    return int(row[0])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench run")
    parser.add_argument("--quick", action="store_true", help="short runs (under two minutes)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    seconds, connections = (5, 32) if args.quick else (20, 64)
    wrk = ensure_wrk()
    results: list[Result] = []
    extra: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="perkamo-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "lua").mkdir()
        log("starting PostgreSQL (embedded) and loading the program")
        pg = EmbeddedPostgres(workdir / "pg")
        url = pg.start()
        server = Server(url, workdir)
        echo: subprocess.Popen[bytes] | None = None
        try:
            with psycopg.connect(url) as conn:
                migrate(conn)
                space = admin.create_space(conn, "bench", "Bench", "test")
                _, key = admin.create_key(conn, space)
                # The bench measures the engine, not the per-key rate limit.
                space_store.set_limits(conn, "bench", {"rate": 10**9, "burst": 10**9})
                conn.commit()
                store(conn, space.id, "bench", bench_program(), True, "modules.{module}")
            server.start()
            seed(server.base, key)
            server.stop()
            extra["ready_seconds"] = server.start()  # existing data directory
            log(f"server ready in {extra['ready_seconds']:.2f} s on an existing database")
            assert server.proc is not None
            workloads = [
                ("1 single events, 100k users, uniform", "uniform", 1),
                ("2 single events, Zipf-skewed users", "zipf", 1),
                ("3 single events, one user", "one_user", 1),
                ("4 batches of 100 events", "batch", 100),
                ("5 90 % events / 10 % profile reads", "mixed", 1),
                ("6 redemptions, 100 users", "redeem", 1),
            ]

            def measure(
                name: str,
                pid: int,
                base: str,
                script: str,
                file: str,
                items: int = 1,
                note: str = "",
            ) -> Result:
                log(f"workload {name} ({seconds} s)")
                before = applied_events(url) if items > 1 else 0
                with Sampler(pid) as sampler:
                    parsed, command = run_wrk(
                        wrk, base, script, seconds, connections, workdir / "lua", file
                    )
                items_per_s = parsed["rps"] * items
                if items > 1:
                    # Batch items the server refused (503 overloaded inside the 200) are not
                    # throughput: count what the event log gained.
                    applied = applied_events(url) - before
                    refused = max(0, round(parsed["rps"] * seconds * items) - applied)
                    items_per_s = applied / seconds
                    note = f"{applied:,} items applied, about {refused:,} refused by admission"
                result = Result(
                    name, command, parsed["rps"], items_per_s, parsed["p50"],
                    parsed["p90"], parsed["p99"], parsed["errors"], sampler.cpu_percent,
                    sampler.peak_rss / 2**20, note,
                )  # fmt: skip
                results.append(result)
                return result

            pid = server.proc.pid
            for name, kind, items in workloads:
                measure(name, pid, server.base, lua(kind, key), kind, items)
            half = results[0].requests_per_s / 2
            pace = connections / half * 1000
            measure(
                f"1b single events at half the maximum rate ({half:.0f} req/s offered)",
                pid, server.base, lua("uniform", key, pace), "uniform_paced",
                note=f"paced: each connection waits {pace:.1f} ms on average (exponential gaps)",
            )  # fmt: skip
            # The webhook comparison is paired: a baseline run right before the webhook run,
            # so both see the same heap and the same number of resident profiles.
            measure(
                "1a single events, no webhook (paired baseline for 1w)",
                pid, server.base, lua("uniform", key), "uniform_baseline",
            )  # fmt: skip
            hook_port = free_port()
            receiver = subprocess.Popen(
                [sys.executable, "-m", "bench.slow_receiver", str(hook_port)]
            )
            try:
                with psycopg.connect(url) as conn:
                    admin.set_webhook(conn, "bench", f"http://127.0.0.1:{hook_port}/hook")
                time.sleep(1.5)  # the server learns of the endpoint through NOTIFY
                measure(
                    "1w single events, slow webhook receiver (2 s per delivery)",
                    pid, server.base, lua("uniform", key), "uniform_webhook",
                    note="every event also queues a delivery to a receiver answering after 2 s",
                )  # fmt: skip
            finally:
                receiver.send_signal(signal.SIGTERM)
                receiver.wait(30)
            server.stop()
            echo_port = free_port()
            echo = subprocess.Popen([sys.executable, "-m", "bench.echo_app", str(echo_port)])
            echo_base = f"http://127.0.0.1:{echo_port}"
            with httpx.Client() as client:
                for _ in range(300):
                    try:
                        client.post(echo_base + "/echo", json={})
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
            measure(
                "7 framework ceiling: quart-trio JSON echo",
                echo.pid, echo_base, lua("echo", key), "echo",
            )  # fmt: skip
        finally:
            if echo is not None:
                echo.send_signal(signal.SIGTERM)
                echo.wait(30)
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
            pg.stop()
    log("actor memory (separate process)")
    sizes = ["--actors", "100000", "--distinct", "1000000", "--cap", "100000"]
    if args.quick:
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
    extra["memory"] = memory
    extra["memory_command"] = "python -m bench.memory " + " ".join(sizes)
    from .report import write

    write(args.out, results, extra)
    log(f"wrote {args.out}")
