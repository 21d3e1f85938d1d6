"""``python -m bench console``: console pages at scale (CONSOLE.md: a Space with 1,000,000
events and 100,000 customers; every page under 200 ms server-side). Writes
``bench/RESULTS-console.md``, which ``python -m bench run`` includes in ``RESULTS.md``.

The history is generated in SQL (the pages read it; how it was applied does not matter to
them), then each page is requested 10 times through the real server on 127.0.0.1 with a
logged-in session; the figure is the time to the last byte as seen by the client, so it
includes the HTTP round trip on top of the server's work.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg

from perkamo.access import admin
from perkamo.configuration import store
from perkamo.console import security
from storage import EmbeddedPostgres
from storage import console as operators
from storage.migrations import migrate

from .run import HERE, Server, bench_program, log

OUTCOME = (
    '{"applied":true,"duplicate":false,"delta":[{"wallet":"points","amount":10}],'
    '"leveled_up":false,"unlocked":[],"wallet_state":{"points":100},"level":null,'
    '"event_id":"evt_%s","skipped":[],"breakdown":[{"source":"rule","key":"purchase_points",'
    '"wallet":"points","amount":10,"program_version":"demo"}],"program_versions":{}}'
)


def populate(url: str, events: int, customers: int) -> tuple[str, float]:
    """A Space with ``customers`` profiles and ``events`` events; returns (slug, seconds)."""
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        space = admin.create_space(conn, "scale", "Scale", "test")
        conn.commit()
        store(conn, space.id, "demo", bench_program(), True, "modules.{module}")
        conn.execute(
            "INSERT INTO profiles (space_id, user_id, traits, state, version, created_at,"
            " updated_at)"
            " SELECT %s, 'user-' || g, jsonb_build_object('plan', CASE WHEN g %% 3 = 0"
            " THEN 'premium' ELSE 'free' END, 'country', 'CZ'),"
            ' \'{"wallets": {"points": {"balance": 100, "earned": 100}}}\', 10,'
            " now() - interval '60 days', now() - make_interval(secs => g)"
            " FROM generate_series(1, %s) g",
            (space.id, customers),
        )
        conn.execute(
            "INSERT INTO events (space_id, transaction_id, user_id, event, context,"
            " occurred_at, received_at, request_hash, outcome, profile_version, position,"
            " event_id)"
            " SELECT %s, 'tx-' || g, 'user-' || (g %% %s + 1), 'purchase.completed',"
            ' \'{"amount": 12900, "currency": "CZK"}\', now() - make_interval(secs => g),'
            " now() - make_interval(secs => g), '\\x00', format(%s, g)::json, g / %s + 1, 0,"
            " 'evt_' || g FROM generate_series(1, %s) g",
            (space.id, customers, OUTCOME, customers, events),
        )
        conn.execute("ANALYZE events")
        conn.execute("ANALYZE profiles")
    return space.slug, time.perf_counter() - started


def login(base: str, url: str) -> httpx.Client:
    password = security.new_password()
    with psycopg.connect(url) as conn:
        operators.add_operator(
            conn, "bench@perkamo.local", "admin", security.hash_password(password)
        )
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
    form = client.get("/console/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    answer = client.post(
        "/console/login",
        data={"email": "bench@perkamo.local", "password": password, "csrf_token": token.group(1)},
        headers={"origin": base},
    )
    assert answer.status_code == 303, answer.text[:300]
    return client


def measure(client: httpx.Client, path: str, rounds: int = 10) -> dict[str, Any]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code in (200, 303), (path, answer.status_code, answer.text[:300])
    return {"path": path, "median_ms": statistics.median(times), "max_ms": max(times)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench console")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS-console.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perkamo-bench-console-") as tmp:
        workdir = Path(tmp)
        pg = EmbeddedPostgres(workdir / "pg")
        url = pg.start()
        server = Server(url, workdir)
        try:
            with psycopg.connect(url) as conn:
                migrate(conn)
            log(f"populating {args.events:,} events and {args.customers:,} customers (SQL)")
            slug, built = populate(url, args.events, args.customers)
            server.start()
            client = login(server.base, url)
            s = f"/console/spaces/{slug}"
            middle = f"user-{args.customers // 2}"
            first = client.get(s + "/events").text
            cursor = re.search(r"after=([^\"&]+)", first)
            pages = [
                ("Spaces", "/console/spaces"),
                ("Events, newest", s + "/events"),
                ("Events, next page", s + "/events?after=" + (cursor.group(1) if cursor else "")),
                ("Events, one customer", s + f"/events?user_id={middle}"),
                ("Events, one transaction", s + "/events?transaction_id=tx-500000"),
                ("Events, refused only", s + "/events?status=refused"),
                ("One event", s + "/events/tx-500000"),
                ("Customers, newest", s + "/customers"),
                ("Customers, id prefix", s + "/customers?q=" + quote("user-4999")),
                ("Customers, trait", s + "/customers?q=" + quote("plan=premium")),
                ("One customer (profile and ledger)", s + f"/customers/{middle}"),
                ("Find an evt_ id", s + "/find?q=evt_123456"),
                ("Usage", s + "/usage"),
                ("Program", s + "/program"),
                ("Audit log", "/console/audit"),
            ]
            log("measuring pages")
            results = [(name, measure(client, path)) for name, path in pages]
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
            pg.stop()
    write(args.out, args.events, args.customers, built, results)
    log(f"wrote {args.out}")


def write(out: Path, events: int, customers: int, built: float, results: list[Any]) -> None:
    worst = max(r["max_ms"] for _, r in results)
    lines = [
        "## Console pages at scale",
        "",
        f"Generated by `python -m bench console --events {events} --customers {customers}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, same machine: a Space with "
        f"{events:,} events and {customers:,} customers (generated in SQL in {built:.0f} s); "
        "each page requested 10 times through the real server with a logged-in session "
        "(client-side time to the last byte, so the HTTP round trip is included).",
        "",
        f"Target: every page under 200 ms server-side — slowest request measured "
        f"{worst:.0f} ms: **{'met' if worst < 200 else 'not met'}**.",
        "",
        "| page | median | slowest of 10 |",
        "|---|---|---|",
        *[f"| {name} | {r['median_ms']:.1f} ms | {r['max_ms']:.1f} ms |" for name, r in results],
        "",
    ]
    out.write_text("\n".join(lines))
