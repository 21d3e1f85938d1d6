-- Ed25519 keys that sign browser tokens, shared by every member (docs/api.md "The browser half"): one active key
-- per environment; a new key is published at once and signs from signs_from on; a retired
-- key verifies nothing.
CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    environment  text NOT NULL CHECK (environment IN ('test', 'live')),
    private_key  bytea NOT NULL,  -- raw 32-byte Ed25519 seed
    public_key   bytea NOT NULL,  -- raw 32 bytes
    created_at   timestamptz NOT NULL DEFAULT now(),
    signs_from   timestamptz NOT NULL,
    retired_at   timestamptz
);
CREATE INDEX signing_keys_environment ON signing_keys (environment, signs_from DESC);

CREATE TRIGGER signing_keys_changed AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION perkamo_notify_auth_change();
