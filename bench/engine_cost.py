"""The engine's CPU cost per event, as a profile's actor pays it: the stored state decoded,
the event applied through the pure engine, the new state encoded (``python
bench/engine_cost.py`` prints JSON). Imports only what every version of the engine has, so
``bench lots`` runs it against the branch's code and, with ``PYTHONPATH`` pointing at
another checkout, against the code before lots: the same measurement before and after.

Programs: the demo program as it is, and the same with its ``points`` wallet given
``pending_days: 14`` and ``expiry: {after_days: 365}`` (when the engine knows them). A
profile arrives with a history of one purchase a day for ``days`` days (so a wallet with
lots holds one lot per day: ``days`` lots, the last 14 pending), then one more purchase is
timed ``repeat`` times on that state (the same day: it merges into the newest lot).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from perkamo.program import EngineEvent, ProfileState, apply, compile_program

DEMO = Path(__file__).resolve().parents[1] / "perkamo" / "demo"
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
EVENT = ("purchase.completed", {"amount": 12900, "currency": "CZK"})


def modules(lots: bool) -> dict[str, Any]:
    found = {p.stem: json.loads(p.read_text())["body"] for p in DEMO.glob("*.json")}
    if lots:
        points = next(w for w in found["wallets"]["wallets"] if w["key"] == "points")
        points.update({"pending_days": 14, "expiry": {"after_days": 365}})
    return found


def measure(lots: bool, days: int, repeat: int) -> dict[str, Any]:
    program = compile_program({m: ("bench", body) for m, body in modules(lots).items()})
    encoder = msgspec.json.Encoder(decimal_format="number")
    decoder = msgspec.json.Decoder(ProfileState, float_hook=Decimal)
    state = ProfileState()
    at = T0
    for day in range(days):
        at = T0 + timedelta(days=day)
        state, _ = apply(state, EngineEvent(EVENT[0], EVENT[1], at, {}), program, at)
    stored = encoder.encode(state)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(repeat):
            current = decoder.decode(stored)
            current, _ = apply(current, EngineEvent(EVENT[0], EVENT[1], at, {}), program, at)
            encoder.encode(current)
        best = min(best, (time.process_time() - started) / repeat)
    lots_kept = sum(len(getattr(w, "lots", ())) for w in state.wallets.values())
    return {"lots": lots, "days": days, "us_per_event": round(best * 1e6, 1),
            "state_bytes": len(stored), "lots_kept": lots_kept}  # fmt: skip


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    knows_lots = (
        "pending_days"
        in Path(sys.modules["perkamo.program"].__file__ or "").with_name("schema.py").read_text()
    )
    measure(False, 1, repeat // 4)  # warm up (imports, caches): the first would pay for them
    results = []
    for days in (1, 30, 120):
        results.append(measure(False, days, repeat))
        if knows_lots:
            results.append(measure(True, days, repeat))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
