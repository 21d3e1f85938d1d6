-- The console an operator runs the program from (docs/operations.md "The console"): flash messages kept
-- with the session, the webhook inspector's data (the breaker's state, every attempt's
-- request headers and response body, a rotated secret's 24-hour overlap), customers found
-- by any trait value, analytics kept as the ledger is written, and an audit log that
-- filters.

-- A notice, an error or a form's values, shown once by the next page (post-redirect-get):
-- never read from the URL, where anyone can write a banner.
ALTER TABLE operator_sessions ADD COLUMN flash jsonb;

-- The breaker (an endpoint that cannot be reached is paused) is written where the
-- dispatcher decides it, so every process's console shows it. A rotated secret keeps
-- signing beside the new one until previous_secret_until.
ALTER TABLE webhook_endpoints
    ADD COLUMN paused_until          timestamptz,
    ADD COLUMN unreachable           integer NOT NULL DEFAULT 0,
    ADD COLUMN previous_secret       text,
    ADD COLUMN previous_secret_until timestamptz,
    ADD COLUMN disabled_reason       text;
ALTER TABLE webhook_attempts
    ADD COLUMN request_headers jsonb,
    ADD COLUMN response_body   text;  -- the first 4 KiB
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (space_id, status, created_at DESC);
CREATE INDEX webhook_deliveries_type ON webhook_deliveries (space_id, event_type, created_at DESC);

