"""Several processes and hosts (docs/architecture.md, "Several processes and nodes"): profiles
are spread over shards, each shard owned by one member through a PostgreSQL advisory lock,
and any member forwards a profile's messages to its shard's owner over an authenticated
internal connection. Correctness never depends on ownership: every snapshot write is
version-checked; ownership keeps a profile warm and serialized in one place."""
