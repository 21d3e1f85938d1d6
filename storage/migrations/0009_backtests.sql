-- Back-tests (docs/api.md "Trying a program"): one row per job, the only thing a back-test writes. At most one
-- running back-test per Space (the partial unique index); ``member`` is the server process
-- running it, so a job whose process is gone can be told from a live one.
CREATE TABLE backtests (
    id            text PRIMARY KEY,
    space_id      bigint NOT NULL REFERENCES spaces (id),
    status        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    program       jsonb NOT NULL,
    window_from   timestamptz,
    window_to     timestamptz,
    events_done   bigint NOT NULL DEFAULT 0,
    events_total  bigint NOT NULL DEFAULT 0,
    report        jsonb,
    error         text,
    member        text
);
CREATE UNIQUE INDEX backtests_one_running ON backtests (space_id) WHERE status = 'running';
CREATE INDEX backtests_space ON backtests (space_id, created_at DESC);
