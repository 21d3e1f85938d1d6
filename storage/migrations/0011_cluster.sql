-- Several members (docs/architecture.md "Several processes: shards and members"): each member's row names
-- the PostgreSQL session that holds its shard locks (a member whose session is gone is gone,
-- whatever its heartbeat says), and the cluster's secret authenticates the internal port.
ALTER TABLE members ADD COLUMN backend_pid integer;

CREATE TABLE cluster_secret (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    secret  text NOT NULL
);
