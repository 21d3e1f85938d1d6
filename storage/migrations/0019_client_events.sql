-- Browser-sent events (docs/api.md "The browser half") live in their own idempotency namespace per customer: the
-- event log is unique on (Space, source, the customer for client events, transaction id),
-- so a page can never use up, or collide with, a server event's transaction id.
ALTER TABLE events
    ADD COLUMN source text NOT NULL DEFAULT 'server' CHECK (source IN ('server', 'client')),
    ADD COLUMN scope_user text NOT NULL DEFAULT '';
ALTER TABLE events DROP CONSTRAINT events_pkey;
-- Transaction id second: every lookup by (Space, transaction id) stays one index probe.
ALTER TABLE events ADD PRIMARY KEY (space_id, transaction_id, source, scope_user);
ALTER TABLE events ADD CONSTRAINT events_scope_user
    CHECK ((source = 'server' AND scope_user = '') OR (source = 'client' AND scope_user = user_id));
