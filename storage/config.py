"""Configuration versions and the active pointer per module (SQL only; validation lives in
the product)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    module: str
    version: str
    body: Any
    checksum: str
    checksum_form: int  # the canonical-JSON form the checksum was computed in
    created_at: datetime
    activated_at: datetime | None


def lock_space(conn: Conn, space_id: int) -> bool:
    """Serialise configuration changes of one Space (held until the transaction ends);
    returns whether the Space is frozen (its configuration may not change then: the lock
    also orders the change after a freeze, which updates the same row)."""
    row = conn.execute("SELECT frozen FROM spaces WHERE id = %s FOR UPDATE", (space_id,))
    found = row.fetchone()
    return bool(found and found[0])


def get_version(conn: Conn, space_id: int, module: str, version: str) -> ConfigVersion | None:
    with conn.cursor(row_factory=class_row(ConfigVersion)) as cur:
        cur.execute(
            "SELECT module, version, body, checksum, checksum_form, created_at, activated_at"
            " FROM config_versions WHERE space_id = %s AND module = %s AND version = %s",
            (space_id, module, version),
        )
        return cur.fetchone()


def list_versions(conn: Conn, space_id: int, module: str) -> list[ConfigVersion]:
    with conn.cursor(row_factory=class_row(ConfigVersion)) as cur:
        cur.execute(
            "SELECT module, version, body, checksum, checksum_form, created_at, activated_at"
            " FROM config_versions WHERE space_id = %s AND module = %s ORDER BY created_at",
            (space_id, module),
        )
        return cur.fetchall()


def active_versions(conn: Conn, space_id: int) -> list[ConfigVersion]:
    with conn.cursor(row_factory=class_row(ConfigVersion)) as cur:
        cur.execute(
            "SELECT v.module, v.version, v.body, v.checksum, v.checksum_form, v.created_at,"
            " a.activated_at"
            " FROM active_config a JOIN config_versions v USING (space_id, module, version)"
            " WHERE a.space_id = %s",
            (space_id,),
        )
        return cur.fetchall()


@dataclass(frozen=True, slots=True)
class StoredVersion:
    space_id: int
    module: str
    version: str
    body: Any


def versions_before_form(conn: Conn, form: int) -> list[StoredVersion]:
    with conn.cursor(row_factory=class_row(StoredVersion)) as cur:
        cur.execute(
            "SELECT space_id, module, version, body FROM config_versions WHERE checksum_form < %s",
            (form,),
        )
        return cur.fetchall()


def set_checksum(
    conn: Conn, space_id: int, module: str, version: str, checksum: str, form: int
) -> None:
    conn.execute(
        "UPDATE config_versions SET checksum = %s, checksum_form = %s"
        " WHERE space_id = %s AND module = %s AND version = %s",
        (checksum, form, space_id, module, version),
    )


def insert_version(
    conn: Conn, space_id: int, module: str, version: str, body: Any, checksum: str
) -> None:
    conn.execute(
        "INSERT INTO config_versions (space_id, module, version, body, checksum)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (space_id, module, version, Jsonb(body), checksum),
    )


def activate(conn: Conn, space_id: int, module: str, version: str) -> datetime:
    row = conn.execute(
        "INSERT INTO active_config (space_id, module, version, activated_at)"
        " VALUES (%s, %s, %s, now())"
        " ON CONFLICT (space_id, module) DO UPDATE"
        " SET version = EXCLUDED.version, activated_at = EXCLUDED.activated_at"
        " RETURNING activated_at",
        (space_id, module, version),
    ).fetchone()
    assert row is not None
    conn.execute(
        "UPDATE config_versions SET activated_at = %s"
        " WHERE space_id = %s AND module = %s AND version = %s",
        (row[0], space_id, module, version),
    )
    return row[0]  # type: ignore[no-any-return]
