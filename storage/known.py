"""Transaction ids another system already applied (``perkamo import-balances
--known-transactions``, docs/operations.md (moving a Space)): stored per Space and
namespace, found like the log's originals, and never applied again — the log's inserts skip
them (log_tables.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.rows import class_row

from .history import StoredWrite
from .history import find_originals as find_logged

Conn = psycopg.Connection[Any]

KNOWN_NAMESPACES = ("event", "redemption")
_rows = msgspec.json.Encoder()


@dataclass(slots=True)
class KnownRow:
    """One id to add; ``user_id`` None: any customer's retry of it is the imported one."""

    namespace: str
    transaction_id: str
    user_id: str | None
    known_id: str  # imp_…


# Per row: 'added'; 'known' (already known for the same customer, or for any); 'other_user'
# (known for another customer); 'logged' (this Space's log holds the id: applied here).
_ADD = """
WITH x AS (
    SELECT * FROM json_to_recordset(%(rows)s::json) AS x(
        n integer, namespace text, transaction_id text, user_id text, known_id text)
), logged AS (
    SELECT x.n FROM x
    WHERE (x.namespace = 'event' AND EXISTS (
              SELECT 1 FROM events e
              WHERE e.space_id = %(s)s AND e.transaction_id = x.transaction_id
                AND e.source = 'server'))
       OR (x.namespace = 'redemption' AND EXISTS (
              SELECT 1 FROM redemptions r
              WHERE r.space_id = %(s)s AND r.transaction_id = x.transaction_id))
), added AS (
    INSERT INTO known_transactions (space_id, namespace, transaction_id, user_id, known_id,
                                    imported_at)
    SELECT %(s)s, namespace, transaction_id, user_id, known_id, %(at)s FROM x
    WHERE x.n NOT IN (SELECT n FROM logged)
    ON CONFLICT (space_id, namespace, transaction_id) DO NOTHING
    RETURNING namespace, transaction_id
)
SELECT x.n,
       CASE WHEN l.n IS NOT NULL THEN 'logged'
            WHEN a.transaction_id IS NOT NULL THEN 'added'
            WHEN k.user_id IS NOT DISTINCT FROM x.user_id OR k.user_id IS NULL THEN 'known'
            ELSE 'other_user' END
FROM x
LEFT JOIN logged l ON l.n = x.n
LEFT JOIN added a ON a.namespace = x.namespace AND a.transaction_id = x.transaction_id
LEFT JOIN known_transactions k
  ON k.space_id = %(s)s AND k.namespace = x.namespace AND k.transaction_id = x.transaction_id
ORDER BY x.n
"""


def add_known(conn: Conn, space_id: int, rows: list[KnownRow], at: datetime) -> list[str]:
    """Add ``rows`` (distinct ids) in one transaction; returns each row's verdict (see
    ``_ADD``; 'frozen': the Space is frozen, nothing added). The SHARE lock on the log tables waits
    for every write in flight and holds new ones until this commits: a write of one of these ids
    either committed before (it is 'logged') or starts after and meets the known id — never both
    applied. The lock stalls every Space's writes for the few milliseconds a chunk takes (keep
    chunks small)."""
    payload = [
        {"n": n, "namespace": r.namespace, "transaction_id": r.transaction_id,
         "user_id": r.user_id, "known_id": r.known_id}
        for n, r in enumerate(rows)
    ]  # fmt: skip
    with conn.transaction():
        # A frozen Space takes no writes (its export is exact): the row lock holds a freeze
        # until these are in, or finds the Space frozen ('frozen' for every row).
        frozen = conn.execute(
            "SELECT frozen FROM spaces WHERE id = %s FOR SHARE", (space_id,)
        ).fetchone()
        if frozen is None or frozen[0]:
            return ["frozen"] * len(rows)
        conn.execute("LOCK TABLE events, redemptions IN SHARE MODE")
        found = conn.execute(
            _ADD, {"rows": _rows.encode(payload).decode(), "s": space_id, "at": at}
        ).fetchall()
    return [verdict for _, verdict in found]


def find_known(conn: Conn, space_id: int, namespace: str, ids: list[str]) -> list[StoredWrite]:
    """The known ids among ``ids``, as originals marked ``imported`` (their user is "" when
    any customer may retry them)."""
    with conn.cursor(row_factory=class_row(StoredWrite)) as cur:
        cur.execute(
            "SELECT transaction_id, coalesce(user_id, '') AS user_id,"
            " NULL::bytea AS request_hash, 0 AS hash_form, '' AS outcome,"
            " imported_at AS received_at, NULL::timestamptz AS reversed_at,"
            " known_id AS imported"
            " FROM known_transactions"
            " WHERE space_id = %s AND namespace = %s AND transaction_id = ANY(%s)",
            (space_id, namespace, ids),
        )
        return cur.fetchall()


def find_originals(
    conn: Conn, space_id: int, namespace: str, ids: list[str], user_id: str = ""
) -> list[StoredWrite]:
    """The stored writes of ``namespace`` with these transaction ids — logged, or else
    known (one storage call: the second statement only for ids the log does not hold;
    ``user_id`` as in history.find_originals)."""
    found = find_logged(conn, space_id, namespace, ids, user_id)
    if namespace not in KNOWN_NAMESPACES or len(found) == len(ids):
        return found
    logged = {row.transaction_id for row in found}
    missing = [tx for tx in ids if tx not in logged]
    return found + find_known(conn, space_id, namespace, missing)
