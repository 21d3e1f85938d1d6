-- Redemptions (their own idempotency namespace), usage meters, per-Space limits.
ALTER TABLE spaces ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';

CREATE TABLE redemptions (
    seq             bigserial NOT NULL,
    space_id        bigint NOT NULL REFERENCES spaces (id),
    transaction_id  text NOT NULL,
    user_id         text NOT NULL,
    reward_key      text NOT NULL,
    context         jsonb NOT NULL,
    received_at     timestamptz NOT NULL,
    request_hash    bytea NOT NULL,
    outcome         json NOT NULL,
    PRIMARY KEY (space_id, transaction_id)
);
CREATE INDEX redemptions_profile ON redemptions (space_id, user_id, seq DESC);

-- Calendar-month meters, incremented in the same transaction as the work they count.
CREATE TABLE usage_counters (
    space_id  bigint NOT NULL REFERENCES spaces (id),
    period    date NOT NULL,
    meter     text NOT NULL,
    used      bigint NOT NULL,
    PRIMARY KEY (space_id, period, meter)
);
