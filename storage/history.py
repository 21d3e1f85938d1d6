"""The profile log read back: a profile's writes in processing order (every log table's
rows, ordered by the profile version their unit committed and their position in it), and
the stored originals of transaction ids (idempotency). Composed from ``log_tables.py``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from .log_tables import BY_NAMESPACE, LOG_TABLES

Conn = psycopg.Connection[Any]
FAR_PAST = datetime(1, 1, 2, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 12, 30, tzinfo=UTC)


class HistoryRow(NamedTuple):
    """One write of a profile's history (a tuple: the cheapest thing to build a million
    of, for a back-test)."""

    kind: str  # the command's tag: event | client_event | redemption | identify | …
    user_id: str
    profile_version: int
    position: int
    transaction_id: str
    name: str  # event key, reward key, wallet; "" for identify
    payload: Any  # context / traits patch / {amount, counts_toward_level} / the redemption
    occurred_at: datetime | None  # an event's; a tick's due time
    received_at: datetime
    program_versions: str | None  # JSON text: many writes share one, parsed once per text
    outcome: Any  # the recorded answer's delta (events), for a back-test's baseline check


# The histories of the profiles %(users)s of the Space %(s)s, received before %(to)s.
HISTORY = sql.SQL("SELECT * FROM ({}) h ORDER BY user_id, profile_version, position").format(
    sql.SQL(" UNION ALL ").join(t.history for t in LOG_TABLES)
)


def profile_history(conn: Conn, space_id: int, user_id: str) -> list[HistoryRow]:
    """Every write of one profile, in processing order."""
    params = {"s": space_id, "users": [user_id], "to": FAR_FUTURE}
    return [HistoryRow._make(row) for row in conn.execute(HISTORY, params).fetchall()]


@dataclass(frozen=True, slots=True)
class StoredWrite:
    """A logged write as idempotency (and a reversal) needs it."""

    transaction_id: str
    user_id: str
    request_hash: bytes | None  # None where the namespace compares no payload
    hash_form: int  # the canonical-JSON form request_hash was computed in
    outcome: str  # the answer as JSON text, exactly as it was sent
    received_at: datetime
    reversed_at: datetime | None  # a redemption's (an event's) reversal, if any
    occurred_at: datetime | None = None  # an event's (what returning it needs)
    name: str | None = None  # an event's key
    # Not logged here: an id another system applied (storage/known.py), its imp_… id.
    imported: str | None = None


def find_originals(
    conn: Conn, space_id: int, namespace: str, ids: list[str], user_id: str = ""
) -> list[StoredWrite]:
    """The stored writes of ``namespace`` with these transaction ids (``user_id``: the
    profile asking, for a namespace scoped to its customer)."""
    query = BY_NAMESPACE[namespace].find
    assert query is not None
    with conn.cursor(row_factory=class_row(StoredWrite)) as cur:
        cur.execute(query, {"s": space_id, "ids": ids, "u": user_id})
        return cur.fetchall()


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
