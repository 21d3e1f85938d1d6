"""Which shards a member takes and gives up at a heartbeat: a pure decision over what the
members table and PostgreSQL's lock table say (so that it can be tested exhaustively).

- A member takes every free shard it prefers (rendezvous over the live members) at once.
- A free shard its preferred owner has not taken for ``PATIENCE`` heartbeats in a row is
  taken by anyone (that owner may be starting, or unable to): no shard stays unowned.
- A member gives up a shard another live member prefers once that member has been live
  for ``PATIENCE`` heartbeats in a row (a member that just appeared, or is already going,
  gets nothing handed over)."""

from __future__ import annotations

from dataclasses import dataclass, field

from perkamo.cluster.shards import SHARDS, preferred

PATIENCE = 2  # heartbeats


@dataclass
class Plan:
    acquire: list[int]
    release: dict[int, str]  # shard → the member that should take it


@dataclass
class Balancer:
    member: str
    free_rounds: dict[int, int] = field(default_factory=dict)
    live_rounds: dict[str, int] = field(default_factory=dict)

    def plan(self, live: set[str], held: set[int], locked: set[int]) -> Plan:
        """``live``: the live members (this one included); ``held``: the shards this
        member holds; ``locked``: every shard some member holds (``held`` included)."""
        self.live_rounds = {m: self.live_rounds.get(m, 0) + 1 for m in live}
        everyone = live | {self.member}
        acquire, release = [], {}
        rounds: dict[int, int] = {}
        for shard in range(SHARDS):
            owner = preferred(shard, everyone)
            if shard not in locked:
                rounds[shard] = self.free_rounds.get(shard, 0) + 1
                if owner == self.member or rounds[shard] > PATIENCE:
                    acquire.append(shard)
            elif shard in held and owner is not None and owner != self.member:
                if self.live_rounds.get(owner, 0) > PATIENCE:
                    release[shard] = owner
        self.free_rounds = rounds
        return Plan(acquire, release)
