"""Program analytics: points issued, spent, expired and outstanding (the liability) per
wallet per day, active and new customers, the level distribution and the top rules — read from the
aggregates the ledger keeps (storage/analytics.py), never from the event log per view."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import trio
from quart import Response, current_app

from perkamo.console.charts import Series, bar_chart, line_chart
from perkamo.console.core import Page
from perkamo.profiles.paths import WALLETS
from perkamo.program import Program
from perkamo.runtime import Runtime
from storage import analytics as store

log = logging.getLogger(__name__)
RANGES = {"30": 30, "90": 90, "365": 365}
LEVELS_STALE = timedelta(minutes=5)
_refreshing: set[int] = set()  # Spaces whose level rollup is being recomputed here


async def analytics(page: Page) -> Response:
    assert page.space is not None
    days = RANGES.get(page.query.get("days", ""), 30)
    today = datetime.now(UTC).date()
    start = today - timedelta(days=days - 1)
    found = await page.runtime.db.run(store.analytics, page.space.id, start)
    program = await page.runtime.programs.get(page.space.id)
    names = {w.key: w.name for w in program.wallets}
    wallets = sorted({d.wallet for d in found.wallet_days} | set(found.opening))
    per_wallet = [
        _wallet(found, wallet, names.get(wallet, wallet), start, days) for wallet in wallets
    ]
    active = {a.day: a for a in found.activity}
    dates = [start + timedelta(n) for n in range(days)]

    def counted(field: str) -> list[tuple[date, Decimal]]:
        return [
            (d, Decimal(getattr(active[d], field)) if d in active else Decimal(0)) for d in dates
        ]

    activity = line_chart(
        "Customers per day",
        [Series("active", counted("active")), Series("new", counted("new"))],
        "day (UTC)",
        "customers",
    )
    rules = {r.key: r.name for r in program.rules}
    top = bar_chart(
        "Top rules by points awarded",
        [
            (rules.get(r.rule, r.rule) + f" ({names.get(r.wallet, r.wallet)})", r.awarded)
            for r in found.rules
        ],
        "rule",
        "awarded",
    )
    levels = await _levels(page.runtime, page.space.id, program)
    return page.render(
        "analytics.html",
        wallets=per_wallet,
        activity=activity,
        top=top,
        rules=found.rules,
        rule_names=rules,
        levels=levels,
        days=days,
        ranges=RANGES,
        start=start,
        today=today,
        active_total=sum(a.active for a in found.activity),
        new_total=sum(a.new for a in found.activity),
    )


def _wallet(
    found: store.Analytics, wallet: str, name: str, start: date, days: int
) -> dict[str, object]:
    """One wallet's issued, spent, expired and outstanding points per day, with its two
    charts (expired points leave the liability)."""
    rows = {d.day: d for d in found.wallet_days if d.wallet == wallet}
    outstanding = found.opening.get(wallet, Decimal(0))
    issued, spent, expired, liability = [], [], [], []
    zero = Decimal(0)
    for n in range(days):
        day = start + timedelta(n)
        row = rows.get(day)
        got, gone, lapsed = (row.issued, row.spent, row.expired) if row else (zero,) * 3
        outstanding += got - gone - lapsed
        issued.append((day, got))
        spent.append((day, gone))
        expired.append((day, lapsed))
        liability.append((day, outstanding))
    return {
        "name": name,
        "key": wallet,
        "outstanding": outstanding,
        "issued": sum((v for _, v in issued), zero),
        "spent": sum((v for _, v in spent), zero),
        "expired": sum((v for _, v in expired), zero),
        "flows": line_chart(
            f"{name}: issued, spent and expired per day",
            [Series("issued", issued), Series("spent", spent), Series("expired", expired)],
            "day (UTC)",
            name,
        ),
        "liability": line_chart(
            f"{name}: outstanding (the liability) at the end of each day",
            [Series("outstanding", liability)],
            "day (UTC)",
            name,
        ),
    }


async def _levels(runtime: Runtime, space_id: int, program: Program) -> dict[str, object]:
    """The last level rollup (refreshed in the background when stale or when the leveling
    version changed) as a chart with tier names."""
    if program.leveling is None:
        return {"chart": None, "computed_at": None, "refreshing": False}
    rollup = await runtime.db.run(store.level_rollup, space_id)
    version = program.versions.get("leveling")
    stale = (
        rollup is None
        or rollup.version != version
        or (datetime.now(UTC) - rollup.computed_at > LEVELS_STALE)
    )
    if stale and space_id not in _refreshing:
        _refreshing.add(space_id)
        nursery = getattr(current_app, "nursery", None)
        if nursery is not None:
            nursery.start_soon(_refresh, runtime, space_id, program)
        else:  # no app nursery (an in-process test client): computed before answering
            await _refresh(runtime, space_id, program)
            rollup = await runtime.db.run(store.level_rollup, space_id)
    names = {lv.level: lv.name or f"Level {lv.level}" for lv in program.leveling.levels}
    bars = []
    if rollup is not None:
        bars = [
            (f"{lv} {names.get(int(lv), '')}".strip(), Decimal(count))
            for lv, count in sorted(rollup.counts.items(), key=lambda kv: int(kv[0]))
        ]
    return {
        "chart": bar_chart("Customers per level", bars, "level", "customers"),
        "computed_at": rollup.computed_at if rollup else None,
        "refreshing": space_id in _refreshing,
    }


async def _refresh(runtime: Runtime, space_id: int, program: Program) -> None:
    assert program.leveling is not None
    leveling = program.leveling
    thresholds = [lv.at for lv in leveling.levels]
    try:
        await runtime.db.run(
            store.compute_levels,
            space_id,
            WALLETS.wallets,
            leveling.wallet,
            leveling.basis,
            thresholds,
            program.versions.get("leveling"),
        )
    except Exception:  # a failed rollup leaves the last one shown; the next view retries
        log.exception("level rollup failed")
    finally:
        _refreshing.discard(space_id)
        await trio.lowlevel.checkpoint()
