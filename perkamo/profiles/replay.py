"""Rebuild a profile from its history: every event, redemption, identify, adjustment and
reversal, in processing order, each evaluated with the program versions it saw. Because the
engine is pure, the result equals the stored snapshot; ``perkamo verify`` style checks and
tests rely on it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from perkamo.program import (
    EngineEvent,
    ProfileState,
    Program,
    apply,
    apply_identify,
    compile_program,
    merge_traits,
)
from perkamo.program.outcome import Delta
from perkamo.program.rewards import redeem
from perkamo.program.support import RedemptionRecord, adjust, reverse
from perkamo.program.timefmt import parse_rfc3339
from storage.history import Entry, config_bodies, profile_history

Conn = psycopg.Connection[Any]


def reversal_record(entry: Entry) -> RedemptionRecord:
    """What reversing needs of the redemption a history entry reverses."""
    cost = entry.payload["cost"]
    return RedemptionRecord(
        entry.name,
        Delta(cost["wallet"], Decimal(cost["amount"])),
        entry.payload.get("effect") or {},
        parse_rfc3339(entry.payload["redeemed_at"]),
    )


def replay_profile(conn: Conn, space_id: int, user_id: str) -> tuple[dict[str, Any], ProfileState]:
    """(traits, state) recomputed from an empty profile."""
    programs: dict[tuple[tuple[str, str], ...], Program] = {}

    def program_for(versions: dict[str, str | None]) -> Program:
        key = tuple(sorted((m, v) for m, v in versions.items() if v is not None))
        if key not in programs:
            bodies = config_bodies(conn, space_id, dict(key))
            programs[key] = compile_program({m: (v, bodies[m]) for m, v in key})
        return programs[key]

    traits: dict[str, Any] = {}
    state = ProfileState()
    for entry in profile_history(conn, space_id, user_id):
        program = program_for(entry.program_versions or {})
        if entry.kind == "event":
            event = EngineEvent(entry.name, entry.payload, entry.occurred_at, traits)
            state, _ = apply(state, event, program, entry.received_at)
        elif entry.kind == "redemption":
            state, _ = redeem(state, entry.name, program, entry.received_at, traits)
        elif entry.kind == "adjustment":
            amount, counts = Decimal(entry.payload["amount"]), entry.payload["counts_toward_level"]
            state, _ = adjust(state, entry.name, amount, counts, program, entry.received_at, traits)
        elif entry.kind == "reversal":
            state, _ = reverse(state, reversal_record(entry), program, entry.received_at, traits)
        else:
            traits = merge_traits(traits, entry.payload)
            state, _ = apply_identify(state, traits, program, entry.received_at)
    return traits, state
