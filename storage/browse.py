"""What the console's screens read: lists keyset-paginated on an index (never an offset,
never a query per row), and the one-item pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class SpaceSummary:
    id: int
    slug: str
    name: str
    environment: str
    require_signatures: bool
    created_at: datetime
    limits: dict[str, Any]
    profiles: int
    events_today: int


def space_summaries(conn: Conn, today_start: datetime) -> list[SpaceSummary]:
    with conn.cursor(row_factory=class_row(SpaceSummary)) as cur:
        cur.execute(
            "SELECT s.id, s.slug, s.name, s.environment, s.require_signatures, s.created_at,"
            " s.limits,"
            " (SELECT count(*) FROM profiles p WHERE p.space_id = s.id) AS profiles,"
            " (SELECT count(*) FROM events e WHERE e.space_id = s.id"
            "   AND e.received_at >= %s) AS events_today"
            " FROM spaces s ORDER BY s.slug",
            (today_start,),
        )
        return cur.fetchall()


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def keys_of(conn: Conn, space_id: int) -> list[KeyRow]:
    with conn.cursor(row_factory=class_row(KeyRow)) as cur:
        cur.execute(
            "SELECT id, prefix, scopes, created_at, last_used_at, revoked_at FROM api_keys"
            " WHERE space_id = %s ORDER BY created_at DESC",
            (space_id,),
        )
        return cur.fetchall()


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event write as the Events screen lists it: applied (from the log) or not."""

    received_at: datetime
    seq: int
    status: str  # applied | duplicate | refused
    transaction_id: str | None
    user_id: str | None
    event: str | None
    delta: Any  # applied: the outcome's delta
    code: str | None  # refused: the error code
    message: str | None
    source: str = "server"  # "client": sent by a browser (its id is its customer's own)


@dataclass(frozen=True, slots=True)
class EventFilter:
    user_id: str | None = None
    event: str | None = None
    transaction_id: str | None = None
    status: str | None = None  # applied | duplicate | refused | None (all)
    since: datetime | None = None
    until: datetime | None = None


_FAR_PAST = datetime(1, 1, 2).astimezone()
_FAR_FUTURE = datetime(9999, 12, 30).astimezone()

_APPLIED = (
    "SELECT received_at, seq, 'applied' AS status, transaction_id, user_id, event,"
    " outcome -> 'delta' AS delta, NULL::text AS code, NULL::text AS message, source"
    " FROM events WHERE space_id = %(s)s"
    " AND (received_at, seq) < (%(at)s, %(seq)s)"
    " AND received_at >= %(since)s AND received_at < %(until)s"
    " AND (%(user)s::text IS NULL OR user_id = %(user)s)"
    " AND (%(event)s::text IS NULL OR event = %(event)s)"
    " AND (%(tx)s::text IS NULL OR transaction_id = %(tx)s)"
    " ORDER BY received_at DESC, seq DESC LIMIT %(limit)s"
)
_ATTEMPTS = (
    "SELECT received_at, seq, status, transaction_id, user_id, event, NULL::json AS delta,"
    " code, message FROM event_attempts WHERE space_id = %(s)s"
    " AND (received_at, seq) < (%(at)s, %(seq)s)"
    " AND received_at >= %(since)s AND received_at < %(until)s"
    " AND (%(user)s::text IS NULL OR user_id = %(user)s)"
    " AND (%(event)s::text IS NULL OR event = %(event)s)"
    " AND (%(tx)s::text IS NULL OR transaction_id = %(tx)s)"
    " AND (%(status)s::text IS NULL OR status = %(status)s)"
    " ORDER BY received_at DESC, seq DESC LIMIT %(limit)s"
)


