"""Resident memory of idle profile actors, and RSS under 1,000,000 distinct profiles.

    python -m bench.memory [--actors 100000] [--distinct 1000000] [--cap 100000]

Runs in its own process. Actors are real ``ProfileActor`` objects in the real actor system,
each holding a realistic snapshot (one wallet with a balance, two traits, a rule counter, an
unlocked perk); they are built from rows made here instead of being read from PostgreSQL,
because residency is what is measured, not loading.
"""

from __future__ import annotations

import argparse
import gc
import json
from datetime import UTC, datetime
from typing import Any

import psutil
import trio

from actors import open_actor_system
from perkamo.configuration import ProgramCatalog
from perkamo.profiles.actor import ProfileActor, ProfileServices
from perkamo.profiles.commands import Read
from perkamo.profiles.snapshot import Snapshot
from perkamo.profiles.usage import UsageLedger
from perkamo.webhooks import WebhookRegistry
from storage import Database, GroupCommitWriter
from storage.profile_loader import ProfileLoader
from storage.profiles import ProfileRow

NOW = datetime(2026, 6, 1, tzinfo=UTC)
READ = Read(received_at=NOW)  # what activates an idle profile here (never handled)


def _row(n: int) -> ProfileRow:
    state = {
        "wallets": {"points": {"balance": 50 + n % 100, "earned": 150}},
        "rules": {"purchase_points": {"fired": 3, "last_fired_at": "2026-06-01T10:00:00Z"}},
        "perks": {
            "welcome_member": {
                "unlocked_at": "2026-06-01T10:00:00Z",
                "trigger": {"type": "points_threshold", "wallet": "points", "amount": 30},
            }
        },
    }
    traits = {"plan": "premium", "country": "CZ"}
    return ProfileRow(json.dumps(traits), json.dumps(state), 3, NOW, NOW)


class _IdleProfile(ProfileActor):
    """A real ProfileActor (same attributes and snapshot) whose messages only activate it."""

    async def receive(self, messages: Any) -> list[object]:
        return [None for _ in messages]


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def idle_services() -> ProfileServices:
    """Real services whose storage is never opened (nothing here connects until used)."""
    url = "postgresql:///never-connected"
    db = Database(url)
    return ProfileServices(
        db,
        ProfileLoader(url),
        GroupCommitWriter(url),
        ProgramCatalog(db),
        UsageLedger(db),
        WebhookRegistry(db),
        lambda: None,
    )


async def measure(actors: int, distinct: int, cap: int) -> dict[str, Any]:
    services = idle_services()

    async def activate(key: tuple[int, str]) -> ProfileActor:
        space_id, user_id = key
        return _IdleProfile(services, space_id, user_id, Snapshot.from_row(_row(len(user_id))))

    result: dict[str, Any] = {}
    async with open_actor_system(activate, max_resident=actors + 1) as system:
        base = rss()
        for n in range(actors):
            system.send_nowait((1, f"user-{n:08d}"), READ)
            if n % 1000 == 999:
                await trio.sleep(0)  # let the runners activate and go idle
        await trio.sleep(0.1)
        assert system.statistics().resident == actors
        result["idle_actor_bytes"] = (rss() - base) / actors
        result["resident"] = system.statistics().resident
    async with open_actor_system(activate, max_resident=cap) as system:
        base = rss()
        peak = base
        for n in range(distinct):
            system.send_nowait((1, f"user-{n:08d}"), READ)
            if n % 1000 == 999:
                await trio.sleep(0)
            if n % 50_000 == 49_999:
                peak = max(peak, rss())
        await trio.sleep(0.1)
        stats = system.statistics()
        result.update(
            distinct=distinct,
            cap=cap,
            rss_start_mib=base / 2**20,
            rss_peak_mib=max(peak, rss()) / 2**20,
            resident_after=stats.resident,
            passivations=stats.passivations,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actors", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=1_000_000)
    parser.add_argument("--cap", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(trio.run(measure, args.actors, args.distinct, args.cap)))


if __name__ == "__main__":
    main()
