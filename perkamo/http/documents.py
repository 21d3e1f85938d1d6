"""The documents the API returns about a profile and a program, rendered by pure functions
from the stored state, the program and the server's clock at read time (passed in)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from perkamo.profiles import ProfileView
from perkamo.program import Program
from perkamo.program.engine import (
    boost_applies,
    criterion_current,
    level_document,
    level_number,
    number,
    period_start,
    plain,
    trigger_progress,
    wallet_state,
)
from perkamo.program.model import ProfileState
from perkamo.program.timefmt import format_rfc3339
from storage.spaces import KeyRecord

_NUMERIC_TRIGGERS = ("points_threshold", "level_reached", "event_count", "streak")


def profile_document(
    space_slug: str, user_id: str, view: ProfileView, program: Program, now: datetime
) -> dict[str, Any]:
    state = view.state
    level = level_number(state, program)
    return {
        "tenant": space_slug,
        "user_id": user_id,
        "traits": view.traits,
        "wallets": wallet_state(state, program),
        "level": level_document(state, program),
        "perks": _perks(state, program),
        "next_perks": _next_perks(state, program, level, view.traits),
        "achievements": _achievements(state, program),
        "flags": _flags(state, program, level),
        "events": [
            {
                "event": e.event,
                "transaction_id": e.transaction_id,
                "occurred_at": format_rfc3339(e.occurred_at),
                "delta": e.outcome.get("delta", []),
            }
            for e in view.recent_events
        ],
        "redemptions": [
            {
                "reward_key": r.reward_key,
                "transaction_id": r.transaction_id,
                "redeemed_at": format_rfc3339(r.received_at),
                "cost": r.outcome.get("cost"),
                "effect": r.outcome.get("effect"),
            }
            for r in view.recent_redemptions
        ],
        "streaks": _streaks(state, program, now),
        "active_boosts": _active_boosts(state, program, now, view.traits),
        "created_at": format_rfc3339(view.created_at),
        "updated_at": format_rfc3339(view.updated_at),
    }


def _perks(state: ProfileState, program: Program) -> list[dict[str, Any]]:
    configured = {p.key: p for p in program.perks}
    unlocked = sorted(
        ((key, perk) for key, perk in state.perks.items() if key in configured),
        key=lambda item: item[1].unlocked_at,
    )
    return [
        {
            "key": key,
            "name": configured[key].name,
            "description": configured[key].description,
            "unlocked_at": format_rfc3339(perk.unlocked_at),
            "metadata": {**configured[key].metadata, "trigger": perk.trigger},
        }
        for key, perk in unlocked
    ]


def _next_perks(
    state: ProfileState, program: Program, level: int, traits: dict[str, Any]
) -> list[dict[str, Any]]:
    numeric: list[tuple[Decimal, int, dict[str, Any]]] = []
    others: list[dict[str, Any]] = []
    for index, perk in enumerate(program.perks):
        if perk.key in state.perks:
            continue
        entry: dict[str, Any] = {
            "key": perk.key,
            "name": perk.name,
            "description": perk.description,
        }
        progress = trigger_progress(perk, state, program, level, traits)
        if perk.trigger.type in _NUMERIC_TRIGGERS and not isinstance(progress, bool):
            current, target = progress
            entry["progress"] = {"current": plain(current), "target": plain(target)}
            ratio = current / target if target else Decimal(0)
            numeric.append((-ratio, index, entry))
        else:
            others.append(entry)
    return [entry for _, _, entry in sorted(numeric, key=lambda t: (t[0], t[1]))] + others


def _achievements(state: ProfileState, program: Program) -> dict[str, list[dict[str, Any]]]:
    completed, in_progress, unlocked = [], [], []
    done = {k for k, a in state.achievements.items() if a.times > 0}
    for ach in program.achievements:
        current = state.achievements.get(ach.key)
        if current is not None and current.times > 0:
            assert current.completed_at is not None
            completed.append(
                {
                    "key": ach.key,
                    "name": ach.name,
                    "completed_at": format_rfc3339(current.completed_at),
                    "times": current.times,
                }
            )
            if not ach.repeatable:
                continue
        if not all(r in done for r in ach.requires):
            continue
        progress = current.progress if current is not None else []
        values = [
            criterion_current(c.kind, progress[i]) if i < len(progress) else Decimal(0)
            for i, c in enumerate(ach.criteria)
        ]
        if any(v > 0 for v in values):
            in_progress.append(
                {
                    "key": ach.key,
                    "name": ach.name,
                    "progress": [
                        {"criterion": i, "current": plain(v), "target": plain(c.target)}
                        for i, (c, v) in enumerate(zip(ach.criteria, values, strict=True))
                    ],
                }
            )
        elif current is None or current.times == 0:
            unlocked.append({"key": ach.key, "name": ach.name, "description": ach.description})
    return {"completed": completed, "in_progress": in_progress, "unlocked": unlocked}


def _flags(state: ProfileState, program: Program, level: int) -> dict[str, dict[str, bool]]:
    has_levels = program.leveling is not None
    return {
        "levels": {f"level_{level}": True} if has_levels else {},
        "has_level_at_least": (
            {f"level_{k}": True for k in range(1, level + 1)} if has_levels else {}
        ),
        "perks": {p.key: True for p in program.perks if p.key in state.perks},
    }


def _streaks(state: ProfileState, program: Program, now: datetime) -> list[dict[str, Any]]:
    result = []
    for streak in program.streaks:
        st = state.streaks.get(streak.key)
        if st is None or st.last_period is None:
            continue
        if st.period != streak.period or st.timezone != streak.timezone:
            continue  # restarted by a configuration change; nothing counted since
        this_period = period_start(streak, now)
        step = timedelta(days=7 if streak.period == "week" else 1)
        if st.last_period >= this_period:
            status, current = "active", st.current
        elif this_period - st.last_period == step:
            status, current = "at_risk", st.current
        else:
            status, current = "broken", 0
        result.append(
            {
                "key": streak.key,
                "name": streak.name,
                "period": streak.period,
                "current": current,
                "longest": st.longest,
                "last_period": st.last_period.isoformat(),
                "status": status,
            }
        )
    return result


def _active_boosts(
    state: ProfileState, program: Program, now: datetime, traits: dict[str, Any]
) -> list[dict[str, Any]]:
    scope = {"context": {}, "traits": traits}
    result = []
    for boost in program.boosts:
        if not boost_applies(boost, state, now, scope):
            continue
        scheduled = boost.ends_at is not None
        expires = boost.ends_at if scheduled else state.boosts[boost.key].expires_at
        assert expires is not None
        result.append(
            {
                "key": boost.key,
                "name": boost.name,
                "multiplier": plain(boost.multiplier),
                "wallets": sorted(boost.wallets) if boost.wallets is not None else None,
                "events": sorted(boost.events) if boost.events is not None else None,
                "source": "schedule" if scheduled else "granted",
                "expires_at": format_rfc3339(expires),
            }
        )
    return result


# -- the program document ---------------------------------------------------------------------


def blueprint(program: Program) -> dict[str, Any]:
    bodies = program.bodies
    events = bodies.get("events", {})
    wallets = bodies.get("wallets", {})
    return {
        "earningRules": [
            {
                "key": r["key"],
                "event": r["event"],
                "name": r["name"],
                "award": r["award"],
                **{
                    k: r[k]
                    for k in ("conditions", "limits", "active_from", "active_until")
                    if k in r
                },
            }
            for r in events.get("rules", [])
        ],
        "events": [
            {"key": key, "name": name, "description": description}
            for key, name, description in program.catalog
        ],
        "wallets": wallets.get("wallets", []),
        "rewards": wallets.get("rewards", []),
        "levels": bodies.get("leveling") or None,
        "perks": bodies.get("perks", {}).get("perks", []),
        "achievements": bodies.get("achievements", {}).get("achievements", []),
        "streaks": events.get("streaks", []),
        "boosts": bodies.get("boosts", {}).get("boosts", []),
    }


def program_document(
    key: KeyRecord,
    program: Program,
    stats: dict[str, Any],
    usage: dict[str, Any],
    signed_share: Decimal | None,
) -> dict[str, Any]:
    precisions = {w.key: w.precision for w in program.wallets}

    def amounts(totals: dict[str, Any]) -> dict[str, int | Decimal]:
        return {
            w: number(Decimal(totals.get(w, 0)), precisions.get(w, 6))
            for w in sorted(set(totals) | set(precisions))
        }

    return {
        "tenant": key.space_slug,
        "space": {
            "slug": key.space_slug,
            "name": key.space_name,
            "environment": key.space_environment,
        },
        "blueprint": blueprint(program),
        "versions": program.versions,
        "integration": {
            "keys_in_use": stats["keys_in_use"],
            "last_event_at": (
                format_rfc3339(stats["last_event_at"]) if stats["last_event_at"] else None
            ),
            "events_last_24h": stats["events_last_24h"],
            "signed_request_share": signed_share,
            "webhook": _webhook(stats["webhook"]),
        },
        "metrics": {
            "profiles": stats["profiles"],
            "events": stats["events"],
            "redemptions": stats["redemptions"],
            "issued": amounts(stats["issued"]),
            "spent": amounts(stats["spent"]),
        },
        "usage": usage,
    }


def _webhook(endpoint: dict[str, Any] | None) -> dict[str, Any]:
    if endpoint is None:
        return {"status": "not_configured"}
    last = endpoint["last_delivered_at"]
    return {
        "status": "active" if endpoint["enabled"] else "disabled",
        "url": endpoint["url"],
        "queued": endpoint["queued"],
        "failed_last_24h": endpoint["failed_last_24h"],
        "last_delivered_at": format_rfc3339(last) if last else None,
    }