def events_page(
    conn: Conn,
    space_id: int,
    filters: EventFilter,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[EventRow]:
    """Newest first, ``limit`` rows older than the ``after`` cursor (received_at, seq);
    applied writes and refused or duplicate attempts merged."""
    at, seq = after or (_FAR_FUTURE, 0)
    params = {
        "s": space_id,
        "at": at,
        "seq": seq,
        "limit": limit,
        "since": filters.since or _FAR_PAST,
        "until": filters.until or _FAR_FUTURE,
        "user": filters.user_id,
        "event": filters.event,
        "tx": filters.transaction_id,
        "status": filters.status if filters.status in ("duplicate", "refused") else None,
    }
    rows: list[EventRow] = []
    with conn.cursor(row_factory=class_row(EventRow)) as cur:
        if filters.status in (None, "applied"):
            cur.execute(_APPLIED, params)
            rows += cur.fetchall()
        if filters.status != "applied":
            cur.execute(_ATTEMPTS, params)
            rows += cur.fetchall()
    rows.sort(key=lambda r: (r.received_at, r.seq), reverse=True)
    return rows[:limit]


@dataclass(frozen=True, slots=True)
class EventDetail:
    transaction_id: str
    user_id: str
    event: str
    context: Any
    occurred_at: datetime
    received_at: datetime
    outcome: Any
    source: str
    reversal: Any = None  # its reversal (a return): when, why, by whom, its answer


def event_detail(
    conn: Conn, space_id: int, transaction_id: str, client_user: str | None = None
) -> EventDetail | None:
    """The server event ``transaction_id``, or with ``client_user`` the event that
    customer's browser sent under that id (a browser's ids are its customer's own)."""
    scope = ("server", "") if client_user is None else ("client", client_user)
    with conn.cursor(row_factory=class_row(EventDetail)) as cur:
        cur.execute(
            "SELECT e.transaction_id, e.user_id, e.event, e.context, e.occurred_at,"
            " e.received_at, e.outcome, e.source, CASE WHEN v.transaction_id IS NOT NULL"
            " THEN json_build_object('reversed_at', v.received_at, 'reason', v.reason,"
            " 'actor', v.actor, 'outcome', v.outcome) END AS reversal"
            " FROM events e LEFT JOIN event_reversals v"
            " ON v.space_id = e.space_id AND v.transaction_id = e.transaction_id"
            " AND v.source = e.source AND v.scope_user = e.scope_user"
            " WHERE e.space_id = %s AND e.transaction_id = %s"
            " AND e.source = %s AND e.scope_user = %s",
            (space_id, transaction_id, *scope),
        )
        return cur.fetchone()


@dataclass(frozen=True, slots=True)
class CustomerRow:
    user_id: str
    traits: Any
    version: int
    created_at: datetime
    updated_at: datetime
    wallets: Any  # the state's wallets: {wallet: {balance, earned, ...}}


def _like(text: str, *, anywhere: bool) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return ("%" if anywhere else "") + escaped + "%"


_CUSTOMERS_NEWEST = (
    "SELECT user_id, traits, version, created_at, updated_at, state -> 'wallets' AS wallets"
    " FROM profiles WHERE space_id = %(s)s AND (updated_at, user_id) < (%(at)s, %(user)s)"
    " ORDER BY updated_at DESC, user_id DESC LIMIT %(limit)s"
)
_CUSTOMERS_WITH_TRAIT = (
    "SELECT user_id, traits, version, created_at, updated_at, state -> 'wallets' AS wallets"
    " FROM profiles WHERE space_id = %(s)s AND (updated_at, user_id) < (%(at)s, %(user)s)"
    " AND traits @> %(contains)s ORDER BY updated_at DESC, user_id DESC LIMIT %(limit)s"
)
# Two searches, each on its own index, merged: one OR would walk every profile.
_CUSTOMERS_MATCHING = (
    "SELECT * FROM ("
    " (SELECT user_id, traits, version, created_at, updated_at, state -> 'wallets' AS wallets"
    "  FROM profiles WHERE space_id = %(s)s AND (updated_at, user_id) < (%(at)s, %(user)s)"
    "  AND user_id LIKE %(prefix)s ORDER BY updated_at DESC, user_id DESC LIMIT %(limit)s)"
    " UNION"
    " (SELECT user_id, traits, version, created_at, updated_at, state -> 'wallets' AS wallets"
    "  FROM profiles WHERE space_id = %(s)s AND (updated_at, user_id) < (%(at)s, %(user)s)"
    "  AND trait_text LIKE %(value)s"
    "  ORDER BY updated_at DESC, user_id DESC LIMIT %(limit)s)"
    ") c ORDER BY updated_at DESC, user_id DESC LIMIT %(limit)s"
)


def customers_page(
    conn: Conn,
    space_id: int,
    text: str | None,
    trait: tuple[str, Any] | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[CustomerRow]:
    """Newest active first: all, or those whose user id begins with ``text`` or who have
    ``text`` in any trait's value (case-insensitive, on a trigram index: no trait name
    needed), or whose trait ``name`` equals ``value``."""
    at, user = after or (_FAR_FUTURE, "")
    params: dict[str, Any] = {"s": space_id, "at": at, "user": user, "limit": limit}
    with conn.cursor(row_factory=class_row(CustomerRow)) as cur:
        if trait is not None:
            params["contains"] = Jsonb({trait[0]: trait[1]})
            cur.execute(_CUSTOMERS_WITH_TRAIT, params)
        elif text:
            params["prefix"] = _like(text, anywhere=False)
            params["value"] = _like(text.lower(), anywhere=True)
            cur.execute(_CUSTOMERS_MATCHING, params)
        else:
            cur.execute(_CUSTOMERS_NEWEST, params)
        return cur.fetchall()


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One entry of a customer's ledger: what changed a balance, and where it came from."""

    received_at: datetime
    kind: str  # event | redemption | adjustment | reversal | return | settling
    transaction_id: str
    name: str  # event key, reward key, wallet, or the reversed reward
    details: Any  # event: outcome (delta, breakdown); redemption: cost; adjustment: ...
    seq: int


def ledger_page(
    conn: Conn, space_id: int, user_id: str, before: tuple[datetime, int] | None, limit: int
) -> list[LedgerRow]:
    at, seq = before or (_FAR_FUTURE, 0)
    params = {"s": space_id, "u": user_id, "at": at, "seq": seq, "limit": limit}
    with conn.cursor(row_factory=class_row(LedgerRow)) as cur:
        cur.execute(
            "SELECT * FROM ("
            " (SELECT received_at, 'event' AS kind, transaction_id, event AS name,"
            "   json_build_object('delta', outcome -> 'delta', 'breakdown',"
            "   outcome -> 'breakdown', 'pending', outcome -> 'pending',"
            "   'settled', outcome -> 'settled', 'source', source) AS details, seq"
            "  FROM events WHERE space_id = %(s)s AND user_id = %(u)s"
            "  AND (received_at, seq) < (%(at)s, %(seq)s)"
            "  ORDER BY received_at DESC, seq DESC LIMIT %(limit)s)"
            " UNION ALL"
            " (SELECT received_at, 'redemption', transaction_id, reward_key,"
            "   json_build_object('cost', outcome -> 'cost', 'settled', outcome -> 'settled'), seq"
            "  FROM redemptions WHERE space_id = %(s)s AND user_id = %(u)s"
            "  AND (received_at, seq) < (%(at)s, %(seq)s)"
            "  ORDER BY received_at DESC, seq DESC LIMIT %(limit)s)"
            " UNION ALL"
            " (SELECT received_at, 'adjustment', transaction_id, wallet,"
            "   json_build_object('amount', amount, 'reason', reason, 'actor', actor,"
            "   'counts_toward_level', counts_toward_level, 'settled', outcome -> 'settled'), seq"
            "  FROM adjustments WHERE space_id = %(s)s AND user_id = %(u)s"
            "  AND (received_at, seq) < (%(at)s, %(seq)s)"
            "  ORDER BY received_at DESC, seq DESC LIMIT %(limit)s)"
            " UNION ALL"
            " (SELECT v.received_at, 'reversal', v.transaction_id, r.reward_key,"
            "   json_build_object('refund', r.outcome -> 'cost', 'reason', v.reason,"
            "   'actor', v.actor, 'settled', v.outcome -> 'settled'), v.seq"
            "  FROM reversals v JOIN redemptions r ON r.space_id = v.space_id"
            "  AND r.transaction_id = v.transaction_id"
            "  WHERE v.space_id = %(s)s AND v.user_id = %(u)s"
            "  AND (v.received_at, v.seq) < (%(at)s, %(seq)s)"
            "  ORDER BY v.received_at DESC, v.seq DESC LIMIT %(limit)s)"
            " UNION ALL"
            " (SELECT received_at, 'return', transaction_id, outcome -> 'event' ->> 'event',"
            "   json_build_object('delta', outcome -> 'delta', 'pending', outcome -> 'pending',"
            "   'shortfall', outcome -> 'shortfall', 'reason', reason, 'actor', actor,"
            "   'settled', outcome -> 'settled', 'source', source), seq"
            "  FROM event_reversals WHERE space_id = %(s)s AND user_id = %(u)s"
            "  AND (received_at, seq) < (%(at)s, %(seq)s)"
            "  ORDER BY received_at DESC, seq DESC LIMIT %(limit)s)"
            " UNION ALL"
            " (SELECT received_at, 'settling', transaction_id, '',"
            "   json_build_object('settled', outcome -> 'settled'), seq"
            "  FROM ticks WHERE space_id = %(s)s AND user_id = %(u)s"
            "  AND (received_at, seq) < (%(at)s, %(seq)s)"
            "  ORDER BY received_at DESC, seq DESC LIMIT %(limit)s)"
            ") l ORDER BY received_at DESC, seq DESC LIMIT %(limit)s",
            params,
        )
        return cur.fetchall()


def balance_history(
    conn: Conn, space_id: int, user_id: str, limit: int
) -> list[tuple[datetime, dict[str, Any]]]:
    """The customer's balances after each of their ``limit`` latest writes, oldest first:
    each ledger row's answer carries its ``wallet_state``."""
    rows = conn.execute(
        "SELECT received_at, state FROM ("
        " (SELECT received_at, seq, outcome -> 'wallet_state' AS state FROM events"
        "  WHERE space_id = %(s)s AND user_id = %(u)s ORDER BY seq DESC LIMIT %(n)s)"
        " UNION ALL (SELECT received_at, seq, outcome -> 'wallet_state' FROM redemptions"
        "  WHERE space_id = %(s)s AND user_id = %(u)s ORDER BY seq DESC LIMIT %(n)s)"
        " UNION ALL (SELECT received_at, seq, outcome -> 'wallet_state' FROM adjustments"
        "  WHERE space_id = %(s)s AND user_id = %(u)s ORDER BY seq DESC LIMIT %(n)s)"
        " UNION ALL (SELECT received_at, seq, outcome -> 'wallet_state' FROM reversals"
        "  WHERE space_id = %(s)s AND user_id = %(u)s ORDER BY seq DESC LIMIT %(n)s)"
        " UNION ALL (SELECT received_at, seq, outcome -> 'wallet_state' FROM event_reversals"
        "  WHERE space_id = %(s)s AND user_id = %(u)s ORDER BY seq DESC LIMIT %(n)s)"
        " UNION ALL (SELECT received_at, seq, outcome -> 'wallet_state' FROM ticks"
        "  WHERE space_id = %(s)s AND user_id = %(u)s ORDER BY seq DESC LIMIT %(n)s)"
        ") h WHERE state IS NOT NULL ORDER BY received_at DESC, seq DESC LIMIT %(n)s",
        {"s": space_id, "u": user_id, "n": limit},
    ).fetchall()
    return [(at, dict(state)) for at, state in reversed(rows)]


@dataclass(frozen=True, slots=True)
class Match:
    kind: str  # event | redemption | adjustment | delivery | customer | customers | attempt
    key: str  # what to link to: transaction id, delivery id, user id, the search
    label: str
    user_id: str | None = None  # whose it is (a redemption or adjustment: their page)


def find(conn: Conn, space_id: int, q: str) -> list[Match]:
    """Everything an id can name in a Space: an event's, redemption's or adjustment's
    transaction id, an evt_/rdm_/adj_ id, a delivery id, a user id, a request id of a
    refused attempt; and, when nothing has that exact id, the customers whose user id
    begins with it or who have a trait with it in its value (an e-mail, a name)."""
    with conn.cursor(row_factory=class_row(Match)) as cur:
        cur.execute(
            "SELECT 'event' AS kind, transaction_id AS key, event AS label, user_id FROM events"
            " WHERE space_id = %(s)s AND (transaction_id = %(q)s OR event_id = %(q)s)"
            " UNION ALL SELECT 'redemption', transaction_id, reward_key, user_id FROM redemptions"
            " WHERE space_id = %(s)s AND (transaction_id = %(q)s OR redemption_id = %(q)s)"
            " UNION ALL SELECT 'adjustment', transaction_id, wallet || ' ' || amount, user_id"
            " FROM adjustments WHERE space_id = %(s)s"
            " AND (transaction_id = %(q)s OR adjustment_id = %(q)s)"
            " UNION ALL SELECT 'delivery', id, event_type, NULL FROM webhook_deliveries"
            " WHERE space_id = %(s)s AND id = %(q)s"
            " UNION ALL SELECT 'customer', user_id, user_id, user_id FROM profiles"
            " WHERE space_id = %(s)s AND user_id = %(q)s"
            " UNION ALL SELECT 'attempt', coalesce(transaction_id, ''),"
            " status || ' ' || coalesce(code, ''), user_id FROM event_attempts"
            " WHERE space_id = %(s)s AND request_id = %(q)s"
            " LIMIT 20",
            {"s": space_id, "q": q},
        )
        found = cur.fetchall()
    if not any(m.kind == "customer" for m in found) and customers_page(
        conn, space_id, q, None, None, 1
    ):
        found.append(Match("customers", q, "customers whose id or traits match", None))
    return found


def daily_usage(conn: Conn, space_id: int, start: date, end: date) -> dict[date, dict[str, int]]:
    rows = conn.execute(
        "SELECT day, meter, used FROM usage_daily WHERE space_id = %s AND day >= %s"
        " AND day < %s ORDER BY day",
        (space_id, start, end),
    ).fetchall()
    found: dict[date, dict[str, int]] = {}
    for day, meter, used in rows:
        found.setdefault(day, {})[meter] = int(used)
    return found


def record_attempts(conn: Conn, rows: list[tuple[Any, ...]]) -> None:
    """Event writes that did not apply: (space_id, received_at, transaction_id, user_id,
    event, status, code, message, request_id)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO event_attempts (space_id, received_at, transaction_id, user_id, event,"
            " status, code, message, request_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
