-- The operator console (docs/operations.md "The console"): operators, their sessions, the audit log, and what the
-- console's screens read quickly at scale.
CREATE TABLE operators (
    id                  bigserial PRIMARY KEY,
    email               text NOT NULL UNIQUE,
    role                text NOT NULL CHECK (role IN ('admin', 'viewer')),
    password_hash       text NOT NULL,  -- argon2id
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

-- The cookie holds a random id; only its SHA-256 is stored.
CREATE TABLE operator_sessions (
    id_hash       bytea PRIMARY KEY,
    operator_id   bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL,
    space_id  bigint REFERENCES spaces (id),
    target    text,
    reason    text,
    details   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_recent ON audit_log (at DESC, id DESC);

-- Keys: when last used (written at most once a minute per key), and a revocation that may
-- lie in the future (rotation with a grace period: the old key works until then).
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

-- Events and customers, newest first, keyset-paginated on an index.
CREATE INDEX events_recent ON events (space_id, received_at DESC, seq DESC);
CREATE INDEX profiles_recent ON profiles (space_id, updated_at DESC, user_id);

-- Find any id: an event's evt_… and a redemption's rdm_… (rows written before this
-- migration keep them only inside their outcome).
ALTER TABLE events ADD COLUMN event_id text;
CREATE INDEX events_event_id ON events (space_id, event_id) WHERE event_id IS NOT NULL;
ALTER TABLE redemptions ADD COLUMN redemption_id text;
CREATE INDEX redemptions_redemption_id ON redemptions (space_id, redemption_id)
    WHERE redemption_id IS NOT NULL;

-- Event writes that did not apply (duplicates and refusals), for the Events screen; written
-- by the HTTP layer in batches, best effort.
CREATE TABLE event_attempts (
    seq             bigserial NOT NULL,
    space_id        bigint NOT NULL REFERENCES spaces (id),
    received_at     timestamptz NOT NULL,
    transaction_id  text,
    user_id         text,
    event           text,
    status          text NOT NULL CHECK (status IN ('duplicate', 'refused')),
    code            text,
    message         text,
    request_id      text,
    PRIMARY KEY (space_id, seq)
);
CREATE INDEX event_attempts_recent ON event_attempts (space_id, received_at DESC, seq DESC);
CREATE INDEX event_attempts_request ON event_attempts (space_id, request_id)
    WHERE request_id IS NOT NULL;

-- A delivery names what it announces (an event's transaction id, a redemption's), so one
-- event's page lists its deliveries.
ALTER TABLE webhook_deliveries ADD COLUMN subject text;
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (space_id, subject)
    WHERE subject IS NOT NULL;

-- Daily usage beside the monthly meters, for the usage chart.
CREATE TABLE usage_daily (
    space_id  bigint NOT NULL REFERENCES spaces (id),
    day       date NOT NULL,
    meter     text NOT NULL,
    used      bigint NOT NULL,
    PRIMARY KEY (space_id, day, meter)
);
