"""Writes bench/RESULTS.md from a run's figures, followed by bench/RESULTS-backtest.md (the
back-test measurements, ``python -m bench backtest``) and bench/notes.md (what was changed
and what each change bought — kept by hand, since a run cannot know it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def _ms(value: str) -> float:
    if value.endswith("us"):
        return float(value[:-2]) / 1000
    if value.endswith("ms"):
        return float(value[:-2])
    if value.endswith("s"):
        return float(value[:-1]) * 1000
    return float("nan")


def _hop(one: Any, several: Any, forwarded: float, seconds: float) -> tuple[float, float]:
    """(the forwarded share of the items, the CPU one forwarded item adds, both sides
    together, in µs): what N workers cost per item beyond one, over the items forwarded."""
    items = several.items_per_s * seconds
    share = forwarded / items if items else 0.0
    extra = several.cpu_us_per_item - one.cpu_us_per_item
    return share, (extra / share if share else 0.0)


def _workers_section(by_name: dict[str, Any], cluster: dict[str, Any] | None) -> list[str]:
    """Workers = 1 vs N side by side, the forwarding hop, the hand-over, the scaling."""
    if not cluster:
        return []
    n = cluster.get("workers", 2)
    pairs = [(by_name[one], by_name[two]) for one, two in (("1", "W1"), ("4", "W4"), ("3", "W3"))]
    members = cluster["members"]
    forwarded = sum(m.get("perkamo_forwarded_messages_total", 0) for m in members.values())
    answered = sum(m.get("perkamo_forwarded_answered_total", 0) for m in members.values())
    seconds = sum(m.get("perkamo_forwarded_seconds_total", 0) for m in members.values())
    per_run = cluster.get("forwarded", {})
    items = sum(two.items_per_s for _, two in pairs)
    share = forwarded / (items * cluster["seconds"]) if items else 0.0
    lines = [
        f"## Workers: 1 vs {n} (`perkamo serve --workers {n}`, same run)",
        "",
        "| workload | workers | requests/s | items/s | server CPU µs per item | N ÷ 1 | p50 | p99 "
        "| server CPU (all workers) | forwarded | hop CPU per forwarded item |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for one, two in pairs:
        fwd = per_run.get(two.name.split(" ", 1)[0], 0.0)
        fshare, hop = _hop(one, two, fwd, cluster["seconds"])
        for workers, r in ((1, one), (n, two)):
            ratio = r.cpu_us_per_item / one.cpu_us_per_item if one.cpu_us_per_item else 0
            lines.append(
                f"| {one.name.split(' ', 1)[1]} | {workers} | {r.requests_per_s:,.0f} "
                f"| {r.items_per_s:,.0f} | {r.cpu_us_per_item:,.0f} | {ratio:.2f}× | {r.p50} "
                f"| {r.p99} | {r.cpu_percent:.0f} % "
                + (f"| {fshare:.0%} | {hop:,.0f} µs |" if workers > 1 else "| | |")
            )
    lines += [
        "",
        f"- Forwarded to the owning worker: {forwarded:,.0f} messages ({share:.0%} of the "
        f"items of the three runs); mean round trip of the hop "
        f"{(seconds / answered * 1000) if answered else 0:.2f} ms.",
        *[
            f"- member {member}: {m.get('perkamo_shards_owned', 0):.0f} shards, forwarded "
            f"{m.get('perkamo_forwarded_messages_total', 0):,.0f}, served for the others "
            f"{m.get('perkamo_served_for_members_total', 0):,.0f}; hop p50 "
            f"{m.get('hop_p50', 0) * 1000:.2f} ms, "
            f"p99 {m.get('hop_p99', 0) * 1000:.2f} ms "
            f"(last 1,000); hand-over when the others joined "
            f"{m.get('perkamo_hand_over_last_seconds', 0):.2f} s "
            f"({m.get('perkamo_shards_handed_over_total', 0):.0f} shards)"
            for member, m in sorted(members.items())
        ],
        "- Hop CPU per forwarded item = (CPU per item with N workers − with one) ÷ the share "
        "of items forwarded: the encode, the frame, the decode and the answer back on both "
        "sides, plus whatever N processes competing for the same cores add.",
        "",
    ]
    lines += _scaling(by_name["7"], pairs, per_run, cluster["seconds"])
    return lines


def _scaling(echo: Any, pairs: list[tuple[Any, Any]], per_run: dict[str, float], seconds: float)\
        -> list[str]:  # fmt: skip
    """Predicted events/s for 1–16 workers from the per-item CPU measured here."""
    rows = []
    for one, two in pairs[:2]:
        _, hop = _hop(one, two, per_run.get(two.name.split(" ", 1)[0], 0.0), seconds)
        hop = max(hop, 0.0)
        c1 = one.cpu_us_per_item
        predicted = [w * 1e6 / (c1 + (1 - 1 / w) * hop) for w in (1, 2, 4, 8, 16)]
        receiver = min(echo.cpu_us_per_item / (100 if "batch" in one.name else 1), c1)
        rows.append(
            f"| {one.name.split(' ', 1)[1]} | {receiver:,.0f} | {c1 - receiver:,.0f} "
            f"| {hop:,.0f} | " + " | ".join(f"{p:,.0f}" for p in predicted) + " |"
        )
    return [
        "### Scaling, predicted from these per-item figures",
        "",
        "Each worker receives 1/N of the requests and owns 1/N of the profiles, so a share "
        "(1 − 1/N) of the items is forwarded; with the workers on N cores of their own "
        "(PostgreSQL and the clients elsewhere), events/s = N × 10⁶ ÷ (C₁ + (1 − 1/N) × H), "
        "C₁ the CPU per item with one worker (receiver + owner, µs), H the hop's CPU per "
        "forwarded item (both sides, µs). The receiver's share of C₁ is taken as the "
        "framework ceiling's CPU per request (the echo app: HTTP in and out, per request), "
        "the owner's as the rest. Measure the real curve on a bigger machine with "
        "`python -m bench run --workers N --cores C`.",
        "",
        "| workload | receiver µs | owner µs | hop µs | 1 worker | 2 | 4 | 8 | 16 |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _cluster_targets(by_name: dict[str, Any], cluster: dict[str, Any] | None) -> list[Any]:
    if not cluster:
        return []
    n, seconds, per_run = (
        cluster.get("workers", 2),
        cluster["seconds"],
        cluster.get("forwarded", {}),
    )
    out: list[Any] = []
    for one, several, what in (("1", "W1", "single events"), ("4", "W4", "distinct-user batches")):
        a, b = by_name[one], by_name[several]
        ratio = b.cpu_us_per_item / a.cpu_us_per_item if a.cpu_us_per_item else 0
        out.append((f"{n} workers ÷ 1 worker, total CPU per item, {what}: ≤ 1.15×",
                    f"{b.cpu_us_per_item:,.0f} ÷ {a.cpu_us_per_item:,.0f} µs = {ratio:.2f}×",
                    ratio <= 1.15))  # fmt: skip
        share, hop = _hop(a, b, per_run.get(several, 0.0), seconds)
        out.append((f"the hop, {what}: CPU per forwarded item (both sides) ≤ 100 µs",
                    f"{hop:,.0f} µs ({share:.0%} forwarded)", hop <= 100))  # fmt: skip
    return out


def _pinning(extra: dict[str, Any]) -> str:
    cores = extra.get("cores") or {}
    if not cores.get("server"):
        return ""
    return (f" Pinned (`--cores`): the server and PostgreSQL on cores {cores['server']}, the "
            f"load generator on {cores['load']}.")  # fmt: skip


def write(out: Path, results: list[Any], extra: dict[str, Any]) -> None:
    by_name = {r.name.split(" ", 1)[0]: r for r in results}
    single, batch, batch_one, hot = by_name["1"], by_name["4"], by_name["4u"], by_name["3"]
    paced, echo, hooked, baseline = by_name["1b"], by_name["7"], by_name["1w"], by_name["1a"]
    mixed, redeem = by_name["5"], by_name["6"]
    memory = extra["memory"]
    ratio = single.requests_per_s / echo.requests_per_s if echo.requests_per_s else 0
    half_ratio = paced.cpu_us_per_item / single.cpu_us_per_item if single.cpu_us_per_item else 0
    targets = [
        ("single events ≥ 70 % of the framework ceiling (stretch 75 %)", f"{ratio:.0%}",
         ratio >= 0.70),
        ("batches of 100 distinct users: ≤ 100 µs server CPU per event and ≥ 10,000 events/s",
         f"{batch.cpu_us_per_item:,.0f} µs, {batch.items_per_s:,.0f} events/s",
         batch.cpu_us_per_item <= 100 and batch.items_per_s >= 10_000),
        ("batches of 100 events of one user: ≤ 100 µs per event and ≥ 10,000 events/s",
         f"{batch_one.cpu_us_per_item:,.0f} µs, {batch_one.items_per_s:,.0f} events/s",
         batch_one.cpu_us_per_item <= 100 and batch_one.items_per_s >= 10_000),
        ("single events at half the maximum: p99 ≤ 25 ms, p50 ≤ 5 ms",
         f"p99 {paced.p99}, p50 {paced.p50}", _ms(paced.p99) <= 25 and _ms(paced.p50) <= 5),
        ("server CPU per request at half the maximum ÷ at the maximum ≤ 1.3×",
         f"{paced.cpu_us_per_item:,.0f} ÷ {single.cpu_us_per_item:,.0f} µs = {half_ratio:.2f}×",
         half_ratio <= 1.3),
        ("90 % events / 10 % reads: p99 ≤ 100 ms", mixed.p99, _ms(mixed.p99) <= 100),
        ("redemptions ≥ 700/s with p99 ≤ 150 ms",
         f"{redeem.requests_per_s:,.0f}/s, p99 {redeem.p99}",
         redeem.requests_per_s >= 700 and _ms(redeem.p99) <= 150),
        ("one hot profile ≥ 850 events/s", f"{hot.requests_per_s:,.0f} events/s",
         hot.requests_per_s >= 850),
        ("≤ 3 KiB per idle profile actor", f"{memory['idle_actor_bytes'] / 1024:.2f} KiB",
         memory["idle_actor_bytes"] <= 3 * 1024),
        (f"{memory['distinct']:,} profiles in ≤ 1 GiB RSS (cap {memory['cap']:,} resident)",
         f"peak {memory['rss_peak_mib']:.0f} MiB", memory["rss_peak_mib"] <= 1024),
        ("with a slow webhook receiver, single events within 10 % of without",
         f"{hooked.requests_per_s / baseline.requests_per_s:.0%} of the paired baseline (1a)",
         hooked.requests_per_s >= 0.9 * baseline.requests_per_s),
        ("start to ready ≤ 3 s on an existing data directory",
         f"{extra['ready_seconds']:.2f} s", extra["ready_seconds"] <= 3),
    ]  # fmt: skip
    targets += _cluster_targets(by_name, extra.get("cluster"))
    m = extra["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m bench run{' --quick' if extra['quick'] else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Re-run it to reproduce; "
        "absolute numbers drift on a shared machine, ratios measured side by side hold.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; Python {m['python']}, "
        f"Linux {m['kernel']}. PostgreSQL 18 (embedded wheel) on the same machine, fsync on, "
        "durable acknowledgement (a 200 means committed). The load generator "
        f"(bench/loadgen.py, {extra.get('clients', 2)} client processes) on 127.0.0.1, "
        f"{extra['connections']} connections, {extra['seconds']} s per workload; the server is "
        "one process (hypercorn trio worker), except the W rows: `perkamo serve --workers "
        f"{(extra.get('cluster') or {}).get('workers', 2)}`.{_pinning(extra)}",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *[f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in targets],
        "",
        "## Workloads",
        "",
        "| workload | requests/s | items/s | server CPU µs per item | p50 | p90 | p99 | errors "
        "| server CPU | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r.name} | {r.requests_per_s:,.0f} | {r.items_per_s:,.0f} "
            f"| {r.cpu_us_per_item:,.0f} | {r.p50} | {r.p90} | {r.p99} | {r.errors} "
            f"| {r.cpu_percent:.0f} % | {r.peak_rss_mib:.0f} MiB |"
            for r in results
        ],
        "",
        f"Single events reach **{ratio:.0%}** of the framework ceiling measured in the same run.",
        "Server CPU is the server process's user+system time over the run (100 % = one core); "
        "µs per item is that CPU time divided by the items answered (batch items: applied). "
        "Errors are answers other than 2xx plus connection failures and timeouts.",
        "",
        "How each workload was driven (the same generator as `python -m bench load`; the "
        "request shapes are in `bench/workloads.py`):",
        "",
        *[f"- {r.name}: `{r.command}`" + (f" ({r.note})" if r.note else "") for r in results],
        f"- memory: `{extra['memory_command']}`",
        "",
        "## Memory",
        "",
        f"- idle resident profile actor: {memory['idle_actor_bytes']:,.0f} bytes "
        f"({memory['resident']:,} actors resident)",
        f"- {memory['distinct']:,} distinct profiles with at most {memory['cap']:,} resident: "
        f"RSS {memory['rss_start_mib']:.0f} MiB at start, peak {memory['rss_peak_mib']:.0f} MiB, "
        f"{memory['passivations']:,} passivations, {memory['resident_after']:,} resident at the end",
        "",
    ]
    lines += _workers_section(by_name, extra.get("cluster"))
    for extra_file in (
        "RESULTS-backtest.md",
        "RESULTS-console.md",
        "RESULTS-failover.md",
        "RESULTS-lots.md",
        "RESULTS-moving.md",
        "RESULTS-streams.md",
        "notes.md",
    ):  # kept beside, by hand or by
        path = HERE / extra_file  # ``python -m bench backtest``
        if path.exists():
            lines += [path.read_text().rstrip(), ""]
    out.write_text("\n".join(lines))
