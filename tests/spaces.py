"""Spaces and keys made for a test, and what its event log holds."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from perkamo.access import admin

_counter = itertools.count()


@dataclass
class SpaceKey:
    space: Any
    key: str
    key_id: str

    @property
    def slug(self) -> str:
        return str(self.space.slug)


def make_space(pg_url: str, scopes: list[str] | None = None, environment: str = "test") -> SpaceKey:
    slug = f"space-{next(_counter)}-{secrets.token_hex(3)}"
    with psycopg.connect(pg_url) as conn:
        space = admin.create_space(conn, slug, f"Space {slug}", environment)
        key_id, key = admin.create_key(conn, space, scopes)
    return SpaceKey(space, key, key_id)


def committed(pg_url: str, space_id: int) -> dict[str, int]:
    """transaction id -> how many times it is in the event log."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT transaction_id, count(*) FROM events WHERE space_id = %s"
            " GROUP BY transaction_id",
            (space_id,),
        ).fetchall()
    return {tx: n for tx, n in rows}
