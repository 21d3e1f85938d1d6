"""The profile log: one table per kind of profile write, each with its row type and its SQL
blocks — how the group commit inserts its rows, how idempotency finds a stored original,
how a profile's history reads it back in processing order, and what it adds to the ledger.

The group commit's flush, the history reads and ``perkamo verify`` are composed from this
registry, so a new kind of write adds one entry here (and its migration), nowhere else in
storage. Every statement is composed from these constants with psycopg's ``sql`` module;
nothing here is built from input.

The entry's ``line`` is its line type in a Space's export (``perkamo export``,
docs/operations.md (moving a Space)): ``space_tables.py`` exports and imports every table of
this registry, in this order, with the columns the table has (read from the catalog), so a
new kind of write is moved with its Space by naming its line type here — nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql


@dataclass(frozen=True, slots=True)
class LogTable:
    """One kind of profile write as storage keeps it.

    ``insert``: the flush's CTE body; it inserts the rows of the JSON parameter named like
    the table and, for a table keyed by transaction id, returns ``(table, space_id, id,
    user_id)`` of each row written (a row not returned was refused: its id is taken).
    ``find``: the stored originals of ``%(ids)s`` in the Space ``%(s)s`` (written by the
    profile ``%(u)s``, for a namespace scoped to its customer), as StoredWrite columns.
    ``history``: its rows of the profiles ``%(users)s`` received before ``%(to)s``, as
    HistoryRow columns. ``ledger``: (user_id, wallet, balance change, spent change) per
    row of the Space ``%(s)s``, the stored answers read at the paths ``%(delta)s``,
    ``%(cost)s``, ``%(w)s`` and ``%(a)s``. ``answers``: (user_id, the stored answer) of its
    rows in the Space ``%(s)s``, whose settled and pending amounts the ledger sums
    (ledger.py). ``line``: its rows' type in an export.
    """

    name: str
    namespace: str | None  # its transaction ids' idempotency namespace; None: not keyed
    insert: sql.SQL | sql.Composed
    find: sql.SQL | sql.Composed | None
    history: sql.SQL | sql.Composed
    ledger: sql.SQL | sql.Composed | None
    answers: sql.SQL | sql.Composed | None = None
    table: str = ""  # the SQL table its rows live in, when not ``name`` (client events)
    line: str = field(kw_only=True)

    @property
    def stored_in(self) -> str:
        return self.table or self.name


# An id another system already applied (known_transactions, import-balances) is not applied
# again: the row is not inserted, so its unit is refused as a taken id and judged against
# the known one (profiles/idempotency.py).
def _not_known(namespace: str) -> sql.Composed:
    return sql.SQL("""
    WHERE NOT EXISTS (SELECT 1 FROM known_transactions k
                      WHERE k.space_id = x.space_id AND k.namespace = {}
                        AND k.transaction_id = x.transaction_id)""").format(sql.Literal(namespace))


def _stored_answers(table: str, scope: sql.Composable | None = None) -> sql.Composed:
    """``find`` for a table that keeps a write's answer and nothing to compare (a reversal
    or a tick: a repeat is the original whatever it says), narrowed by ``scope``."""
    return sql.SQL("""
    SELECT transaction_id, user_id, NULL::bytea AS request_hash, 0 AS hash_form,
           outcome::text, received_at, NULL::timestamptz AS reversed_at
    FROM {} WHERE space_id = %(s)s AND transaction_id = ANY(%(ids)s){}""").format(
        sql.Identifier(table), scope or sql.SQL("")
    )


def _events(
    name: str, namespace: str, kind: str, source: str, scope_user: sql.Composable
) -> LogTable:
    """The event log holds server events and browser-sent (client) events: the same rows,
    told apart by ``source``; a client event's transaction id is scoped to its customer
    (``scope_user``), a server event's to the Space (docs/api.md "The browser half")."""
    return LogTable(
        name,
        namespace,
        sql.SQL("""
    INSERT INTO events (space_id, transaction_id, user_id, event, context, occurred_at,
                        received_at, request_hash, outcome, profile_version, position,
                        event_id, source, scope_user)
    SELECT space_id, transaction_id, user_id, event, context::jsonb, occurred_at,
           received_at, decode(request_hash, 'base64'), outcome::json, profile_version,
           position, event_id, {source}, {scope_user}
    FROM json_to_recordset({param}::json) AS x(
        space_id bigint, transaction_id text, user_id text, event text, context text,
        occurred_at timestamptz, received_at timestamptz, request_hash text, outcome text,
        profile_version bigint, position integer, event_id text){not_known}
    ON CONFLICT (space_id, transaction_id, source, scope_user) DO NOTHING
    RETURNING {name}::text AS kind, space_id, transaction_id AS id, user_id""").format(
            source=sql.Literal(source),
            scope_user=scope_user,
            param=sql.Placeholder(name),
            name=sql.Literal(name),
            not_known=_not_known(namespace) if source == "server" else sql.SQL(""),
        ),
        sql.SQL("""
    SELECT e.transaction_id, e.user_id, e.request_hash, e.hash_form, e.outcome::text,
           e.received_at, v.received_at AS reversed_at, e.occurred_at, e.event AS name
    FROM events e LEFT JOIN event_reversals v
      ON v.space_id = e.space_id AND v.transaction_id = e.transaction_id
     AND v.source = e.source AND v.scope_user = e.scope_user
    WHERE e.space_id = %(s)s AND e.transaction_id = ANY(%(ids)s)
      AND e.source = {source} AND e.scope_user = {scope}""").format(
            source=sql.Literal(source),
            scope=sql.SQL("%(u)s") if source == "client" else sql.Literal(""),
        ),
        sql.SQL("""
    SELECT {kind} AS kind, e.user_id, e.profile_version, e.position, e.transaction_id,
           e.event AS name, e.context AS payload, e.occurred_at, e.received_at,
           e.outcome ->> 'program_versions' AS program_versions, e.outcome -> 'delta' AS outcome
    FROM events e
    WHERE e.space_id = %(s)s AND e.user_id = ANY(%(users)s) AND e.received_at < %(to)s
      AND e.source = {source}""").format(kind=sql.Literal(kind), source=sql.Literal(source)),
        sql.SQL("""
    SELECT e.user_id, d ->> %(w)s, (d ->> %(a)s)::numeric, 0::numeric
    FROM events e, json_array_elements(e.outcome -> %(delta)s) AS d
    WHERE e.space_id = %(s)s AND e.source = {source}""").format(source=sql.Literal(source)),
        sql.SQL(
            "SELECT user_id, outcome FROM events WHERE space_id = %(s)s AND source = {source}"
        ).format(source=sql.Literal(source)),
        "events",
        line="event",
    )


