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


def _workers_section(by_name: dict[str, Any], cluster: dict[str, Any] | None) -> list[str]:
    """Workers = 1 vs 2 side by side, the forwarding hop, the hand-over."""
    if not cluster:
        return []
    pairs = [(by_name[one], by_name[two]) for one, two in (("1", "W1"), ("4", "W4"), ("3", "W3"))]
    members = cluster["members"]
    forwarded = sum(m.get("perkamo_forwarded_messages_total", 0) for m in members.values())
    answered = sum(m.get("perkamo_forwarded_answered_total", 0) for m in members.values())
    seconds = sum(m.get("perkamo_forwarded_seconds_total", 0) for m in members.values())
    single_one, single_two = pairs[0]
    # Requests the W runs answered, over all three workloads (batch items forward per item).
    items = sum(two.items_per_s for _, two in pairs)
    share = forwarded / (items * cluster["seconds"]) if items else 0.0
    extra_cpu = single_two.cpu_us_per_item - single_one.cpu_us_per_item
    lines = [
        "## Workers: 1 vs 2 (`perkamo serve --workers 2`, same run)",
        "",
        "| workload | workers | requests/s | items/s | server CPU µs per item | p50 | p99 "
        "| server CPU (all workers) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for one, two in pairs:
        for workers, r in ((1, one), (2, two)):
            lines.append(
                f"| {one.name.split(' ', 1)[1]} | {workers} | {r.requests_per_s:,.0f} "
                f"| {r.items_per_s:,.0f} | {r.cpu_us_per_item:,.0f} | {r.p50} | {r.p99} "
                f"| {r.cpu_percent:.0f} % |"
            )
    lines += [
        "",
        f"- Forwarded to the owning worker: {forwarded:,.0f} messages ({share:.0%} of the "
        f"items of the three runs); mean round trip of the hop "
        f"{(seconds / answered * 1000) if answered else 0:.2f} ms.",
        *[
            f"- member {member}: {m.get('perkamo_shards_owned', 0):.0f} shards, forwarded "
            f"{m.get('perkamo_forwarded_messages_total', 0):,.0f}, served for the other "
            f"{m.get('perkamo_served_for_members_total', 0):,.0f}; hop p50 "
            f"{m.get('hop_p50', 0) * 1000:.2f} ms, "
            f"p99 {m.get('hop_p99', 0) * 1000:.2f} ms "
            f"(last 1,000); hand-over when the other joined "
            f"{m.get('perkamo_hand_over_last_seconds', 0):.2f} s "
            f"({m.get('perkamo_shards_handed_over_total', 0):.0f} shards)"
            for member, m in sorted(members.items())
        ],
        f"- Single events cost {extra_cpu:+,.0f} µs of server CPU per event with two workers "
        f"({single_one.cpu_us_per_item:,.0f} → {single_two.cpu_us_per_item:,.0f} µs): the hop "
        "(encode, one write on the internal connection, decode, answer back) on the "
        "forwarded share, plus two processes' fixed costs.",
        "",
    ]
    return lines


def write(out: Path, results: list[Any], extra: dict[str, Any]) -> None:
    by_name = {r.name.split(" ", 1)[0]: r for r in results}
    single, batch, batch_one, hot = by_name["1"], by_name["4"], by_name["4u"], by_name["3"]
    paced, echo, hooked, baseline = by_name["1b"], by_name["7"], by_name["1w"], by_name["1a"]
    mixed, redeem = by_name["5"], by_name["6"]
    memory = extra["memory"]
    ratio = single.requests_per_s / echo.requests_per_s if echo.requests_per_s else 0
    targets = [
        ("single events ≥ 70 % of the framework ceiling (stretch 75 %)", f"{ratio:.0%}",
         ratio >= 0.70),
        ("batches of 100 distinct users: ≤ 100 µs server CPU per event and ≥ 10,000 events/s",
         f"{batch.cpu_us_per_item:,.0f} µs, {batch.items_per_s:,.0f} events/s",
         batch.cpu_us_per_item <= 100 and batch.items_per_s >= 10_000),
        ("batches of 100 events of one user: ≤ 100 µs per event and ≥ 10,000 events/s",
         f"{batch_one.cpu_us_per_item:,.0f} µs, {batch_one.items_per_s:,.0f} events/s",
         batch_one.cpu_us_per_item <= 100 and batch_one.items_per_s >= 10_000),
        ("p99 ≤ 50 ms for single events at half the maximum", paced.p99, _ms(paced.p99) <= 50),
        ("90 % events / 10 % reads: p99 ≤ 150 ms", mixed.p99, _ms(mixed.p99) <= 150),
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
        "(bench/loadgen.py, two client processes) on 127.0.0.1, "
        f"{extra['connections']} connections, {extra['seconds']} s per workload; the server is "
        "one process (hypercorn trio worker), except the W rows: `perkamo serve --workers 2`.",
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
        "RESULTS-streams.md",
        "notes.md",
    ):  # kept beside, by hand or by
        path = HERE / extra_file  # ``python -m bench backtest``
        if path.exists():
            lines += [path.read_text().rstrip(), ""]
    out.write_text("\n".join(lines))
