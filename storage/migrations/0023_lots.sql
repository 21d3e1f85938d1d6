-- Points that wait and points that expire (lots), returns and the sweeper's ticks.

-- The sweeper ticks every profile with something due (a pending lot to release, a lot to
-- expire) within 60 s of its due time: the next due time is written with every snapshot
-- (NULL for a profile without lots, which keeps such updates HOT), with the profile's
-- shard so that each member sweeps the shards it owns. The index serves the sweeper's
-- keyset walk (due times cluster at local midnights: many profiles share one).
ALTER TABLE profiles ADD COLUMN next_due timestamptz, ADD COLUMN due_shard smallint;
CREATE INDEX profiles_next_due ON profiles (next_due, space_id, user_id)
    WHERE next_due IS NOT NULL;

-- Returns: one reversal per event, keyed like the event itself (Space, transaction id,
-- source, and the customer for a browser-sent event: its ids are scoped to the customer; no
-- foreign key: the events' key is the product's to change), in processing order like every
-- write.
CREATE TABLE event_reversals (
    seq              bigserial NOT NULL,
    space_id         bigint NOT NULL REFERENCES spaces (id),
    transaction_id   text NOT NULL,
    user_id          text NOT NULL,
    reason           text NOT NULL,
    actor            text,
    received_at      timestamptz NOT NULL,
    outcome          json NOT NULL,  -- the answer, verbatim for a repeat
    program_versions jsonb NOT NULL,
    profile_version  bigint NOT NULL,
    position         integer NOT NULL,
    source           text NOT NULL DEFAULT 'server' CHECK (source IN ('server', 'client')),
    scope_user       text NOT NULL DEFAULT '',
    PRIMARY KEY (space_id, transaction_id, source, scope_user),
    CHECK ((source = 'server' AND scope_user = '')
        OR (source = 'client' AND scope_user = user_id))
);
CREATE INDEX event_reversals_profile ON event_reversals (space_id, user_id, seq DESC);

-- Ticks: settling with no other write. One per profile and due time (the transaction id
-- names both); a tick that finds nothing due writes nothing.
CREATE TABLE ticks (
    seq              bigserial NOT NULL,
    space_id         bigint NOT NULL REFERENCES spaces (id),
    transaction_id   text NOT NULL,
    user_id          text NOT NULL,
    due_at           timestamptz NOT NULL,
    received_at      timestamptz NOT NULL,
    outcome          json NOT NULL,  -- what it settled
    program_versions jsonb NOT NULL,
    profile_version  bigint NOT NULL,
    position         integer NOT NULL,
    PRIMARY KEY (space_id, transaction_id)
);
CREATE INDEX ticks_profile ON ticks (space_id, user_id, seq DESC);

-- An identify settles the profile too: what it released and expired is kept with it.
ALTER TABLE identifies ADD COLUMN outcome json;
