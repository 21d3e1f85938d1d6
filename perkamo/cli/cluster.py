"""``perkamo cluster status``: the members sharing this database, their addresses, the
shards each holds (PostgreSQL's lock table is the truth; the members table says what each
published) and how long ago each was heard from."""

from __future__ import annotations

import argparse

from perkamo.cluster.shards import LOCK_NAMESPACE, SHARDS
from storage import Database
from storage import members as store


def cluster_status(args: argparse.Namespace, db: Database) -> None:
    del args
    members = db.call(store.all_members)
    holders = db.call(store.lock_holders, LOCK_NAMESPACE)
    pids = {m.id: m.backend_pid for m in members}
    print(f"{'member':<18}{'address':<24}{'host:pid':<24}{'shards':>7}{'heartbeat':>11}  state")
    for m in members:
        held = sum(1 for pid in holders.values() if pid == pids[m.id])
        state = "live" if m.alive and m.heartbeat_age < 3 else "gone"
        role = m.address or "(command)"
        print(
            f"{m.id:<18}{role:<24}{f'{m.host}:{m.pid}':<24}{held:>7}"
            f"{m.heartbeat_age:>10.1f}s  {state}"
        )
    print(f"{len(holders)} of {SHARDS} shards owned")
