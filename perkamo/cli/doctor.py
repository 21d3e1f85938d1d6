"""``perkamo doctor``: whether an acknowledged write survives the loss of the primary.

It connects the way ``perkamo serve`` does (the same URL and settings) and judges what
PostgreSQL reports: each setting that decides durability, each standby's state and lag, and
the advisory-lock table against the shards the members lock (docs/architecture.md "PostgreSQL
failover"). Each line is OK or WARN, a WARN with what to change. The exit status is 1 when an
acknowledged write could be lost with the primary, so a deployment check can run it.
"""

from __future__ import annotations

from dataclasses import dataclass

from perkamo.cluster.shards import SHARDS
from storage import Database
from storage.durability import Durability, Standby, durability

# The shard locks should leave most of the lock table to ordinary locks.
LOCK_HEADROOM = 4


@dataclass(frozen=True, slots=True)
class Finding:
    ok: bool
    what: str
    change: str = ""  # for a WARN: what to change
    loses_writes: bool = False  # a WARN under which an acknowledged write can be lost

    def line(self) -> str:
        if self.ok:
            return f"OK    {self.what}"
        return f"WARN  {self.what}\n      → {self.change}"


def run(db: Database) -> int:
    facts = db.call(durability)
    s = facts.settings
    role = "a standby (read-only)" if facts.in_recovery else "the primary"
    print(f"PostgreSQL {s.get('server_version', '?')}: connected to {role}")
    findings = judge(facts)
    for finding in findings:
        print(finding.line())
    if any(f.loses_writes for f in findings):
        print("An acknowledged write could be lost with the primary: see the WARN lines above.")
        return 1
    print("An acknowledged write survives the loss of the primary.")
    return 0


def judge(facts: Durability) -> list[Finding]:
    s = facts.settings
    findings = [
        _on(s, "fsync", "a crash of the server can lose or corrupt acknowledged writes"),
        _on(
            s,
            "full_page_writes",
            "a crash mid-write can leave torn pages that recovery cannot repair",
        ),  # fmt: skip
        _synchronous_commit(s.get("synchronous_commit", "?")),
        _standby_names(s.get("synchronous_standby_names", "")),
        *_standbys(facts.standbys, bool(s.get("synchronous_standby_names"))),
        _lock_table(s),
    ]
    if facts.in_recovery:
        findings.insert(0, Finding(
            False, "this server is a standby: the engine never writes to one",
            "give the engine a URL whose hosts include the primary, with"
            " target_session_attrs=read-write (the default when the URL names none)",
        ))  # fmt: skip
    return findings


def _on(settings: dict[str, str], name: str, risk: str) -> Finding:
    value = settings.get(name, "?")
    if value == "on":
        return Finding(True, f"{name} = on")
    return Finding(False, f"{name} = {value}: {risk}", f"set {name} = on", loses_writes=True)


def _synchronous_commit(value: str) -> Finding:
    if value in ("on", "remote_apply", "remote_write"):
        return Finding(True, f"synchronous_commit = {value}")
    return Finding(
        False,
        f"synchronous_commit = {value}: a write is acknowledged before the synchronous"
        " standby has it",
        "set synchronous_commit = on (or remote_apply)",
        loses_writes=True,
    )


def _standby_names(value: str) -> Finding:
    if value:
        return Finding(True, f"synchronous_standby_names = '{value}'")
    return Finding(
        False,
        "synchronous_standby_names is empty: a write is acknowledged when the primary"
        " alone has it, and lost if the primary is lost before its standby caught up",
        "name the standby: synchronous_standby_names = 'FIRST 1 (<its application_name>)'"
        " (a managed service: turn on its synchronous replication)",
        loses_writes=True,
    )


def _standbys(standbys: list[Standby], named: bool) -> list[Finding]:
    if not standbys:
        return [
            Finding(
                False,
                "no standby is connected: losing this server loses what it holds",
                "run a streaming standby (docs/failover.md)"
                + (": until one connects, commits wait for it" if named else ""),
                loses_writes=not named,
            )
        ]
    found = []
    for sb in standbys:
        behind = "?" if sb.behind_bytes is None else f"{sb.behind_bytes:,}"
        replay = "?" if sb.replay_lag_seconds is None else f"{sb.replay_lag_seconds:.3f} s"
        what = (
            f"standby '{sb.name}' ({sb.address or 'local'}): {sb.state}, {sb.sync_state},"
            f" {behind} bytes behind, replay lag {replay}"
        )
        synchronous = sb.sync_state in ("sync", "quorum")
        if sb.state == "streaming" and (synchronous or not named):
            found.append(Finding(synchronous, what, "" if synchronous else _MAKE_SYNC))
        else:
            change = _MAKE_SYNC if sb.state == "streaming" else "let it catch up (or fix it)"
            found.append(Finding(False, what, change))
    if named and not any(sb.sync_state in ("sync", "quorum") for sb in standbys):
        found.append(
            Finding(
                False,
                "no standby is synchronous now: commits wait for one",
                "check that synchronous_standby_names names a connected standby",
            )
        )
    return found


_MAKE_SYNC = "name it in synchronous_standby_names so that every commit waits for it"


def _lock_table(settings: dict[str, str]) -> Finding:
    per = int(settings.get("max_locks_per_transaction", "0"))
    connections = int(settings.get("max_connections", "0")) + int(
        settings.get("max_prepared_transactions", "0")
    )
    slots = per * connections
    what = (
        f"lock table: max_locks_per_transaction {per} × {connections} connections ="
        f" {slots:,} slots for {SHARDS} shard advisory locks"
    )
    if slots >= LOCK_HEADROOM * SHARDS:
        return Finding(True, what)
    needed = -(-LOCK_HEADROOM * SHARDS // max(connections, 1))
    return Finding(
        False, what, f"raise max_locks_per_transaction to at least {needed} (needs a restart)"
    )