EVENTS = _events("events", "event", "event", "server", sql.Literal(""))
CLIENT_EVENTS = _events(
    "client_events", "client_event", "client_event", "client", sql.Identifier("user_id")
)

REDEMPTIONS = LogTable(
    "redemptions",
    "redemption",
    sql.SQL("""
    INSERT INTO redemptions (space_id, transaction_id, user_id, reward_key, context,
                             received_at, request_hash, outcome, profile_version, position,
                             redemption_id)
    SELECT space_id, transaction_id, user_id, reward_key, context::jsonb, received_at,
           decode(request_hash, 'base64'), outcome::json, profile_version, position,
           redemption_id
    FROM json_to_recordset(%(redemptions)s::json) AS x(
        space_id bigint, transaction_id text, user_id text, reward_key text, context text,
        received_at timestamptz, request_hash text, outcome text, profile_version bigint,
        position integer, redemption_id text){}
    ON CONFLICT (space_id, transaction_id) DO NOTHING
    RETURNING 'redemptions'::text AS kind, space_id, transaction_id AS id, user_id""").format(
        _not_known("redemption")
    ),
    sql.SQL("""
    SELECT r.transaction_id, r.user_id, r.request_hash, r.hash_form, r.outcome::text,
           r.received_at, v.received_at AS reversed_at
    FROM redemptions r LEFT JOIN reversals v
      ON v.space_id = r.space_id AND v.transaction_id = r.transaction_id
    WHERE r.space_id = %(s)s AND r.transaction_id = ANY(%(ids)s)"""),
    sql.SQL("""
    SELECT 'redemption', r.user_id, r.profile_version, r.position, r.transaction_id,
           r.reward_key, r.context, NULL, r.received_at, r.outcome ->> 'program_versions', NULL
    FROM redemptions r
    WHERE r.space_id = %(s)s AND r.user_id = ANY(%(users)s) AND r.received_at < %(to)s"""),
    sql.SQL("""
    SELECT user_id, outcome -> %(cost)s ->> %(w)s,
           -(outcome -> %(cost)s ->> %(a)s)::numeric, (outcome -> %(cost)s ->> %(a)s)::numeric
    FROM redemptions WHERE space_id = %(s)s"""),
    sql.SQL("SELECT user_id, outcome FROM redemptions WHERE space_id = %(s)s"),
    line="redemption",
)

