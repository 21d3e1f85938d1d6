"""Trying a program before it goes live (docs/api.md (trying a program)): simulate equals reality and writes
nothing; back-tests reproduce the recorded outcomes and report a draft's effect exactly."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import psycopg
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from storage import backtests as history_store
from storage import spaces as space_store
from tests.api_client import Api, app_for
from tests.perkamo.http.test_config_api import demo_modules
from tests.perkamo.profiles.test_properties import T0, event_strategy
from tests.spaces import make_space

TABLES = ("events", "redemptions", "identifies", "adjustments", "reversals", "profiles",
          "webhook_deliveries", "backtests")  # fmt: skip


def counts(pg_url: str, space_id: int) -> tuple[Any, ...]:
    """Everything a Space has written, with its meters other than api_requests."""
    with psycopg.connect(pg_url) as conn:
        rows = [
            conn.execute(f"SELECT count(*) FROM {t} WHERE space_id = %s", (space_id,)).fetchone()
            for t in TABLES
        ]
        meters = conn.execute(
            "SELECT meter, used FROM usage_counters WHERE space_id = %s"
            " AND meter NOT IN ('api_requests', 'mutating_requests', 'signed_requests')"
            " ORDER BY meter",
            (space_id,),
        ).fetchall()
        versions = conn.execute(
            "SELECT coalesce(sum(version), 0) FROM profiles WHERE space_id = %s", (space_id,)
        ).fetchone()
    return (*rows, tuple(meters), versions)


def _outcome(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("event_id", "duplicate")}


def _profile(document: dict[str, Any]) -> dict[str, Any]:
    """A profile document minus what the real calls assign (ids, timestamps)."""
    kept = {k: v for k, v in document.items() if k not in ("created_at", "updated_at")}
    kept["events"] = [{k: v for k, v in e.items() if k != "transaction_id"} for e in kept["events"]]
    return kept


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(event_strategy, max_size=6), trial=st.lists(event_strategy, min_size=1,
       max_size=15))  # fmt: skip
def test_simulate_equals_reality_and_writes_nothing(pg_url, tmp_path, history, trial):
    """On the demo program (all six modules): simulate a sequence on a profile, then ingest
    it for real — the same outcomes and the same profile, and the simulation wrote nothing."""
    space = make_space(pg_url)

    def body(name: str, minutes: int, context: dict[str, Any], tx: str) -> dict[str, Any]:
        at = (T0 + timedelta(minutes=minutes)).isoformat()
        return {"user_id": "p", "event": name, "transaction_id": tx, "context": context,
                "occurred_at": at}  # fmt: skip

    async def scenario() -> None:
        async with open_runtime(Settings(data_dir=tmp_path), pg_url) as runtime:
            api = Api(app_for(runtime), space.key)
            config = {"version": "demo", "modules": demo_modules()}
            assert (await api.post("/v1/admin/config", config)).status == 200
            await api.post("/v1/identify", {"user_id": "p", "traits": {"plan": "premium"}})
            for n, (name, minutes, context) in enumerate(history):
                assert (
                    await api.post("/v1/events", body(name, minutes, context, f"h{n}"))
                ).status == 200
            before = counts(pg_url, space.space.id)
            events = [{k: v for k, v in body(*e, f"s{n}").items() if k != "user_id"}
                      for n, e in enumerate(trial)]  # fmt: skip
            simulated = await api.post("/v1/admin/simulate", {"user_id": "p", "events": events})
            assert simulated.status == 200, simulated.body
            assert counts(pg_url, space.space.id) == before  # nothing written
            assert simulated.body["profile_existed"] is True
            real = []
            for n, e in enumerate(trial):
                answer = await api.post("/v1/events", body(*e, f"s{n}"))
                assert answer.status == 200
                real.append(_outcome(answer.body))
            assert simulated.body["results"] == real
            profile = (await api.get("/v1/profile/p")).body
            assert _profile(simulated.body["profile"]) == _profile(profile)

    trio.run(scenario)


PROGRAM = {
    "wallets": {"wallets": [{"key": "points", "name": "Points"}],
                "rewards": [{"key": "coupon", "name": "Coupon",
                             "cost": {"wallet": "points", "amount": 150},
                             "effect": {"type": "coupon"}}]},
    "events": {"rules": [{"key": "buy", "name": "Buy", "event": "buy",
                          "award": [{"wallet": "points", "amount": 100}]}]},
    "leveling": {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 300}]},
}  # fmt: skip
DOUBLED = {"rules": [{"key": "buy", "name": "Buy", "event": "buy",
                      "award": [{"wallet": "points", "amount": 200}]}]}  # fmt: skip
HALVED = {"rules": [{"key": "buy", "name": "Buy", "event": "buy",
                     "award": [{"wallet": "points", "amount": 50}]}]}  # fmt: skip


@pytest.fixture
async def shop(api):
    assert (await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})).status == 200
    for version, body in (("double", DOUBLED), ("half", HALVED), ("same", PROGRAM["events"])):
        draft = {"version": version, "body": body, "active": False}
        assert (await api.post("/v1/admin/config/events", draft)).status == 200
    return api


async def buys(api, user: str, n: int, prefix: str) -> None:
    for i in range(n):
        body = {"user_id": user, "event": "buy", "transaction_id": f"{prefix}-{user}-{i}"}
        assert (await api.post("/v1/events", body)).status == 200


async def finished(api, job_id: str) -> dict[str, Any]:
    with trio.fail_after(60):
        while True:
            answer = await api.get(f"/v1/admin/backtests/{job_id}")
            assert answer.status == 200
            if answer.body["status"] != "running":
                return answer.body
            await trio.sleep(0.05)


async def backtest(api, program: dict[str, str], **window: str) -> dict[str, Any]:
    started = await api.post("/v1/admin/backtests", {"program": program, **window})
    assert started.status == 202, started.body
    assert started.body["status"] == "running" and started.body["id"].startswith("bt_")
    done = await finished(api, started.body["id"])
    assert done["status"] == "done", done
    return done


async def test_a_draft_doubling_a_rule_gives_the_hand_computed_report(shop, pg_url, space):
    await buys(shop, "u1", 2, "a")
    await buys(shop, "u2", 3, "a")
    await buys(shop, "u3", 1, "a")
    before = counts(pg_url, space.space.id)
    job = await backtest(shop, {"events": "double"})
    assert job["progress"] == {"events_done": 6, "events_total": 6}
    report = job["report"]
    assert report["profiles"] == 3 and report["events"] == 6
    assert report["baseline_mismatches"] == 0 and report["redemptions_refused"] == 0
    assert report["wallets"] == {"points": {
        "baseline_awarded": 600, "candidate_awarded": 1200,
        "baseline_balance": 600, "candidate_balance": 1200}}  # fmt: skip
    assert report["rules"] == {"buy": {"baseline": {"points": 600}, "candidate": {"points": 1200}}}
    assert report["levels"] == {"baseline": {"1": 2, "2": 1}, "candidate": {"1": 1, "2": 2}}
    assert report["top_changes"] == [
        {"user_id": "u2", "wallet": "points", "baseline": 300, "candidate": 600},
        {"user_id": "u1", "wallet": "points", "baseline": 200, "candidate": 400},
        {"user_id": "u3", "wallet": "points", "baseline": 100, "candidate": 200},
    ]
    after = counts(pg_url, space.space.id)
    assert after[:-3] == before[:-3] and after[-1] == before[-1]  # only its job row
    assert after[TABLES.index("backtests")] == (1,)


async def test_an_identical_draft_gives_identical_figures(shop):
    await buys(shop, "u1", 4, "a")
    assert (await shop.post("/v1/rewards/redeem", {"user_id": "u1", "reward_key": "coupon",
                                                   "transaction_id": "r1"})).status == 200  # fmt: skip
    report = (await backtest(shop, {"events": "same"}))["report"]
    assert report["baseline_mismatches"] == 0
    for values in report["wallets"].values():
        assert values["baseline_awarded"] == values["candidate_awarded"] == 400
        assert values["baseline_balance"] == values["candidate_balance"] == 250
    assert report["levels"]["baseline"] == report["levels"]["candidate"] == {"2": 1}
    assert report["top_changes"] == []


async def test_redemptions_the_candidate_cannot_afford_are_counted(shop):
    await buys(shop, "u1", 2, "a")  # 200 points: the 150 coupon is affordable
    redeem = {"user_id": "u1", "reward_key": "coupon", "transaction_id": "r1"}
    assert (await shop.post("/v1/rewards/redeem", redeem)).status == 200
    report = (await backtest(shop, {"events": "half"}))["report"]  # 100 points: it is not
    assert report["redemptions_refused"] == 1
    assert report["wallets"]["points"]["baseline_balance"] == 50
    assert report["wallets"]["points"]["candidate_balance"] == 100


async def test_the_history_streams_every_write_once_a_few_profiles_at_a_time(shop, pg_url, space):
    """Pages of about four writes (one to four profiles) over seven profiles, with every
    kind of write that has a user: each write arrives once, a profile's writes in
    processing order and never split across pages; a consumer that stops early stops the
    reader."""
    for n in range(7):
        await buys(shop, f"u{n}", n % 3 + 1, "a")
    await shop.post("/v1/identify", {"user_id": "u3", "traits": {"plan": "gold"}})
    redeem = {"user_id": "u2", "reward_key": "coupon", "transaction_id": "r1"}
    await buys(shop, "u2", 1, "b")
    assert (await shop.post("/v1/rewards/redeem", redeem)).status == 200
    await buys(shop, "u3", 1, "b")
    with psycopg.connect(pg_url) as conn:
        history_store.prepare_reader(conn)
        writes = list(history_store.stream_history(conn, space.space.id, None, None, rows=4))
        expected = conn.execute(
            "SELECT user_id, profile_version, position FROM events WHERE space_id = %(s)s"
            " UNION ALL SELECT user_id, profile_version, position FROM redemptions"
            " WHERE space_id = %(s)s UNION ALL SELECT user_id, profile_version, position"
            " FROM identifies WHERE space_id = %(s)s ORDER BY 1, 2, 3",
            {"s": space.space.id},
        ).fetchall()
        assert [(w.user_id, w.profile_version, w.position) for w in writes] == expected
        assert {w.kind for w in writes} == {"event", "identify", "redemption"}
        assert len(expected) == sum(n % 3 + 1 for n in range(7)) + 4
        stream = history_store.stream_history(conn, space.space.id, None, None, rows=4)
        assert next(stream).user_id == "u0"
        assert _readers() == 1
        stream.close()  # stopped after its first write: the reader thread ends with it
        assert _readers() == 0
    # A failure on the reader's thread is the consumer's: raised where it reads.
    with pytest.raises(psycopg.OperationalError):
        list(history_store.stream_history(conn, space.space.id, None, None))  # conn is closed
    assert _readers() == 0


def _readers() -> int:
    return sum(t.name == "backtest-history" and t.is_alive() for t in threading.enumerate())


async def test_a_backtest_replays_in_the_idle_scheduling_class(shop):
    """Live work first: the replay's process is put in Linux's idle class by the server as
    soon as it exists (before its imports), and finishes there."""
    await buys(shop, "u1", 3, "a")
    started = await shop.post("/v1/admin/backtests", {"program": {"events": "double"}})
    assert started.status == 202
    with trio.fail_after(20):
        while not any(_policy(c.pid) == os.SCHED_IDLE for c in psutil.Process().children()):
            await trio.sleep(0.005)
    assert (await finished(shop, started.body["id"]))["status"] == "done"


def _policy(pid: int) -> int | None:
    try:
        return os.sched_getscheduler(pid)
    except OSError:  # ended meanwhile
        return None


async def test_a_window_holds_exactly_the_writes_received_inside_it(shop):
    await buys(shop, "early", 2, "a")
    await buys(shop, "both", 1, "a")
    await trio.sleep(0.05)
    boundary = datetime.now(UTC)
    await trio.sleep(0.05)
    await buys(shop, "both", 2, "b")
    await buys(shop, "late", 1, "b")
    report = (await backtest(shop, {"events": "double"}, **{"from": boundary.isoformat()}))[
        "report"
    ]
    assert report["profiles"] == 2 and report["events"] == 3  # early is outside the window
    # "both" enters the window with its recorded 100 points in either run.
    points = report["wallets"]["points"]
    assert (points["baseline_awarded"], points["candidate_awarded"]) == (300, 600)
    assert (points["baseline_balance"], points["candidate_balance"]) == (400, 700)
    closed = await backtest(shop, {"events": "double"}, to=boundary.isoformat())
    assert (closed["report"]["profiles"], closed["report"]["events"]) == (2, 3)


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        ({"program": {"events": "nope"}}, 404, "unknown_version", "program.events"),
        ({"program": {"rules": "v1"}}, 404, "unknown_module", "program.rules"),
        ({"program": {"wallets": "broken"}}, 400, "invalid_config", None),
        ({"program": {}, "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
         400, "validation_error", "to"),
        ({"program": {}, "from": "yesterday"}, 400, "validation_error", "from"),
    ],
)  # fmt: skip
async def test_bad_backtests_are_refused_clearly(shop, body, status, code, path):
    no_rewards = {"wallets": [{"key": "coins", "name": "Coins"}], "rewards": []}
    draft = {"version": "broken", "body": no_rewards, "active": False}  # leveling needs points
    assert (await shop.post("/v1/admin/config/wallets", draft)).status == 200
    answer = await shop.post("/v1/admin/backtests", body)
    assert (answer.status, answer.body["error"]) == (status, code), answer.body
    if path is not None:
        assert answer.body["details"][0]["path"] == path


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"events": [{"event": "buy"}] * 101}, 400, "validation_error"),
        ({"events": []}, 400, "validation_error"),
        ({"events": [{"event": "buy"}], "program": {"events": "nope"}}, 404, "unknown_version"),
        ({"events": [{"event": "buy", "context": {"xp": 1}}]}, 400, "reserved_context_key"),
    ],
)
async def test_bad_simulations_are_refused_clearly(shop, body, status, code):
    answer = await shop.post("/v1/admin/simulate", body)
    assert (answer.status, answer.body["error"]) == (status, code), answer.body


async def test_a_simulation_with_a_draft_and_without_a_profile(shop):
    answer = await shop.post(
        "/v1/admin/simulate",
        {"user_id": "nobody", "program": {"events": "double"},
         "events": [{"event": "buy"}, {"event": "buy", "transaction_id": "mine"}]},
    )  # fmt: skip
    assert answer.status == 200, answer.body
    assert answer.body["profile_existed"] is False
    assert answer.body["program_versions"]["events"] == "double"
    assert [r["delta"] for r in answer.body["results"]] == [
        [{"wallet": "points", "amount": 200}]
    ] * 2
    assert answer.body["results"][1]["leveled_up"] is True
    assert answer.body["profile"]["wallets"] == {"points": 400}
    assert [e["transaction_id"] for e in answer.body["profile"]["events"]] == [
        "mine",
        "simulated-1",
    ]
    assert (await shop.get("/v1/profile/nobody")).status == 404


async def test_one_running_backtest_per_space_cancel_and_interruption(pg_url, tmp_path, space):
    with psycopg.connect(pg_url) as conn:  # 3,000 events at once: above the default burst
        space_store.set_limits(conn, space.slug, {"rate": 10**6, "burst": 10**6})
    async with open_runtime(Settings(data_dir=tmp_path), pg_url) as runtime:
        api = Api(app_for(runtime), space.key)
        assert (
            await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})
        ).status == 200
        draft = {"version": "double", "body": DOUBLED, "active": False}
        assert (await api.post("/v1/admin/config/events", draft)).status == 200
        for start in range(0, 3000, 100):
            items = [{"user_id": f"u{n % 300}", "event": "buy", "transaction_id": f"t{n}"}
                     for n in range(start, start + 100)]  # fmt: skip
            answer = await api.post("/v1/events:batch", {"events": items})
            assert answer.status == 200, answer.body
        first = await api.post("/v1/admin/backtests", {"program": {"events": "double"}})
        assert first.status == 202
        second = await api.post("/v1/admin/backtests", {"program": {}})
        assert (second.status, second.body["error"]) == (409, "backtest_running")
        cancelled = await api.request("DELETE", f"/v1/admin/backtests/{first.body['id']}")
        assert (cancelled.status, cancelled.body["status"]) == (200, "cancelled")
        assert (await finished(api, first.body["id"]))["status"] == "cancelled"
        listed = (await api.get("/v1/admin/backtests")).body["backtests"]
        assert [b["id"] for b in listed][:1] == [first.body["id"]]
        interrupted = await api.post("/v1/admin/backtests", {"program": {"events": "double"}})
        assert interrupted.status == 202  # the Space is free again
    # The server stopped while it ran: not resumed, marked failed, and can start again.
    async with open_runtime(Settings(data_dir=tmp_path), pg_url) as runtime:
        api = Api(app_for(runtime), space.key)
        job = (await api.get(f"/v1/admin/backtests/{interrupted.body['id']}")).body
        assert job["status"] in ("failed", "done")
        if job["status"] == "failed":
            assert job["error"].startswith("interrupted")
        again = await api.post("/v1/admin/backtests", {"program": {"events": "double"}})
        assert again.status == 202
        report = (await finished(api, again.body["id"]))["report"]
        assert report["events"] == 3000 and report["baseline_mismatches"] == 0
        assert (await api.get("/v1/admin/backtests/bt_missing")).status == 404


async def test_a_draft_adding_expiry_reports_what_would_have_expired(shop):
    """The candidate gives ``points`` a 30-day expiry from the window's start: the balance
    then becomes one lot, and lots are rebuilt from the window's awards — one of them
    earned 40 days before it was sent, so expired at once."""
    expiring = {**PROGRAM["wallets"], "wallets": [{"key": "points", "name": "Points",
                                                   "expiry": {"after_days": 30}}]}  # fmt: skip
    draft = {"version": "expiring", "body": expiring, "active": False}
    assert (await shop.post("/v1/admin/config/wallets", draft)).status == 200
    await buys(shop, "both", 1, "a")
    await trio.sleep(0.05)
    boundary = datetime.now(UTC)
    await trio.sleep(0.05)
    await buys(shop, "both", 1, "b")
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    body = {"user_id": "late", "event": "buy", "transaction_id": "late-old", "occurred_at": old}
    assert (await shop.post("/v1/events", body)).status == 200
    await buys(shop, "late", 1, "b")
    report = (await backtest(shop, {"wallets": "expiring"}, **{"from": boundary.isoformat()}))[
        "report"
    ]
    assert report["baseline_mismatches"] == 0
    assert report["wallets"]["points"] == {
        "baseline_awarded": 300, "candidate_awarded": 300,
        "baseline_balance": 400, "candidate_balance": 300,
        "baseline_expired": 0, "candidate_expired": 100,
    }  # fmt: skip
    assert report["top_changes"] == [
        {"user_id": "late", "wallet": "points", "baseline": 200, "candidate": 100}
    ]
