-- The browser half (docs/api.md "The browser half"): browser keys per Space with their policy, and the scope that
-- lets a server key mint browser tokens.
CREATE TABLE browser_keys (
    id               text PRIMARY KEY,              -- bkey_…: what tokens name (claim bk)
    space_id         bigint NOT NULL REFERENCES spaces (id),
    key_hash         bytea NOT NULL UNIQUE,         -- sha256 of bk_<env>_…; shown once
    prefix           text NOT NULL,
    name             text NOT NULL,
    allowed_origins  text[] NOT NULL,
    allowed_events   text[] NOT NULL,
    capabilities     jsonb NOT NULL,                -- {"read", "events", "stream"}: booleans
    rate             jsonb NOT NULL,                -- {"per_second", "burst"}
    expose_traits    text[],                        -- NULL: no traits shown to a browser
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
CREATE INDEX browser_keys_space ON browser_keys (space_id, created_at DESC);

-- Servers cache browser keys beside API keys: the same notification tells them to forget.
CREATE TRIGGER browser_keys_changed AFTER INSERT OR UPDATE OR DELETE ON browser_keys
    FOR EACH STATEMENT EXECUTE FUNCTION perkamo_notify_auth_change();

-- The hosted service lets any server key mint tokens: keys that could send events gain the
-- new scope (keys created with an explicit list afterwards have it only if they name it).
UPDATE api_keys SET scopes = array_append(scopes, 'browser:tokens')
WHERE 'events:write' = ANY (scopes) AND NOT 'browser:tokens' = ANY (scopes);
