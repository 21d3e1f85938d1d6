"""Browser keys (docs/api.md "The browser half"): stored as a hash and a display prefix like API
keys (a browser key is public by design, but the list shows it once, at creation), with their
policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class BrowserKeyRecord:
    id: str
    space_id: int
    space_slug: str
    space_environment: str
    prefix: str
    name: str
    allowed_origins: list[str]
    allowed_events: list[str]
    capabilities: dict[str, Any]
    rate: dict[str, Any]
    expose_traits: list[str] | None
    created_at: datetime
    revoked_at: datetime | None


# Full statements as literals: nothing is assembled at run time.
_BY_ID = (
    "SELECT b.id, b.space_id, s.slug AS space_slug, s.environment AS space_environment,"
    " b.prefix, b.name, b.allowed_origins, b.allowed_events, b.capabilities, b.rate,"
    " b.expose_traits, b.created_at, b.revoked_at"
    " FROM browser_keys b JOIN spaces s ON s.id = b.space_id"
    " WHERE b.id = %s"
)
_BY_HASH = (
    "SELECT b.id, b.space_id, s.slug AS space_slug, s.environment AS space_environment,"
    " b.prefix, b.name, b.allowed_origins, b.allowed_events, b.capabilities, b.rate,"
    " b.expose_traits, b.created_at, b.revoked_at"
    " FROM browser_keys b JOIN spaces s ON s.id = b.space_id"
    " WHERE b.key_hash = %s"
)
_OF_SPACE = (
    "SELECT b.id, b.space_id, s.slug AS space_slug, s.environment AS space_environment,"
    " b.prefix, b.name, b.allowed_origins, b.allowed_events, b.capabilities, b.rate,"
    " b.expose_traits, b.created_at, b.revoked_at"
    " FROM browser_keys b JOIN spaces s ON s.id = b.space_id"
    " WHERE b.space_id = %s ORDER BY b.created_at DESC, b.id DESC"
)
_LIVE_ORIGINS = "SELECT DISTINCT unnest(allowed_origins) FROM browser_keys WHERE revoked_at IS NULL"


def insert(
    conn: Conn,
    key_id: str,
    space_id: int,
    key_hash: bytes,
    prefix: str,
    policy: dict[str, Any],
) -> BrowserKeyRecord:
    conn.execute(
        "INSERT INTO browser_keys (id, space_id, key_hash, prefix, name, allowed_origins,"
        " allowed_events, capabilities, rate, expose_traits)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            key_id, space_id, key_hash, prefix, policy["name"], policy["allowed_origins"],
            policy["allowed_events"], Jsonb(policy["capabilities"]), Jsonb(policy["rate"]),
            policy["expose_traits"],
        ),
    )  # fmt: skip
    found = get(conn, key_id)
    assert found is not None
    return found


def update(conn: Conn, key_id: str, policy: dict[str, Any]) -> BrowserKeyRecord | None:
    """Replace a key's policy (every field given)."""
    conn.execute(
        "UPDATE browser_keys SET name = %s, allowed_origins = %s, allowed_events = %s,"
        " capabilities = %s, rate = %s, expose_traits = %s WHERE id = %s",
        (
            policy["name"], policy["allowed_origins"], policy["allowed_events"],
            Jsonb(policy["capabilities"]), Jsonb(policy["rate"]), policy["expose_traits"], key_id,
        ),
    )  # fmt: skip
    return get(conn, key_id)


def revoke(conn: Conn, key_id: str) -> BrowserKeyRecord | None:
    """Revoke now (a key already revoked keeps its time)."""
    conn.execute(
        "UPDATE browser_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s",
        (key_id,),
    )
    return get(conn, key_id)


def get(conn: Conn, key_id: str) -> BrowserKeyRecord | None:
    with conn.cursor(row_factory=class_row(BrowserKeyRecord)) as cur:
        cur.execute(_BY_ID, (key_id,))
        return cur.fetchone()


def find_by_hash(conn: Conn, key_hash: bytes) -> BrowserKeyRecord | None:
    with conn.cursor(row_factory=class_row(BrowserKeyRecord)) as cur:
        cur.execute(_BY_HASH, (key_hash,))
        return cur.fetchone()


def list_of_space(conn: Conn, space_id: int) -> list[BrowserKeyRecord]:
    """Newest first."""
    with conn.cursor(row_factory=class_row(BrowserKeyRecord)) as cur:
        cur.execute(_OF_SPACE, (space_id,))
        return cur.fetchall()


def live_origins(conn: Conn) -> set[str]:
    """Every origin some browser key that is not revoked lists (for preflights)."""
    return {row[0] for row in conn.execute(_LIVE_ORIGINS).fetchall()}
