"""Which shard a profile belongs to (``perkamo/profiles/shards.py``), and which member should
own a shard.

A shard's preferred owner is chosen by rendezvous hashing over
the live members: each member scores every shard and the highest score wins, so a member
joining or leaving moves only the shards it wins or held (an equal share each)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from perkamo.profiles.shards import SHARDS, shard_of

__all__ = ["LOCK_NAMESPACE", "SHARDS", "preferences", "preferred", "shard_of"]

LOCK_NAMESPACE = 0x7065726B  # "perk": the first key of every shard's advisory lock


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
