"""What the operator console stores: operators, their sessions, the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Operator:
    id: int
    email: str
    role: str
    password_hash: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Session:
    operator_id: int
    email: str
    role: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    flash: dict[str, Any] | None = None  # taken (cleared) when the caller asked for it


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    space_slug: str | None
    target: str | None
    reason: str | None
    details: Any


class OperatorExists(Exception):
    pass


def add_operator(conn: Conn, email: str, role: str, password_hash: str) -> Operator:
    try:
        with conn.transaction(), conn.cursor(row_factory=class_row(Operator)) as cur:
            cur.execute(
                "INSERT INTO operators (email, role, password_hash) VALUES (%s, %s, %s)"
                " RETURNING id, email, role, password_hash, created_at",
                (email, role, password_hash),
            )
            row = cur.fetchone()
    except psycopg.errors.UniqueViolation:
        raise OperatorExists(email) from None
    assert row is not None
    return row


def get_operator(conn: Conn, email: str) -> Operator | None:
    with conn.cursor(row_factory=class_row(Operator)) as cur:
        cur.execute(
            "SELECT id, email, role, password_hash, created_at FROM operators WHERE email = %s",
            (email,),
        )
        return cur.fetchone()


def list_operators(conn: Conn) -> list[Operator]:
    with conn.cursor(row_factory=class_row(Operator)) as cur:
        cur.execute(
            "SELECT id, email, role, password_hash, created_at FROM operators ORDER BY email"
        )
        return cur.fetchall()


def remove_operator(conn: Conn, email: str) -> bool:
    return conn.execute("DELETE FROM operators WHERE email = %s", (email,)).rowcount == 1


def set_role(conn: Conn, email: str, role: str) -> bool:
    return (
        conn.execute("UPDATE operators SET role = %s WHERE email = %s", (role, email)).rowcount == 1
    )


def set_password(conn: Conn, email: str, password_hash: str) -> bool:
    """A new password also ends every session of that operator."""
    row = conn.execute(
        "UPDATE operators SET password_hash = %s, password_changed_at = now()"
        " WHERE email = %s RETURNING id",
        (password_hash, email),
    ).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM operator_sessions WHERE operator_id = %s", (row[0],))
    return True


def create_session(conn: Conn, id_hash: bytes, operator_id: int, csrf_token: str) -> None:
    conn.execute(
        "INSERT INTO operator_sessions (id_hash, operator_id, csrf_token) VALUES (%s, %s, %s)",
        (id_hash, operator_id, csrf_token),
    )


def touch_session(
    conn: Conn, id_hash: bytes, absolute_seconds: float, idle_seconds: float, take_flash: bool
) -> Session | None:
    """The session if it is within both lifetimes (its idle clock restarts); an expired one
    is deleted. With ``take_flash`` its flash is returned and cleared in the same statement
    (a page shows it once; a refresh does not)."""
    with conn.cursor(row_factory=class_row(Session)) as cur:
        cur.execute(
            "UPDATE operator_sessions s SET last_seen_at = now(),"
            " flash = CASE WHEN %(take)s THEN NULL ELSE s.flash END"
            " FROM operators o, operator_sessions before"
            " WHERE s.id_hash = %(id)s AND o.id = s.operator_id AND before.id_hash = s.id_hash"
            " AND s.created_at > now() - make_interval(secs => %(absolute)s)"
            " AND s.last_seen_at > now() - make_interval(secs => %(idle)s)"
            " RETURNING s.operator_id, o.email, o.role, s.csrf_token, s.created_at,"
            " s.last_seen_at, CASE WHEN %(take)s THEN before.flash END AS flash",
            {
                "id": id_hash,
                "absolute": absolute_seconds,
                "idle": idle_seconds,
                "take": take_flash,
            },
        )
        found = cur.fetchone()
    if found is None:
        conn.execute("DELETE FROM operator_sessions WHERE id_hash = %s", (id_hash,))
    return found


def delete_session(conn: Conn, id_hash: bytes) -> None:
    conn.execute("DELETE FROM operator_sessions WHERE id_hash = %s", (id_hash,))


def audit(
    conn: Conn,
    actor: str,
    action: str,
    space_id: int | None = None,
    target: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """One audit row; call it in the transaction of the change it records."""
    conn.execute(
        "INSERT INTO audit_log (actor, action, space_id, target, reason, details)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (actor, action, space_id, target, reason, Jsonb(details or {})),
    )


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None  # exact, or a prefix ending in ':' (every API key: "api:")
    space_slug: str | None = None
    action: str | None = None  # exact, or a kind ending in '.' ("webhook.")
    since: datetime | None = None
    until: datetime | None = None


def audit_entries(
    conn: Conn, filters: AuditFilter, before_id: int | None, limit: int
) -> list[AuditEntry]:
    """Newest first, keyset-paginated by id, filtered by actor, Space, kind and time."""
    actor, action = filters.actor, filters.action
    with conn.cursor(row_factory=class_row(AuditEntry)) as cur:
        cur.execute(
            "SELECT a.id, a.at, a.actor, a.action, s.slug AS space_slug, a.target, a.reason,"
            " a.details FROM audit_log a LEFT JOIN spaces s ON s.id = a.space_id"
            " WHERE (%(before)s::bigint IS NULL OR a.id < %(before)s)"
            " AND (%(actor)s::text IS NULL OR a.actor = %(actor)s"
            "      OR (right(%(actor)s, 1) = ':' AND starts_with(a.actor, %(actor)s)))"
            " AND (%(action)s::text IS NULL OR a.action = %(action)s"
            "      OR (right(%(action)s, 1) = '.' AND starts_with(a.action, %(action)s)))"
            " AND (%(space)s::text IS NULL OR a.space_id = (SELECT id FROM spaces"
            "      WHERE slug = %(space)s))"
            " AND (%(since)s::timestamptz IS NULL OR a.at >= %(since)s)"
            " AND (%(until)s::timestamptz IS NULL OR a.at < %(until)s)"
            " ORDER BY a.id DESC LIMIT %(limit)s",
            {
                "before": before_id,
                "actor": actor,
                "action": action,
                "space": filters.space_slug,
                "since": filters.since,
                "until": filters.until,
                "limit": limit,
            },
        )
        return cur.fetchall()


def set_flash(conn: Conn, id_hash: bytes, flash: dict[str, Any]) -> None:
    """What the next page shows once (a notice, an error, a form's values, a new secret)."""
    conn.execute(
        "UPDATE operator_sessions SET flash = %s WHERE id_hash = %s", (Jsonb(flash), id_hash)
    )
