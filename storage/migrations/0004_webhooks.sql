-- Webhooks: one endpoint per Space and the outbox of deliveries (written in the same
-- transaction as the event or redemption they announce), with every attempt kept.
CREATE TABLE webhook_endpoints (
    space_id    bigint PRIMARY KEY REFERENCES spaces (id),
    url         text NOT NULL,
    secret      text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id                text PRIMARY KEY,
    space_id          bigint NOT NULL REFERENCES spaces (id),
    event_type        text NOT NULL,
    body              text NOT NULL,  -- the exact bytes POSTed (and signed)
    status            text NOT NULL CHECK (status IN ('pending', 'delivered', 'retrying', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL,
    created_at        timestamptz NOT NULL,
    delivered_at      timestamptz,
    last_status_code  integer,
    last_status_text  text,
    last_duration_ms  integer,
    last_error        text
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX webhook_deliveries_space ON webhook_deliveries (space_id, created_at DESC);

CREATE TABLE webhook_attempts (
    delivery_id  text NOT NULL REFERENCES webhook_deliveries (id),
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL,
    status_code  integer,
    status_text  text,
    duration_ms  integer NOT NULL,
    error        text,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TRIGGER webhook_endpoints_changed AFTER INSERT OR UPDATE OR DELETE ON webhook_endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION perkamo_notify_auth_change();