IDENTIFIES = LogTable(
    "identifies",
    None,
    sql.SQL("""
    INSERT INTO identifies (space_id, user_id, traits, received_at, program_versions,
                            profile_version, position, outcome)
    SELECT space_id, user_id, traits::jsonb, received_at, program_versions::jsonb,
           profile_version, position, outcome::json
    FROM json_to_recordset(%(identifies)s::json) AS x(
        space_id bigint, user_id text, traits text, received_at timestamptz,
        program_versions text, profile_version bigint, position integer, outcome text)"""),
    None,
    sql.SQL("""
    SELECT 'identify', i.user_id, i.profile_version, i.position, '', '', i.traits, NULL,
           i.received_at, i.program_versions::text, NULL
    FROM identifies i
    WHERE i.space_id = %(s)s AND i.user_id = ANY(%(users)s) AND i.received_at < %(to)s"""),
    None,
    sql.SQL("""
    SELECT user_id, outcome FROM identifies WHERE space_id = %(s)s AND outcome IS NOT NULL"""),
    line="identify",
)

ADJUSTMENTS = LogTable(
    "adjustments",
    "adjustment",
    sql.SQL("""
    INSERT INTO adjustments (space_id, transaction_id, adjustment_id, user_id, wallet, amount,
                             counts_toward_level, reason, actor, received_at, request_hash,
                             outcome, program_versions, profile_version, position, earned,
                             traits, earned_at, expires_at)
    SELECT space_id, transaction_id, adjustment_id, user_id, wallet, amount::numeric,
           counts_toward_level, reason, actor, received_at, decode(request_hash, 'base64'),
           outcome::json, program_versions::jsonb, profile_version, position,
           earned::numeric, traits::jsonb, earned_at, expires_at
    FROM json_to_recordset(%(adjustments)s::json) AS x(
        space_id bigint, transaction_id text, adjustment_id text, user_id text, wallet text,
        amount text, counts_toward_level boolean, reason text, actor text,
        received_at timestamptz, request_hash text, outcome text, program_versions text,
        profile_version bigint, position integer, earned text, traits text,
        earned_at timestamptz, expires_at timestamptz)
    ON CONFLICT (space_id, transaction_id) DO NOTHING
    RETURNING 'adjustments'::text AS kind, space_id, transaction_id AS id, user_id"""),
    sql.SQL("""
    SELECT transaction_id, user_id, request_hash, hash_form, outcome::text, received_at,
           NULL::timestamptz AS reversed_at
    FROM adjustments WHERE space_id = %(s)s AND transaction_id = ANY(%(ids)s)"""),
    sql.SQL("""
    SELECT 'adjustment', a.user_id, a.profile_version, a.position, a.transaction_id, a.wallet,
           jsonb_build_object('amount', a.amount, 'counts_toward_level', a.counts_toward_level,
                              'earned', a.earned, 'traits', a.traits,
                              'earned_at', a.earned_at, 'expires_at', a.expires_at),
           NULL, a.received_at, a.program_versions::text, NULL
    FROM adjustments a
    WHERE a.space_id = %(s)s AND a.user_id = ANY(%(users)s) AND a.received_at < %(to)s"""),
    sql.SQL("""
    SELECT user_id, wallet, amount, 0::numeric FROM adjustments WHERE space_id = %(s)s"""),
    sql.SQL("SELECT user_id, outcome FROM adjustments WHERE space_id = %(s)s"),
    line="adjustment",
)

