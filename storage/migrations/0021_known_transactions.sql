-- Transaction ids another system already applied, imported at a cut-over (docs/operations.md (moving a Space)): a
-- later event or redemption with one of them answers as an imported duplicate instead of
-- applying. The log's inserts skip a known id (log_tables.py), so the unique keys of the log
-- and of this table together are the guard; importing takes a SHARE lock on the log tables
-- so that no write of the same id is in flight while known ids are added.
CREATE TABLE known_transactions (
    space_id        bigint NOT NULL REFERENCES spaces (id),
    namespace       text NOT NULL CHECK (namespace IN ('event', 'redemption')),
    transaction_id  text NOT NULL,
    user_id         text,  -- NULL: a retry by any customer is the imported duplicate
    known_id        text NOT NULL,  -- imp_…, answered as the event_id / redemption_id
    imported_at     timestamptz NOT NULL,
    PRIMARY KEY (space_id, namespace, transaction_id)
);
