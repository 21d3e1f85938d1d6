-- Server processes sharing this database (docs/architecture.md "Several processes: shards and members").
-- Advisory: a member refreshes heartbeat_at every second and deletes its row on a clean
-- shutdown; a member whose heartbeat is older than a few seconds is gone.
CREATE TABLE members (
    id text PRIMARY KEY,
    address text,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    shards integer[] NOT NULL DEFAULT '{}'
);
