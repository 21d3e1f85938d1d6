"""``perkamo doctor``'s verdicts (the servers themselves: tests/storage/test_failover.py):
each durability setting is judged, and only what can lose an acknowledged write fails it."""

from __future__ import annotations

from perkamo.cli.doctor import judge
from storage.durability import Durability, Standby

DURABLE = {
    "fsync": "on",
    "full_page_writes": "on",
    "synchronous_commit": "on",
    "synchronous_standby_names": "standby",
    "max_locks_per_transaction": "64",
    "max_connections": "100",
    "max_prepared_transactions": "0",
}
STREAMING = Standby("standby", "10.0.0.2", "streaming", "sync", 0, 0.001)


def verdict(settings: dict[str, str], standbys: list[Standby]) -> tuple[bool, list[str]]:
    """(whether an acknowledged write could be lost, the WARN lines)."""
    findings = judge(Durability({**DURABLE, **settings}, False, standbys))
    return any(f.loses_writes for f in findings), [f.what for f in findings if not f.ok]


def test_a_synchronous_standby_with_durable_settings_is_all_ok():
    assert verdict({}, [STREAMING]) == (False, [])


def test_each_setting_that_can_lose_an_acknowledged_write_fails_the_check():
    for change in (
        {"fsync": "off"},
        {"full_page_writes": "off"},
        {"synchronous_commit": "local"},
        {"synchronous_commit": "off"},
        {"synchronous_standby_names": ""},
    ):
        loses, warned = verdict(change, [STREAMING])
        assert loses and len(warned) == 1, (change, warned)
        assert next(iter(change)) in warned[0]


def test_an_asynchronous_standby_or_none_is_a_warning_that_fails_the_check():
    loses, warned = verdict({"synchronous_standby_names": ""}, [])
    assert loses and any("no standby is connected" in w for w in warned)
    asynchronous = Standby("standby", None, "streaming", "async", 4096, 0.2)
    loses, warned = verdict({"synchronous_standby_names": ""}, [asynchronous])
    assert loses and any("standby 'standby'" in w and "async" in w for w in warned)


def test_a_named_standby_that_is_gone_warns_without_failing():
    """Commits then wait for it: nothing acknowledged can be lost, but writes stall."""
    loses, warned = verdict({}, [])
    assert not loses and any("no standby is connected" in w for w in warned)
    catching_up = Standby("standby", "10.0.0.2", "catchup", "potential", 10**6, None)
    loses, warned = verdict({}, [catching_up])
    assert not loses and any("commits wait" in w for w in warned)


def test_a_lock_table_too_small_for_the_shard_locks_is_a_warning():
    loses, warned = verdict(
        {"max_locks_per_transaction": "10", "max_connections": "20"}, [STREAMING]
    )
    assert not loses and len(warned) == 1 and "lock table" in warned[0]
