"""Which shard a profile belongs to, and which member should own a shard.

A profile's shard is a stable hash of (space_id, user_id) — never Python's ``hash``, which
differs between processes. A shard's preferred owner is chosen by rendezvous hashing over
the live members: each member scores every shard and the highest score wins, so a member
joining or leaving moves only the shards it wins or held (an equal share each)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SHARDS = 256  # 256 advisory locks per cluster: far below PostgreSQL's lock table (6,400)
LOCK_NAMESPACE = 0x7065726B  # "perk": the first key of every shard's advisory lock


def shard_of(space_id: int, user_id: str) -> int:
    digest = hashlib.blake2b(f"{space_id}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SHARDS


def _score(member: str, shard: int) -> int:
    digest = hashlib.blake2b(f"{member}\x00{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preferred(shard: int, members: Iterable[str]) -> str | None:
    """The member that should own ``shard`` among ``members`` (None: no member)."""
    return max(members, key=lambda m: (_score(m, shard), m), default=None)


def preferences(member: str, members: Iterable[str]) -> set[int]:
    """The shards ``member`` should own among ``members`` (it included)."""
    everyone = set(members) | {member}
    return {s for s in range(SHARDS) if preferred(s, everyone) == member}
