"""The group commit's statements (``group_commit.py`` runs them): the whole flush in one
statement, and the limited meters grown within their limits before it."""

# The whole flush in one statement with one parameter per table: the rows as one JSON
# document each (msgspec encodes them in C; PostgreSQL parses them in C), where array
# parameters cost psycopg ~8 µs of Python per array and ~48 arrays per flush. Every CTE
# runs; the rows it returns say which log rows and snapshots were written. A unit whose
# transaction id is taken or whose snapshot is stale refuses the whole flush (rolled back)
# and the rest is written again without it — rare, so the common case is one statement and
# COMMIT. One unit per profile is in flight, so no two CTEs touch the same row. JSON text
# columns travel as strings and are cast where they land (``outcome`` stays ``json``: the
# exact text is answered to a duplicate).
FLUSH = """
WITH ev AS (
    INSERT INTO events (space_id, transaction_id, user_id, event, context, occurred_at,
                        received_at, request_hash, outcome, profile_version, position,
                        event_id)
    SELECT space_id, transaction_id, user_id, event, context::jsonb, occurred_at,
           received_at, decode(request_hash, 'base64'), outcome::json, profile_version,
           position, event_id
    FROM json_to_recordset(%(events)s::json) AS x(
        space_id bigint, transaction_id text, user_id text, event text, context text,
        occurred_at timestamptz, received_at timestamptz, request_hash text, outcome text,
        profile_version bigint, position integer, event_id text)
    ON CONFLICT (space_id, transaction_id) DO NOTHING
    RETURNING 'e'::text AS kind, space_id, transaction_id AS id, user_id
), rd AS (
    INSERT INTO redemptions (space_id, transaction_id, user_id, reward_key, context,
                             received_at, request_hash, outcome, profile_version, position,
                             redemption_id)
    SELECT space_id, transaction_id, user_id, reward_key, context::jsonb, received_at,
           decode(request_hash, 'base64'), outcome::json, profile_version, position,
           redemption_id
    FROM json_to_recordset(%(redemptions)s::json) AS x(
        space_id bigint, transaction_id text, user_id text, reward_key text, context text,
        received_at timestamptz, request_hash text, outcome text, profile_version bigint,
        position integer, redemption_id text)
    ON CONFLICT (space_id, transaction_id) DO NOTHING
    RETURNING 'r'::text AS kind, space_id, transaction_id AS id, user_id
), ad AS (
    INSERT INTO adjustments (space_id, transaction_id, adjustment_id, user_id, wallet, amount,
                             counts_toward_level, reason, actor, received_at, request_hash,
                             outcome, program_versions, profile_version, position)
    SELECT space_id, transaction_id, adjustment_id, user_id, wallet, amount::numeric,
           counts_toward_level, reason, actor, received_at, decode(request_hash, 'base64'),
           outcome::json, program_versions::jsonb, profile_version, position
    FROM json_to_recordset(%(adjustments)s::json) AS x(
        space_id bigint, transaction_id text, adjustment_id text, user_id text, wallet text,
        amount text, counts_toward_level boolean, reason text, actor text,
        received_at timestamptz, request_hash text, outcome text, program_versions text,
        profile_version bigint, position integer)
    ON CONFLICT (space_id, transaction_id) DO NOTHING
    RETURNING 'a'::text AS kind, space_id, transaction_id AS id, user_id
), rv AS (
    INSERT INTO reversals (space_id, transaction_id, user_id, reason, actor, received_at,
                           outcome, program_versions, profile_version, position)
    SELECT space_id, transaction_id, user_id, reason, actor, received_at, outcome::json,
           program_versions::jsonb, profile_version, position
    FROM json_to_recordset(%(reversals)s::json) AS x(
        space_id bigint, transaction_id text, user_id text, reason text, actor text,
        received_at timestamptz, outcome text, program_versions text, profile_version bigint,
        position integer)
    ON CONFLICT (space_id, transaction_id) DO NOTHING
    RETURNING 'v'::text AS kind, space_id, transaction_id AS id, user_id
), np AS (
    INSERT INTO profiles (space_id, user_id, traits, state, version, created_at, updated_at)
    SELECT space_id, user_id, traits::jsonb, state::jsonb, 1, updated_at, updated_at
    FROM json_to_recordset(%(created)s::json) AS x(
        space_id bigint, user_id text, traits text, state text, updated_at timestamptz)
    ON CONFLICT (space_id, user_id) DO NOTHING
    RETURNING 'p'::text AS kind, space_id, ''::text AS id, user_id
), up AS (
    UPDATE profiles AS p
    SET traits = x.traits::jsonb, state = x.state::jsonb, version = x.expected_version + 1,
        updated_at = x.updated_at
    FROM json_to_recordset(%(updated)s::json) AS x(
        space_id bigint, user_id text, traits text, state text, updated_at timestamptz,
        expected_version bigint)
    WHERE p.space_id = x.space_id AND p.user_id = x.user_id
      AND p.version = x.expected_version
    RETURNING 'p'::text AS kind, p.space_id, ''::text AS id, p.user_id
), idf AS (
    INSERT INTO identifies (space_id, user_id, traits, received_at, program_versions,
                            profile_version, position)
    SELECT space_id, user_id, traits::jsonb, received_at, program_versions::jsonb,
           profile_version, position
    FROM json_to_recordset(%(identifies)s::json) AS x(
        space_id bigint, user_id text, traits text, received_at timestamptz,
        program_versions text, profile_version bigint, position integer)
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
)
SELECT * FROM ev UNION ALL SELECT * FROM rd UNION ALL SELECT * FROM ad
UNION ALL SELECT * FROM rv UNION ALL SELECT * FROM np UNION ALL SELECT * FROM up
"""

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
