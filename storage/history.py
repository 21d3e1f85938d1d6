"""A profile's history in processing order: events, redemptions, identifies, adjustments
and reversals, ordered by the profile version their unit committed and their position in
it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # event | redemption | identify | adjustment | reversal
    profile_version: int
    position: int
    name: str  # event key, reward key, "" for identify, wallet for an adjustment
    # event or redemption context; identify: the traits patch; adjustment: {amount,
    # counts_toward_level}; reversal: the redemption's {reward_key, cost, effect, redeemed_at}
    payload: Any
    occurred_at: datetime | None
    received_at: datetime
    program_versions: Any


_HISTORY = """
SELECT 'event', profile_version, position, event, context, occurred_at, received_at,
       outcome -> 'program_versions'
FROM events WHERE space_id = %(s)s AND user_id = %(u)s
UNION ALL
SELECT 'redemption', profile_version, position, reward_key, context, NULL, received_at,
       outcome -> 'program_versions'
FROM redemptions WHERE space_id = %(s)s AND user_id = %(u)s
UNION ALL
SELECT 'identify', profile_version, position, '', traits, NULL, received_at,
       program_versions::json
FROM identifies WHERE space_id = %(s)s AND user_id = %(u)s
UNION ALL
SELECT 'adjustment', profile_version, position, wallet,
       jsonb_build_object('amount', amount, 'counts_toward_level', counts_toward_level),
       NULL, received_at, program_versions::json
FROM adjustments WHERE space_id = %(s)s AND user_id = %(u)s
UNION ALL
SELECT 'reversal', v.profile_version, v.position, r.reward_key,
       jsonb_build_object('cost', r.outcome -> 'cost', 'effect', r.outcome -> 'effect',
                          'redeemed_at', r.received_at),
       NULL, v.received_at, v.program_versions::json
FROM reversals v JOIN redemptions r
  ON r.space_id = v.space_id AND r.transaction_id = v.transaction_id
WHERE v.space_id = %(s)s AND v.user_id = %(u)s
ORDER BY 2, 3
"""


def profile_history(conn: Conn, space_id: int, user_id: str) -> list[Entry]:
    rows = conn.execute(_HISTORY, {"s": space_id, "u": user_id}).fetchall()
    return [Entry(*row) for row in rows]


def config_bodies(conn: Conn, space_id: int, versions: dict[str, str]) -> dict[str, Any]:
    """Module bodies of the given (module → version) labels."""
    bodies = {}
    for module, version in versions.items():
        row = conn.execute(
            "SELECT body FROM config_versions WHERE space_id = %s AND module = %s AND version = %s",
            (space_id, module, version),
        ).fetchone()
        if row is not None:
            bodies[module] = row[0]
    return bodies