REVERSALS = LogTable(
    "reversals",
    "reversal",
    sql.SQL("""
    INSERT INTO reversals (space_id, transaction_id, user_id, reason, actor, received_at,
                           outcome, program_versions, profile_version, position)
    SELECT space_id, transaction_id, user_id, reason, actor, received_at, outcome::json,
           program_versions::jsonb, profile_version, position
    FROM json_to_recordset(%(reversals)s::json) AS x(
        space_id bigint, transaction_id text, user_id text, reason text, actor text,
        received_at timestamptz, outcome text, program_versions text, profile_version bigint,
        position integer)
    ON CONFLICT (space_id, transaction_id) DO NOTHING
    RETURNING 'reversals'::text AS kind, space_id, transaction_id AS id, user_id"""),
    _stored_answers("reversals"),
    sql.SQL("""
    SELECT 'reversal', v.user_id, v.profile_version, v.position, v.transaction_id,
           r.reward_key,
           jsonb_build_object('cost', r.outcome -> 'cost', 'effect', r.outcome -> 'effect',
                              'redeemed_at', r.received_at),
           NULL, v.received_at, v.program_versions::text, NULL
    FROM reversals v
    JOIN redemptions r ON r.space_id = v.space_id AND r.transaction_id = v.transaction_id
    WHERE v.space_id = %(s)s AND v.user_id = ANY(%(users)s) AND v.received_at < %(to)s"""),
    sql.SQL("""
    SELECT v.user_id, r.outcome -> %(cost)s ->> %(w)s,
           (r.outcome -> %(cost)s ->> %(a)s)::numeric, -(r.outcome -> %(cost)s ->> %(a)s)::numeric
    FROM reversals v JOIN redemptions r
      ON r.space_id = v.space_id AND r.transaction_id = v.transaction_id
    WHERE v.space_id = %(s)s"""),
    sql.SQL("SELECT user_id, outcome FROM reversals WHERE space_id = %(s)s"),
    line="reversal",
)


