"""The Ed25519 keys that sign browser tokens (docs/api.md "The browser half"), shared by every
member.

One active key per environment. The first key of an environment is created race-free:
under a transaction-scoped advisory lock, only if none is there. A rotation adds a key that
is published at once and signs from ``signs_from`` on; the previous key keeps verifying
until ``retired_at`` (its last token's expiry), or stops at once when it was compromised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

Conn = psycopg.Connection[Any]

_LOCK = 0x70657262  # "perb": the first key of the advisory lock; the second is per environment
_ENVIRONMENTS = {"test": 1, "live": 2}


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    environment: str
    private_key: bytes
    public_key: bytes
    created_at: datetime
    signs_from: datetime
    retired_at: datetime | None


_LIVE = (
    "SELECT kid, environment, private_key, public_key, created_at, signs_from, retired_at"
    " FROM signing_keys WHERE retired_at IS NULL OR retired_at > now()"
    " ORDER BY environment, signs_from DESC, kid"
)


def live_keys(conn: Conn) -> list[SigningKey]:
    """Every key that still verifies (newest first per environment)."""
    with conn.cursor(row_factory=class_row(SigningKey)) as cur:
        cur.execute(_LIVE)
        return cur.fetchall()


def ensure_first(conn: Conn, environment: str, kid: str, private: bytes, public: bytes) -> bool:
    """Create the environment's first key unless one is live; True if this call did. Safe
    when many members start at once (they queue on the lock, the first one inserts)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK, _ENVIRONMENTS[environment]))
        row = conn.execute(
            "SELECT 1 FROM signing_keys WHERE environment = %s"
            " AND (retired_at IS NULL OR retired_at > now())",
            (environment,),
        ).fetchone()
        if row is not None:
            return False
        conn.execute(
            "INSERT INTO signing_keys (kid, environment, private_key, public_key, signs_from)"
            " VALUES (%s, %s, %s, %s, now())",
            (kid, environment, private, public),
        )
        return True


def rotate(
    conn: Conn,
    environment: str,
    kid: str,
    private: bytes,
    public: bytes,
    *,
    delay_seconds: float,
    keep_seconds: float,
    revoke_previous: bool,
) -> None:
    """Add a key that signs ``delay_seconds`` from now (at once when ``revoke_previous``);
    the keys before it stop verifying ``keep_seconds`` after it starts signing (their
    last tokens have expired then), or at once when ``revoke_previous``."""
    delay = 0.0 if revoke_previous else delay_seconds
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK, _ENVIRONMENTS[environment]))
        conn.execute(
            "INSERT INTO signing_keys (kid, environment, private_key, public_key, signs_from)"
            " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))",
            (kid, environment, private, public, delay),
        )
        conn.execute(
            "UPDATE signing_keys SET retired_at = least(coalesce(retired_at, 'infinity'),"
            " now() + make_interval(secs => %s))"
            " WHERE environment = %s AND kid <> %s",
            (0.0 if revoke_previous else delay + keep_seconds, environment, kid),
        )
