"""``python -m bench load``: load-test a running Perkamo server (yours, before a campaign).

    python -m bench load --url http://127.0.0.1:4000 --key sk_test_… \\
        [--workload single|batch|zipf|mixed|redeem|tokens] [--rate R | --connections C] \\
        [--duration S] [--users N] [--workers W] [--i-own-this-server]

Nothing is started and nothing is assumed about the program beyond the documented API: the
event names come from the server's ``GET /v1/program`` (its earning rules), the reward for
``redeem`` is its cheapest, and ``tokens`` mints browser tokens with a browser key it
creates (the key needs ``admin:config`` and ``browser:tokens``; ``--browser-key`` uses one
you have instead). Events are real: they are applied, counted against the Space's
usage and kept. Shows a live progress line and a summary table; exits 1 when any request
failed (5xx, connection errors, timeouts). Refuses a non-loopback URL unless
``--i-own-this-server`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from . import loadgen, workloads
from .loadgen import Tally


def _loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def _program(url: str, key: str) -> dict[str, Any]:
    request = urllib.request.Request(url + "/v1/program", headers={"x-perkamo-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            document: dict[str, Any] = json.load(response)
            return document
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")[:300]
        raise SystemExit(f"GET /v1/program answered {exc.code}: {body}") from None
    except OSError as exc:
        raise SystemExit(f"cannot reach {url}: {exc}") from None


def _browser_key(url: str, key: str) -> str:
    """A browser key for the tokens workload, created through the API."""
    body = json.dumps({"name": "bench load", "allowed_origins": ["https://bench.invalid"]})
    request = urllib.request.Request(
        url + "/v1/admin/browser-keys", data=body.encode(), method="POST",
        headers={"x-perkamo-api-key": key, "content-type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.load(response)["key"])
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"creating a browser key answered {exc.code}") from None


def target_for(url: str, key: str, users: int) -> workloads.Target:
    """A target from the server's own program: its rules' event names, its cheapest reward."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit("--url must be http://HOST[:PORT] (put TLS in front of the load tool)")
    blueprint = _program(url, key).get("blueprint", {})
    events = sorted(
        {r["event"] for r in blueprint.get("earningRules", []) if r.get("event") not in (None, "*")}
    ) or ["app.opened"]
    rewards = [r for r in blueprint.get("rewards", []) if r.get("active", True)]
    cheapest = min(rewards, key=lambda r: float(r["cost"]["amount"]), default=None)
    return workloads.Target(
        host=parts.hostname,
        port=parts.port or 80,
        key=key,
        users=users,
        events=tuple(events),
        context={"amount": 100},
        reward=None if cheapest is None else cheapest["key"],
        run=f"load-{int(time.time())}",
    )


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def progress_line(elapsed: float, window: Tally, total: Tally, window_seconds: float) -> str:
    rate = window.requests / window_seconds if window_seconds else 0.0
    return (
        f"{elapsed:6.1f} s  {rate:8,.0f} req/s  {total.requests:10,d} requests  "
        f"{total.failed:6,d} failed  {total.refused:6,d} refused  p99 {ms(total.percentile(0.99))}"
    )


def summary(total: Tally, seconds: float) -> str:
    rows = [
        ("requests", f"{total.requests:,d} ({total.requests / seconds:,.0f}/s)"),
        ("items", f"{total.items:,d} ({total.items / seconds:,.0f}/s)"),
        *[(f"p{q}", ms(total.percentile(q / 100))) for q in (50, 90, 99)],
        ("p99.9", ms(total.percentile(0.999))),
        ("failed", f"{total.failed:,d} (5xx, connection errors, timeouts)"),
        ("refused", f"{total.refused:,d} (4xx)"),
        *[(f"  {status}", f"{n:,d}") for status, n in sorted(total.statuses.items())],
        *[(f"  {error}", f"{n:,d}") for error, n in sorted(total.errors.items())],
        ("load tool CPU", f"{total.cpu_seconds / seconds:.0%} of a core"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:4000")
    parser.add_argument("--key", required=True, help="a secret key with events:write")
    parser.add_argument("--workload", choices=sorted(workloads.WORKLOADS), default="single")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=float, help="offered requests/s (open loop, Poisson)")
    mode.add_argument("--connections", type=int, help="closed loop with C connections")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    parser.add_argument("--users", type=int, default=100_000, help="distinct users")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--browser-key", help="tokens workload: mint for this browser key")
    parser.add_argument("--i-own-this-server", action="store_true", dest="owned")
    args = parser.parse_args(argv)
    host = urlsplit(args.url).hostname or ""
    if not args.owned and not _loopback(host):
        raise SystemExit(
            f"{host} is not a loopback address: load-test only servers you run; add "
            "--i-own-this-server to confirm this one is yours"
        )
    if args.duration <= 0 or args.duration > 3600 or args.users < 1:
        raise SystemExit("--duration must be in (0, 3600] seconds and --users at least 1")
    target = target_for(args.url.rstrip("/"), args.key, args.users)
    if args.workload == "tokens":
        browser_key = args.browser_key or _browser_key(args.url.rstrip("/"), args.key)
        target = dataclasses.replace(target, browser_key=browser_key)
    try:
        make = workloads.WORKLOADS[args.workload](target)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    connections = args.connections or 64
    plan = loadgen.Plan(
        target.host, target.port, make, args.duration, connections, args.rate, args.workers
    )
    offered = f"{args.rate:,.0f} req/s offered" if args.rate else f"{connections} connections"
    print(
        f"{args.workload} against {args.url} for {args.duration:.0f} s, {offered}, "
        f"events {', '.join(target.events)}"
        + (f", reward {target.reward}" if target.reward else "")
    )
    tty = sys.stdout.isatty()
    last = [0.0, 0.0]  # the previous update, the previous printed line (not a terminal)

    def show(elapsed: float, window: Tally, total: Tally) -> None:
        line = progress_line(elapsed, window, total, elapsed - last[0])
        last[0] = elapsed
        if tty:
            print("\r" + line, end="", flush=True)
        elif elapsed - last[1] >= 5:
            last[1] = elapsed
            print(line, flush=True)

    total = loadgen.run(plan, show)
    print("\n" if tty else "", end="")
    print(summary(total, args.duration))
    sys.exit(1 if total.failed else 0)