def _event_reversals(
    name: str, namespace: str, kind: str, source: str, scope_user: sql.Composable
) -> LogTable:
    """Returns (docs/program.md "Returns: reversing an event"): one reversal per event, kept
    under the event's own key (Space, source, the customer for a browser-sent event,
    transaction id); replay reads the event's date and changes along with it."""
    scope = sql.SQL("%(u)s") if source == "client" else sql.Literal("")
    return LogTable(
        name,
        namespace,
        sql.SQL("""
    INSERT INTO event_reversals (space_id, transaction_id, user_id, reason, actor,
                                 received_at, outcome, program_versions, profile_version,
                                 position, source, scope_user)
    SELECT space_id, transaction_id, user_id, reason, actor, received_at, outcome::json,
           program_versions::jsonb, profile_version, position, {source}, {scope_user}
    FROM json_to_recordset({param}::json) AS x(
        space_id bigint, transaction_id text, user_id text, reason text, actor text,
        received_at timestamptz, outcome text, program_versions text, profile_version bigint,
        position integer)
    ON CONFLICT (space_id, transaction_id, source, scope_user) DO NOTHING
    RETURNING {name}::text AS kind, space_id, transaction_id AS id, user_id""").format(
            source=sql.Literal(source),
            scope_user=scope_user,
            param=sql.Placeholder(name),
            name=sql.Literal(name),
        ),
        _stored_answers(
            "event_reversals",
            sql.SQL(" AND source = {} AND scope_user = {}").format(sql.Literal(source), scope),
        ),
        sql.SQL("""
    SELECT {kind}, v.user_id, v.profile_version, v.position, v.transaction_id,
           e.event,
           jsonb_build_object('occurred_at', e.occurred_at, 'delta', e.outcome -> 'delta',
                              'pending', e.outcome -> 'pending'),
           NULL, v.received_at, v.program_versions::text, NULL
    FROM event_reversals v
    JOIN events e ON e.space_id = v.space_id AND e.transaction_id = v.transaction_id
     AND e.source = v.source AND e.scope_user = v.scope_user
    WHERE v.space_id = %(s)s AND v.user_id = ANY(%(users)s) AND v.received_at < %(to)s
      AND v.source = {source}""").format(kind=sql.Literal(kind), source=sql.Literal(source)),
        sql.SQL("""
    SELECT user_id, d ->> %(w)s, (d ->> %(a)s)::numeric, 0::numeric
    FROM event_reversals, json_array_elements(outcome -> %(delta)s) AS d
    WHERE space_id = %(s)s AND source = {source}""").format(source=sql.Literal(source)),
        sql.SQL(
            "SELECT user_id, outcome FROM event_reversals WHERE space_id = %(s)s"
            " AND source = {source}"
        ).format(source=sql.Literal(source)),
        "event_reversals",
        line="event_reversal",
    )


EVENT_REVERSALS = _event_reversals(
    "event_reversals", "event_reversal", "event_reversal", "server", sql.Literal("")
)
CLIENT_EVENT_REVERSALS = _event_reversals(
    "client_event_reversals",
    "client_event_reversal",
    "client_event_reversal",
    "client",
    sql.Identifier("user_id"),
)

# Ticks of the sweeper: settling with no other write (docs/program.md "Time moves state").
# One per profile and due time; a tick that finds nothing due writes nothing.
TICKS = LogTable(
    "ticks",
    "tick",
    sql.SQL("""
    INSERT INTO ticks (space_id, transaction_id, user_id, due_at, received_at, outcome,
                       program_versions, profile_version, position)
    SELECT space_id, transaction_id, user_id, due_at, received_at, outcome::json,
           program_versions::jsonb, profile_version, position
    FROM json_to_recordset(%(ticks)s::json) AS x(
        space_id bigint, transaction_id text, user_id text, due_at timestamptz,
        received_at timestamptz, outcome text, program_versions text, profile_version bigint,
        position integer)
    ON CONFLICT (space_id, transaction_id) DO NOTHING
    RETURNING 'ticks'::text AS kind, space_id, transaction_id AS id, user_id"""),
    _stored_answers("ticks"),
    sql.SQL("""
    SELECT 'tick', t.user_id, t.profile_version, t.position, t.transaction_id, '', NULL,
           t.due_at, t.received_at, t.program_versions::text, NULL
    FROM ticks t
    WHERE t.space_id = %(s)s AND t.user_id = ANY(%(users)s) AND t.received_at < %(to)s"""),
    None,
    sql.SQL("SELECT user_id, outcome FROM ticks WHERE space_id = %(s)s"),
    line="tick",
)

LOG_TABLES: tuple[LogTable, ...] = (
    EVENTS,
    CLIENT_EVENTS,
    REDEMPTIONS,
    IDENTIFIES,
    ADJUSTMENTS,
    REVERSALS,
    EVENT_REVERSALS,
    CLIENT_EVENT_REVERSALS,
    TICKS,
)
BY_NAMESPACE = {t.namespace: t for t in LOG_TABLES if t.namespace is not None}