-- Find a customer by any trait value ("petr", an e-mail) without the trait's name: the
-- scalar values, lower-cased, in one trigram-indexed text. Stored (computed when traits are
-- written): a search that walks the newest profiles compares text, where evaluating the
-- path expression per row cost 850 ms over 100,000 customers (bench/RESULTS-console.md).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE FUNCTION perkamo_trait_values(traits jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(coalesce(string_agg(v #>> '{}', ' | '), ''))
    FROM jsonb_path_query(traits, 'strict $.**') AS v
    WHERE jsonb_typeof(v) IN ('string', 'number', 'boolean')
$$;
ALTER TABLE profiles ADD COLUMN trait_text text
    GENERATED ALWAYS AS (perkamo_trait_values(traits)) STORED;
CREATE INDEX profiles_trait_text ON profiles USING gin (trait_text gin_trgm_ops);

-- Analytics, kept as the ledger is written: one statement trigger per ledger table adds the
-- inserted rows' balance changes per Space, UTC day and wallet (and, for events, each
-- rule's awards) in the transaction that writes them; a page reads a few hundred rows.
CREATE TABLE ledger_daily (
    space_id  bigint NOT NULL REFERENCES spaces (id),
    day       date NOT NULL,
    wallet    text NOT NULL,
    issued    numeric NOT NULL DEFAULT 0,  -- positive balance changes
    spent     numeric NOT NULL DEFAULT 0,  -- negative ones, as a positive number
    PRIMARY KEY (space_id, day, wallet)
);
CREATE TABLE rule_daily (
    space_id  bigint NOT NULL REFERENCES spaces (id),
    day       date NOT NULL,
    rule      text NOT NULL,
    wallet    text NOT NULL,
    awarded   numeric NOT NULL DEFAULT 0,
    firings   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (space_id, day, rule, wallet)
);
-- Customers with a write that day (any event, identify, redemption or adjustment), and new
-- ones: a profile's updated_at moving to another day is one more active customer.
CREATE TABLE activity_daily (
    space_id  bigint NOT NULL REFERENCES spaces (id),
    day       date NOT NULL,
    active    bigint NOT NULL DEFAULT 0,
    new       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (space_id, day)
);
-- Levels depend on the program, not only on the ledger: a rollup per Space, recomputed in
-- the background when older than a few minutes or when the leveling version changed.
CREATE TABLE level_rollup (
    space_id     bigint PRIMARY KEY REFERENCES spaces (id),
    computed_at  timestamptz NOT NULL,
    version      text,
    counts       jsonb NOT NULL  -- level -> customers
);

CREATE FUNCTION perkamo_ledger_daily() RETURNS trigger AS $$
BEGIN
    INSERT INTO ledger_daily (space_id, day, wallet, issued, spent)
    SELECT n.space_id, (n.received_at AT TIME ZONE 'UTC')::date, d ->> 'wallet',
           sum(greatest((d ->> 'amount')::numeric, 0)),
           sum(greatest(-(d ->> 'amount')::numeric, 0))
    FROM new_rows n, json_array_elements(n.outcome -> 'delta') AS d
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (space_id, day, wallet) DO UPDATE
        SET issued = ledger_daily.issued + EXCLUDED.issued,
            spent = ledger_daily.spent + EXCLUDED.spent;
    IF TG_TABLE_NAME = 'events' THEN
        INSERT INTO rule_daily (space_id, day, rule, wallet, awarded, firings)
        SELECT n.space_id, (n.received_at AT TIME ZONE 'UTC')::date, b ->> 'key',
               b ->> 'wallet', sum((b ->> 'amount')::numeric), count(*)
        FROM new_rows n, json_array_elements(n.outcome -> 'breakdown') AS b
        WHERE b ->> 'source' = 'rule'
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4
        ON CONFLICT (space_id, day, rule, wallet) DO UPDATE
            SET awarded = rule_daily.awarded + EXCLUDED.awarded,
                firings = rule_daily.firings + EXCLUDED.firings;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_ledger_daily AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION perkamo_ledger_daily();
CREATE TRIGGER redemptions_ledger_daily AFTER INSERT ON redemptions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION perkamo_ledger_daily();
CREATE TRIGGER adjustments_ledger_daily AFTER INSERT ON adjustments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION perkamo_ledger_daily();
CREATE TRIGGER reversals_ledger_daily AFTER INSERT ON reversals
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION perkamo_ledger_daily();

CREATE FUNCTION perkamo_activity_new() RETURNS trigger AS $$
BEGIN
    INSERT INTO activity_daily (space_id, day, active, new)
    SELECT space_id, (updated_at AT TIME ZONE 'UTC')::date, count(*), count(*)
    FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (space_id, day) DO UPDATE
        SET active = activity_daily.active + EXCLUDED.active,
            new = activity_daily.new + EXCLUDED.new;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION perkamo_activity_seen() RETURNS trigger AS $$
BEGIN
    INSERT INTO activity_daily (space_id, day, active)
    SELECT n.space_id, (n.updated_at AT TIME ZONE 'UTC')::date, count(*)
    FROM new_rows n JOIN old_rows o USING (space_id, user_id)
    WHERE (n.updated_at AT TIME ZONE 'UTC')::date > (o.updated_at AT TIME ZONE 'UTC')::date
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (space_id, day) DO UPDATE SET active = activity_daily.active + EXCLUDED.active;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER profiles_activity_new AFTER INSERT ON profiles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION perkamo_activity_new();
CREATE TRIGGER profiles_activity_seen AFTER UPDATE ON profiles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION perkamo_activity_seen();

-- What was written before this migration, once.
INSERT INTO ledger_daily (space_id, day, wallet, issued, spent)
SELECT space_id, day, wallet, sum(greatest(amount, 0)), sum(greatest(-amount, 0))
FROM (
    SELECT space_id, (received_at AT TIME ZONE 'UTC')::date AS day, d ->> 'wallet' AS wallet,
           (d ->> 'amount')::numeric AS amount
    FROM events, json_array_elements(outcome -> 'delta') AS d
    UNION ALL
    SELECT space_id, (received_at AT TIME ZONE 'UTC')::date, d ->> 'wallet',
           (d ->> 'amount')::numeric
    FROM redemptions, json_array_elements(outcome -> 'delta') AS d
    UNION ALL
    SELECT space_id, (received_at AT TIME ZONE 'UTC')::date, d ->> 'wallet',
           (d ->> 'amount')::numeric
    FROM adjustments, json_array_elements(outcome -> 'delta') AS d
    UNION ALL
    SELECT space_id, (received_at AT TIME ZONE 'UTC')::date, d ->> 'wallet',
           (d ->> 'amount')::numeric
    FROM reversals, json_array_elements(outcome -> 'delta') AS d
) changes
GROUP BY 1, 2, 3;
INSERT INTO rule_daily (space_id, day, rule, wallet, awarded, firings)
SELECT space_id, (received_at AT TIME ZONE 'UTC')::date, b ->> 'key', b ->> 'wallet',
       sum((b ->> 'amount')::numeric), count(*)
FROM events, json_array_elements(outcome -> 'breakdown') AS b
WHERE b ->> 'source' = 'rule'
GROUP BY 1, 2, 3, 4;
INSERT INTO activity_daily (space_id, day, active, new)
SELECT space_id, (received_at AT TIME ZONE 'UTC')::date, count(DISTINCT user_id), 0
FROM events GROUP BY 1, 2;
UPDATE activity_daily a SET new = c.new
FROM (SELECT space_id, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS new
      FROM profiles GROUP BY 1, 2) c
WHERE a.space_id = c.space_id AND a.day = c.day;

-- The audit log, filtered by Space, actor, kind and time, newest first.
CREATE INDEX audit_log_space ON audit_log (space_id, id DESC);
CREATE INDEX audit_log_actor ON audit_log (actor, id DESC);
CREATE INDEX audit_log_action ON audit_log (action, id DESC);
