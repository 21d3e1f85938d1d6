-- Limits beyond what a bigint meter can be compared with (the console once accepted 10^23,
-- which then failed every group commit of its Space): dropped, i.e. no limit.
UPDATE spaces
SET limits = limits - ARRAY(
    SELECT key FROM jsonb_each(limits)
    WHERE jsonb_typeof(value) <> 'number' OR (value)::text::numeric NOT BETWEEN 1 AND 1e15
)
WHERE EXISTS (
    SELECT 1 FROM jsonb_each(limits)
    WHERE jsonb_typeof(value) <> 'number' OR (value)::text::numeric NOT BETWEEN 1 AND 1e15
);

-- Failed console logins, counted where every server process sees them (a per-process count
-- let two workers and concurrent attempts run twice the password checks the limit allows).
CREATE TABLE login_attempts (
    key text PRIMARY KEY,            -- 'account:<email>' or 'address:<client address>'
    window_start timestamptz NOT NULL,
    attempts integer NOT NULL
);
CREATE INDEX login_attempts_window ON login_attempts (window_start);
