"""The group commit's statements (``group_commit.py`` runs them): the whole flush in one
statement, and the limited meters grown within their limits before it."""

from psycopg import sql

from .log_tables import LOG_TABLES

# The whole flush in one statement with one parameter per table: the rows as one JSON
# document each (msgspec encodes them in C; PostgreSQL parses them in C), where array
# parameters cost psycopg ~8 µs of Python per array and ~48 arrays per flush. Every CTE
# runs; the rows it returns say which log rows and snapshots were written. A unit whose
# transaction id is taken or whose snapshot is stale refuses the whole flush (rolled back)
# and the rest is written again without it — rare, so the common case is one statement and
# COMMIT. One unit per profile is in flight, so no two CTEs touch the same row. JSON text
# columns travel as strings and are cast where they land (``outcome`` stays ``json``: the
# exact text is answered to a duplicate).
_PROFILES = sql.SQL("""np AS (
    INSERT INTO profiles (space_id, user_id, traits, state, version, created_at, updated_at,
                          next_due, due_shard)
    SELECT space_id, user_id, traits::jsonb, state::jsonb, version, updated_at, updated_at,
           next_due, due_shard
    FROM json_to_recordset(%(created)s::json) AS x(
        space_id bigint, user_id text, traits text, state text, updated_at timestamptz,
        version bigint, next_due timestamptz, due_shard smallint)
    ON CONFLICT (space_id, user_id) DO NOTHING
    RETURNING 'profiles'::text AS kind, space_id, ''::text AS id, user_id
), up AS (
    UPDATE profiles AS p
    SET traits = x.traits::jsonb, state = x.state::jsonb, version = x.version,
        updated_at = x.updated_at, next_due = x.next_due, due_shard = x.due_shard
    FROM json_to_recordset(%(updated)s::json) AS x(
        space_id bigint, user_id text, traits text, state text, updated_at timestamptz,
        expected_version bigint, version bigint, next_due timestamptz, due_shard smallint)
    WHERE p.space_id = x.space_id AND p.user_id = x.user_id
      AND p.version = x.expected_version
    RETURNING 'profiles'::text AS kind, p.space_id, ''::text AS id, p.user_id
), ob AS (
    INSERT INTO webhook_deliveries (id, space_id, event_type, body, status, next_attempt_at,
                                    created_at, subject)
    SELECT id, space_id, event_type, body, 'pending', created_at, created_at, subject
    FROM json_to_recordset(%(outbox)s::json) AS x(
        id text, space_id bigint, event_type text, body text, created_at timestamptz,
        subject text)
), us AS (
    INSERT INTO usage_counters (space_id, period, meter, used)
    SELECT space_id, period, meter, used
    FROM json_to_recordset(%(counters)s::json) AS x(
        space_id bigint, period date, meter text, used bigint)
    ON CONFLICT (space_id, period, meter) DO UPDATE
        SET used = usage_counters.used + EXCLUDED.used
), au AS (
    INSERT INTO audit_log (actor, action, space_id, target, reason, details, at)
    SELECT actor, action, space_id, target, reason, details::jsonb, at
    FROM json_to_recordset(%(audits)s::json) AS x(
        actor text, action text, space_id bigint, target text, reason text, details text,
        at timestamptz)
), ud AS (
    INSERT INTO usage_daily (space_id, day, meter, used)
    SELECT space_id, (now() AT TIME ZONE 'UTC')::date, meter, used
    FROM json_to_recordset(%(usage)s::json) AS x(space_id bigint, meter text, used bigint)
    ON CONFLICT (space_id, day, meter) DO UPDATE SET used = usage_daily.used + EXCLUDED.used
)""")


# The Spaces of the flush's snapshots that are frozen: their units are refused (rolled back
# with the rest and flushed again without them). Read in the flush's own statement, so a
# freeze that committed before it is seen; ``perkamo spaces freeze`` then waits for the
# flushes already running (a SHARE lock on profiles), after which none writes the Space.
_FROZEN = sql.SQL("""SELECT 'frozen'::text, s.id, ''::text, ''::text FROM spaces s
    WHERE s.frozen AND s.id IN (SELECT value::bigint
                                FROM json_array_elements_text(%(spaces)s::json))""")


def _flush(*, guarded: bool = False) -> sql.Composed:
    """WITH <one CTE per log table>, <profiles, outbox, meters, audit> SELECT <the log rows
    and snapshots written>. ``guarded``: SELECT nothing, and fail with division_by_zero
    unless every one of the ``%(expected)s`` log rows and snapshots was written and none of
    the Spaces is frozen — sent with
    its COMMIT in one round trip, a flush with a refused unit then commits nothing (the
    writer rolls back and flushes again the long way, to learn which units were refused)."""
    ctes = [sql.SQL("{} AS ({})").format(_cte(t.name), t.insert) for t in LOG_TABLES]
    keyed = [t for t in LOG_TABLES if t.namespace is not None]
    written: list[sql.Composable] = [
        sql.SQL("SELECT * FROM {}").format(_cte(t.name)) for t in keyed
    ]
    written += [sql.SQL("SELECT * FROM np"), sql.SQL("SELECT * FROM up")]
    if not guarded:  # the frozen Spaces' rows tell the writer which units to refuse
        union = sql.SQL(" UNION ALL ").join([*written, _FROZEN])
        return sql.SQL("WITH {}, {} {}").format(sql.SQL(", ").join(ctes), _PROFILES, union)
    # A frozen Space fails the guard too (its rows never make up for a refused row's).
    guard = sql.SQL(
        "SELECT 1 / (CASE WHEN (SELECT count(*) FROM ({}) AS w) = %(expected)s::bigint"
        " AND NOT EXISTS ({}) THEN 1 ELSE 0 END)"
    ).format(sql.SQL(" UNION ALL ").join(written), _FROZEN)
    return sql.SQL("WITH {}, {} {}").format(sql.SQL(", ").join(ctes), _PROFILES, guard)


def _cte(table: str) -> sql.Identifier:
    return sql.Identifier("w_" + table)  # never the table's own name


FLUSH = _flush()
FLUSH_GUARDED = _flush(guarded=True)

# Limited meters, before the flush's statement and in its transaction: the rows exist, are
# locked in a fixed order (two writers never deadlock on them), and grow only within their
# limits. A meter not returned would pass its limit: its units are refused. Under READ
# COMMITTED a writer waiting on the row lock re-checks the limit against the committed value.
ENSURE_LIMITED = """
INSERT INTO usage_counters (space_id, period, meter, used)
SELECT space_id, period, meter, 0
FROM json_to_recordset(%(limited)s::json) AS x(space_id bigint, period date, meter text)
ORDER BY 1, 2, 3
ON CONFLICT (space_id, period, meter) DO NOTHING
"""
GROW_LIMITED = """
WITH x AS (
    SELECT * FROM json_to_recordset(%(limited)s::json) AS x(
        space_id bigint, period date, meter text, used bigint, lim bigint)
), locked AS (
    SELECT c.space_id, c.period, c.meter FROM usage_counters c
    JOIN x USING (space_id, period, meter)
    ORDER BY 1, 2, 3 FOR UPDATE OF c
)
UPDATE usage_counters c SET used = c.used + x.used
FROM x JOIN locked l USING (space_id, period, meter)
WHERE c.space_id = x.space_id AND c.period = x.period AND c.meter = x.meter
  AND c.used + x.used <= x.lim
RETURNING c.space_id, c.period, c.meter
"""
