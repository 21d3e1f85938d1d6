-- Spaces, API keys, profiles and the event log (the idempotency record).
CREATE TABLE spaces (
    id                 bigserial PRIMARY KEY,
    slug               text NOT NULL UNIQUE,
    name               text NOT NULL,
    environment        text NOT NULL CHECK (environment IN ('test', 'live')),
    require_signatures boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    space_id    bigint NOT NULL REFERENCES spaces (id),
    key_hash    bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_space ON api_keys (space_id);

CREATE TABLE profiles (
    space_id    bigint NOT NULL REFERENCES spaces (id),
    user_id     text NOT NULL,
    traits      jsonb NOT NULL,
    state       jsonb NOT NULL,
    version     bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (space_id, user_id)
);

CREATE TABLE events (
    seq             bigserial NOT NULL,
    space_id        bigint NOT NULL REFERENCES spaces (id),
    transaction_id  text NOT NULL,
    user_id         text NOT NULL,
    event           text NOT NULL,
    context         jsonb NOT NULL,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    request_hash    bytea NOT NULL,
    outcome         json NOT NULL,  -- json, not jsonb: a duplicate is answered verbatim
    PRIMARY KEY (space_id, transaction_id)
);
CREATE INDEX events_profile ON events (space_id, user_id, seq DESC);

-- Running servers cache key records; these notifications tell them to forget.
CREATE FUNCTION perkamo_notify_auth_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('perkamo_auth', TG_TABLE_NAME);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION perkamo_notify_auth_change();
CREATE TRIGGER spaces_changed AFTER UPDATE OR DELETE ON spaces
    FOR EACH STATEMENT EXECUTE FUNCTION perkamo_notify_auth_change();
