"""Which shard a profile belongs to: a stable hash of (space_id, user_id) — never Python's
``hash``, which differs between processes. The cluster assigns shards to members
(``perkamo/cluster/shards.py``); a profile's snapshot records its shard beside its next due
time, so that each member sweeps the profiles of the shards it owns."""

from __future__ import annotations

import hashlib

SHARDS = 256  # 256 advisory locks per cluster: far below PostgreSQL's lock table (6,400)


def shard_of(space_id: int, user_id: str) -> int:
    digest = hashlib.blake2b(f"{space_id}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SHARDS
