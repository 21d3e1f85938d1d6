"""Spaces and API keys. Keys are stored as a hash plus a display prefix, never in clear."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class SpaceRecord:
    id: int
    slug: str
    name: str
    environment: str
    require_signatures: bool
    created_at: datetime
    frozen: bool = False  # perkamo spaces freeze: its writes are refused


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as the edge needs it: what it may do, in which Space."""

    id: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    space_id: int
    space_slug: str
    space_name: str
    space_environment: str
    require_signatures: bool
    space_limits: dict[str, Any]
    space_frozen: bool = False


# Full statements as literals: no SQL is ever assembled from strings at run time.
_INSERT_SPACE = (
    "INSERT INTO spaces (slug, name, environment) VALUES (%s, %s, %s)"
    " RETURNING id, slug, name, environment, require_signatures, created_at, frozen"
)
_SELECT_SPACE = (
    "SELECT id, slug, name, environment, require_signatures, created_at, frozen"
    " FROM spaces WHERE slug = %s"
)
_LIST_SPACES = (
    "SELECT id, slug, name, environment, require_signatures, created_at, frozen"
    " FROM spaces ORDER BY slug"
)
_KEYS_WHERE_HASH = (
    "SELECT k.id, k.prefix, k.scopes, k.created_at, k.revoked_at, s.id AS space_id,"
    " s.slug AS space_slug, s.name AS space_name, s.environment AS space_environment,"
    " s.require_signatures, s.limits AS space_limits, s.frozen AS space_frozen"
    " FROM api_keys k JOIN spaces s ON s.id = k.space_id"
    " WHERE k.key_hash = %s"
)
_KEYS_WHERE_ID = (
    "SELECT k.id, k.prefix, k.scopes, k.created_at, k.revoked_at, s.id AS space_id,"
    " s.slug AS space_slug, s.name AS space_name, s.environment AS space_environment,"
    " s.require_signatures, s.limits AS space_limits, s.frozen AS space_frozen"
    " FROM api_keys k JOIN spaces s ON s.id = k.space_id"
    " WHERE k.id = %s"
)
_KEYS_OF_SPACE = (
    "SELECT k.id, k.prefix, k.scopes, k.created_at, k.revoked_at, s.id AS space_id,"
    " s.slug AS space_slug, s.name AS space_name, s.environment AS space_environment,"
    " s.require_signatures, s.limits AS space_limits, s.frozen AS space_frozen"
    " FROM api_keys k JOIN spaces s ON s.id = k.space_id"
    " WHERE s.slug = %s ORDER BY k.created_at"
)


def create_space(conn: Conn, slug: str, name: str, environment: str) -> SpaceRecord:
    with conn.cursor(row_factory=class_row(SpaceRecord)) as cur:
        cur.execute(_INSERT_SPACE, (slug, name, environment))
        row = cur.fetchone()
        assert row is not None
        return row


def get_space(conn: Conn, slug: str) -> SpaceRecord | None:
    with conn.cursor(row_factory=class_row(SpaceRecord)) as cur:
        cur.execute(_SELECT_SPACE, (slug,))
        return cur.fetchone()


def list_spaces(conn: Conn) -> list[SpaceRecord]:
    with conn.cursor(row_factory=class_row(SpaceRecord)) as cur:
        cur.execute(_LIST_SPACES)
        return cur.fetchall()


def set_require_signatures(conn: Conn, slug: str, required: bool) -> bool:
    cur = conn.execute(
        "UPDATE spaces SET require_signatures = %s WHERE slug = %s", (required, slug)
    )
    return cur.rowcount == 1


def set_frozen(conn: Conn, slug: str, frozen: bool) -> bool:
    """Freeze or unfreeze a Space; False when there is no such Space. Freezing also waits
    for the flushes writing profiles that are running: once the transaction commits, no
    write of the Space commits any more (the group commit reads the flag in the statement
    that writes, flush_statements.py, and a flush blocked by this lock starts that statement
    after the commit)."""
    cur = conn.execute("UPDATE spaces SET frozen = %s WHERE slug = %s", (frozen, slug))
    if cur.rowcount != 1:
        return False
    if frozen:
        conn.execute("LOCK TABLE profiles IN SHARE MODE")
    return True


def set_limits(conn: Conn, slug: str, changes: dict[str, int | None]) -> dict[str, Any] | None:
    """Merge ``changes`` into the Space's limits (None removes one); returns the result."""
    row = conn.execute(
        "UPDATE spaces SET limits = (limits || %s::jsonb) - %s::text[] WHERE slug = %s"
        " RETURNING limits",
        (
            Jsonb({k: v for k, v in changes.items() if v is not None}),
            [k for k, v in changes.items() if v is None],
            slug,
        ),
    ).fetchone()
    return None if row is None else dict(row[0])


def insert_key(
    conn: Conn, key_id: str, space_id: int, key_hash: bytes, prefix: str, scopes: list[str]
) -> None:
    conn.execute(
        "INSERT INTO api_keys (id, space_id, key_hash, prefix, scopes) VALUES (%s, %s, %s, %s, %s)",
        (key_id, space_id, key_hash, prefix, scopes),
    )


def find_key_by_hash(conn: Conn, key_hash: bytes) -> KeyRecord | None:
    with conn.cursor(row_factory=class_row(KeyRecord)) as cur:
        cur.execute(_KEYS_WHERE_HASH, (key_hash,))
        return cur.fetchone()


def get_key(conn: Conn, key_id: str) -> KeyRecord | None:
    with conn.cursor(row_factory=class_row(KeyRecord)) as cur:
        cur.execute(_KEYS_WHERE_ID, (key_id,))
        return cur.fetchone()


def list_keys(conn: Conn, space_slug: str) -> list[KeyRecord]:
    with conn.cursor(row_factory=class_row(KeyRecord)) as cur:
        cur.execute(_KEYS_OF_SPACE, (space_slug,))
        return cur.fetchall()


def revoke_key(conn: Conn, key_id: str, grace_seconds: float = 0) -> bool:
    """Revoke a key now, or at the end of a grace period (it works until then); a key
    already revoked keeps the earlier time. False when there is no such key."""
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = least(coalesce(revoked_at, 'infinity'),"
        " now() + make_interval(secs => %s)) WHERE id = %s",
        (grace_seconds, key_id),
    )
    return cur.rowcount == 1


def mark_used(conn: Conn, used: dict[str, Any]) -> None:
    """Record when keys were last used (key id -> time), never moving a time back."""
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE api_keys SET last_used_at = greatest(last_used_at, %s) WHERE id = %s",
            [(at, key_id) for key_id, at in used.items()],
        )
