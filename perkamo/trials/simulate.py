"""``POST /v1/admin/simulate``: events evaluated in order on a profile's committed state (or
an empty one) with the active program or named versions, exactly as ingestion would — and
nothing written. Pure: the caller brings the state, the program and the receive time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from perkamo.profiles.answers import EventOutcome, event_answer
from perkamo.profiles.history import HistoryEvent
from perkamo.program import EngineEvent, ProfileState, Program, apply


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    event: str
    context: dict[str, Any]
    occurred_at: datetime | None
    transaction_id: str | None


@dataclass(frozen=True, slots=True)
class Simulation:
    outcomes: list[EventOutcome]  # event_id and duplicate are the caller's to drop
    state: ProfileState
    history: list[HistoryEvent]  # the simulated events, newest first


def simulate(
    state: ProfileState,
    traits: dict[str, Any],
    events: list[SimulatedEvent],
    program: Program,
    received_at: datetime,
) -> Simulation:
    """Apply ``events`` in order to the evolving state (the engine never mutates its input)."""
    outcomes: list[EventOutcome] = []
    history: list[HistoryEvent] = []
    for n, item in enumerate(events):
        seen = EngineEvent(item.event, item.context, item.occurred_at, traits)
        state, outcome = apply(state, seen, program, received_at)
        outcomes.append(event_answer(outcome, "", program.versions))
        occurred = item.occurred_at or received_at
        tx = item.transaction_id if item.transaction_id is not None else f"simulated-{n + 1}"
        history.append(HistoryEvent(item.event, tx, occurred, outcome.delta))
    history.reverse()
    return Simulation(outcomes, state, history)
