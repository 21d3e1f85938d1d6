"""Shards: a stable hash, rendezvous preferences that split the shards evenly and move only
what they must, and the balancer's decisions at each heartbeat."""

from __future__ import annotations

from perkamo.cluster.ownership import PATIENCE, Balancer
from perkamo.cluster.shards import SHARDS, preferences, preferred, shard_of


def test_a_profiles_shard_is_stable_across_processes():
    # Pinned values: Python's own hash() differs between processes; this one must not.
    assert shard_of(1, "u") == 205
    assert shard_of(42, "ann") == 134
    assert shard_of(1, "u") != shard_of(2, "u") or shard_of(1, "v") != shard_of(1, "u")
    spread = {shard_of(7, f"user-{n}") for n in range(5000)}
    assert len(spread) == SHARDS  # every shard is used


def test_preferences_partition_the_shards_evenly():
    members = ["a1", "b2", "c3"]
    shares = [preferences(m, members) for m in members]
    assert set().union(*shares) == set(range(SHARDS))
    assert sum(len(s) for s in shares) == SHARDS  # disjoint
    assert all(50 <= len(s) <= 120 for s in shares), [len(s) for s in shares]


def test_a_member_joining_takes_shards_only_for_itself():
    before = {s: preferred(s, ["a1", "b2"]) for s in range(SHARDS)}
    after = {s: preferred(s, ["a1", "b2", "c3"]) for s in range(SHARDS)}
    moved = {s for s in range(SHARDS) if before[s] != after[s]}
    assert moved and all(after[s] == "c3" for s in moved)


def test_alone_a_member_takes_every_shard():
    plan = Balancer("a1").plan({"a1"}, held=set(), locked=set())
    assert sorted(plan.acquire) == list(range(SHARDS)) and not plan.release


def test_shards_are_handed_to_a_member_once_it_has_been_live_a_while():
    a = Balancer("a1")
    everything = set(range(SHARDS))
    a.plan({"a1"}, held=set(), locked=set())
    wanted_by_b = preferences("b2", ["a1", "b2"])
    for _ in range(PATIENCE):  # b just appeared: nothing handed over yet
        assert not a.plan({"a1", "b2"}, held=everything, locked=everything).release
    plan = a.plan({"a1", "b2"}, held=everything, locked=everything)
    assert set(plan.release) == wanted_by_b and set(plan.release.values()) == {"b2"}


def test_a_free_shard_waits_for_its_preferred_owner_then_anyone_takes_it():
    a = Balancer("a1")
    mine = preferences("a1", ["a1", "b2"])
    theirs = set(range(SHARDS)) - mine
    plan = a.plan({"a1", "b2"}, held=set(), locked=set())
    assert set(plan.acquire) == mine  # b2's shards are left for b2 first
    for _ in range(PATIENCE - 1):
        assert set(a.plan({"a1", "b2"}, held=mine, locked=mine).acquire) == set()
    assert set(a.plan({"a1", "b2"}, held=mine, locked=mine).acquire) == theirs


def test_when_a_member_is_gone_its_shards_are_taken_at_once():
    a = Balancer("a1")
    mine = preferences("a1", ["a1", "b2"])
    # b2's session vanished: it is no longer live, and its locks are gone with it.
    plan = a.plan({"a1"}, held=mine, locked=mine)
    assert set(plan.acquire) == set(range(SHARDS)) - mine
