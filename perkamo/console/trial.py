""" "Try an event" on a form that is not saved: the event evaluated on a customer's committed
state (or a new customer's) with the active program and with the program the form would
make, side by side, in words and numbers. Nothing is written (docs/api.md (trying a program)'s
simulate, run twice on the same state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from perkamo.configuration.versions import invalid_config
from perkamo.errors import PerkamoError
from perkamo.profiles.answers import EventOutcome
from perkamo.profiles.snapshot import Snapshot
from perkamo.program import MODULES, InvalidConfig, ProfileState, Program, compile_program
from perkamo.program.json_walk import JsonObject
from perkamo.runtime import Runtime
from perkamo.trials.simulate import SimulatedEvent, simulate
from storage import config as config_store
from storage.database import Conn

_decoder = msgspec.json.Decoder(float_hook=Decimal)


@dataclass
class Side:
    """One program's outcome, as sentences and as numbers."""

    label: str
    delta: dict[str, Decimal] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    balances: dict[str, Decimal] = field(default_factory=dict)
    level: int | None = None


@dataclass
class Trial:
    user_id: str
    existed: bool
    event: str
    active: Side
    draft: Side
    wallets: list[str]
    differences: list[str]


def parse_context(text: str) -> JsonObject:
    """The context as typed (a JSON object); raises ValueError with the reason."""
    try:
        value = _decoder.decode((text or "{}").encode())
    except msgspec.DecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object, e.g. {"amount": 12900}')
    return value


def candidate(conn: Conn, space_id: int, bodies: JsonObject, label: str) -> Program:
    """The active program with ``bodies`` (module → body, unsaved) in place, validated as on
    activation. Raises PerkamoError (invalid_config with every problem's path)."""
    current = {r.module: (r.version, r.body) for r in config_store.active_versions(conn, space_id)}
    current.update({m: (label, b) for m, b in bodies.items()})
    try:
        return compile_program(current, {m: "body" if m in bodies else m for m in MODULES})
    except InvalidConfig as exc:
        raise invalid_config(exc) from None


async def try_event(
    runtime: Runtime,
    space_id: int,
    draft: Program,
    user_id: str,
    event: str,
    context: JsonObject,
) -> Trial:
    active = await runtime.programs.get(space_id)
    snapshot = Snapshot.from_row(None)
    if user_id:
        snapshot = await runtime.committed((space_id, user_id))
    now = datetime.now(UTC)
    item = [SimulatedEvent(event, context, None, None)]
    sides = []
    for label, program in (("Active program", active), ("With this change", draft)):
        run = simulate(snapshot.state(), snapshot.traits(), item, program, now)
        sides.append(_describe(label, run.outcomes[0], run.state, program))
    wallets = sorted(set(sides[0].delta) | set(sides[1].delta) | set(sides[1].balances))
    return Trial(
        user_id,
        snapshot.exists,
        event,
        sides[0],
        sides[1],
        wallets,
        _differences(sides[0], sides[1], wallets),
    )


def _describe(label: str, outcome: EventOutcome, state: ProfileState, program: Program) -> Side:
    side = Side(label)
    names = {w.key: w.name for w in program.wallets}
    rules = {r.key: r.name for r in program.rules}
    for d in outcome.delta:
        side.delta[d.wallet] = Decimal(d.amount)
    for b in outcome.breakdown:
        source, key = b.source, b.key  # an award has both (a clamp neither)
        if not isinstance(source, str) or not isinstance(b.amount, Decimal):
            continue  # a clamp: its effect is in the delta
        assert isinstance(key, str)
        amount = Decimal(b.amount)
        title = rules.get(key, key) if source == "rule" else key
        boosted = f", boosted ×{b.boost.factor}" if b.boost else ""
        side.lines.append(
            f"{source} “{title}” gives {_n(amount)} {names.get(b.wallet, b.wallet)}{boosted}"
        )
    for s in outcome.skipped:
        title = rules.get(s.rule, s.rule)
        side.lines.append(f"rule “{title}” does not apply: {_REASONS.get(s.reason, s.reason)}")
    for u in outcome.unlocked:
        side.lines.append(f"unlocks {u.type.replace('_', ' ')} “{u.name}”")
    if outcome.leveled_up and outcome.level is not None:
        side.lines.append(f"reaches level {outcome.level.level}")
    if not side.lines:
        side.lines.append("no rule applies to this event")
    side.balances = {w: Decimal(b.balance) for w, b in state.wallets.items()}
    side.level = outcome.level.level if outcome.level is not None else None
    return side


_REASONS = {
    "per_user_limit": "the customer reached its lifetime limit",
    "per_day_limit": "the customer reached its daily limit",
    "cooldown": "still in its cooldown",
    "too_old": "the event is older than the daily limit's memory",
    "formula_input": "its formula lacks an input (or divides by zero)",
    "amount_out_of_range": "the amount is out of range",
}


def _n(value: Decimal) -> str:
    if value == 0:
        return "0"
    text = f"{value:+,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _differences(active: Side, draft: Side, wallets: list[str]) -> list[str]:
    found = []
    for w in wallets:
        a, d = active.delta.get(w, Decimal(0)), draft.delta.get(w, Decimal(0))
        if a != d:
            found.append(f"{w}: {_n(d)} instead of {_n(a)} ({_n(d - a)})")
    if active.level != draft.level:
        found.append(f"level {draft.level} instead of {active.level}")
    return found or ["the same outcome as the active program"]


def error_fields(exc: PerkamoError) -> list[tuple[str, str]]:
    """Every (path, message) a refusal names."""
    return [(d.get("path", ""), d.get("message", "")) for d in (exc.details or [])] or [
        ("", str(exc))
    ]
