"""The documents the API returns about a profile, rendered by pure functions from the stored
state, the program and the server's clock at read time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .profile_actor import ProfileView
from .program import Program
from .timefmt import format_rfc3339


def profile_document(
    space_slug: str, user_id: str, view: ProfileView, program: Program, now: datetime
) -> dict[str, Any]:
    wallets = {
        key: view.state.wallets[key].balance if key in view.state.wallets else 0
        for key in program.wallets
    }
    return {
        "tenant": space_slug,
        "user_id": user_id,
        "traits": view.traits,
        "wallets": wallets,
        "level": None,
        "perks": [],
        "next_perks": [],
        "achievements": {"completed": [], "in_progress": [], "unlocked": []},
        "flags": {"levels": {}, "has_level_at_least": {}, "perks": {}},
        "events": [
            {
                "event": e.event,
                "transaction_id": e.transaction_id,
                "occurred_at": format_rfc3339(e.occurred_at),
                "delta": e.outcome.get("delta", []),
            }
            for e in view.recent_events
        ],
        "redemptions": [],
        "streaks": [],
        "active_boosts": [],
        "created_at": format_rfc3339(view.created_at),
        "updated_at": format_rfc3339(view.updated_at),
    }
