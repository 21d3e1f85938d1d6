"""Ordered SQL migrations (``migrations/NNNN_name.sql``) applied at start-up.

An advisory lock serialises concurrent starters; each file runs in its own transaction and
is recorded in ``schema_migrations``, so a migration is applied exactly once.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg

_LOCK_ID = 0x7065726B616D6F  # "perkamo"


def available() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every migration file, in order."""
    found = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply every pending migration; returns the names applied. ``conn`` may be in a
    transaction; this commits."""
    conn.commit()
    applied_now: list[str] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " number integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        done = {row[0] for row in conn.execute("SELECT number FROM schema_migrations")}
        for number, name, sql in available():
            if number in done:
                continue
            with conn.transaction():
                conn.execute(sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (number, name) VALUES (%s, %s)",
                    (number, name),
                )
            applied_now.append(name)
        conn.commit()
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
        conn.commit()
    return applied_now
