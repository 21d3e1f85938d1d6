-- Support operations (docs/api.md "Support operations"): balance adjustments and redemption reversals. Both are
-- writes of a profile like events: idempotent on their transaction id in their own
-- namespace (the primary key), and in processing order by (profile_version, position).
CREATE TABLE adjustments (
    seq                 bigserial NOT NULL,
    space_id            bigint NOT NULL REFERENCES spaces (id),
    transaction_id      text NOT NULL,
    adjustment_id       text NOT NULL,
    user_id             text NOT NULL,
    wallet              text NOT NULL,
    amount              numeric NOT NULL,
    counts_toward_level boolean NOT NULL,
    reason              text NOT NULL,
    actor               text,
    received_at         timestamptz NOT NULL,
    request_hash        bytea NOT NULL,
    hash_form           smallint NOT NULL DEFAULT 2,
    outcome             json NOT NULL,  -- the answer, verbatim for a duplicate
    program_versions    jsonb NOT NULL,
    profile_version     bigint NOT NULL,
    position            integer NOT NULL,
    PRIMARY KEY (space_id, transaction_id)
);
CREATE INDEX adjustments_profile ON adjustments (space_id, user_id, seq DESC);

-- At most one reversal per redemption: keyed by the redemption's transaction id.
CREATE TABLE reversals (
    seq              bigserial NOT NULL,
    space_id         bigint NOT NULL REFERENCES spaces (id),
    transaction_id   text NOT NULL,
    user_id          text NOT NULL,
    reason           text NOT NULL,
    actor            text,
    received_at      timestamptz NOT NULL,
    outcome          json NOT NULL,
    program_versions jsonb NOT NULL,
    profile_version  bigint NOT NULL,
    position         integer NOT NULL,
    PRIMARY KEY (space_id, transaction_id),
    FOREIGN KEY (space_id, transaction_id) REFERENCES redemptions (space_id, transaction_id)
);
CREATE INDEX reversals_profile ON reversals (space_id, user_id, seq DESC);
