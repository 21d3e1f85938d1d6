"""Event ingestion over the real app: response shape, idempotency, batches, overload."""

from __future__ import annotations

import psycopg
import pytest
import trio

from perkamo.profiles.cohort import ProfileCohort
from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from tests.api_client import Api, app_for

SHAPE_KEYS = {"applied", "duplicate", "delta", "leveled_up", "unlocked", "wallet_state", "level"}


def event(user: str = "u1", tx: str = "t1", **extra: object) -> dict:
    return {"user_id": user, "event": "purchase.completed", "transaction_id": tx, **extra}


def stored_count(pg_url: str, space_id: int, tx: str | None = None) -> int:
    with psycopg.connect(pg_url) as conn:
        if tx is None:
            row = conn.execute("SELECT count(*) FROM events WHERE space_id = %s", (space_id,))
        else:
            row = conn.execute(
                "SELECT count(*) FROM events WHERE space_id = %s AND transaction_id = %s",
                (space_id, tx),
            )
        result = row.fetchone()
    assert result is not None
    return int(result[0])


async def test_event_response_shape_and_profile_history(api):
    a = await api.post("/v1/events", event(context={"amount": 12900, "currency": "CZK"}))
    assert a.status == 200
    assert SHAPE_KEYS <= set(a.body)
    assert a.body["applied"] is True and a.body["duplicate"] is False
    assert a.body["delta"] == [] and a.body["unlocked"] == [] and a.body["level"] is None
    assert a.body["event_id"].startswith("evt_")
    profile = await api.get("/v1/profile/u1")
    assert profile.status == 200
    assert profile.body["events"] == [
        {
            "event": "purchase.completed",
            "transaction_id": "t1",
            "occurred_at": profile.body["events"][0]["occurred_at"],
            "delta": [],
            "source": "server",
        }
    ]


async def test_occurred_at_is_kept_in_milliseconds(api):
    given = "2026-06-04T12:00:00.123456+02:00"
    assert (await api.post("/v1/events", event(occurred_at=given))).status == 200
    history = (await api.get("/v1/profile/u1")).body["events"]
    assert history[0]["occurred_at"] == "2026-06-04T10:00:00.123Z"


async def test_profile_shows_the_20_most_recent_events_newest_first(api):
    for n in range(25):
        assert (await api.post("/v1/events", event(tx=f"t{n}"))).status == 200
    history = (await api.get("/v1/profile/u1")).body["events"]
    assert [e["transaction_id"] for e in history] == [f"t{n}" for n in range(24, 4, -1)]


async def test_sequential_retry_is_a_duplicate_with_the_original_outcome(api, space, pg_url):
    first = await api.post("/v1/events", event(occurred_at="2026-06-01T10:00:00Z"))
    # A retry carries a new occurred_at and tenant form, and an equal context written
    # differently: still the same event.
    again = await api.post(
        "/v1/events",
        event(occurred_at="2026-06-01T10:00:05Z", tenant=space.slug),
    )
    assert again.status == 200
    assert again.body == {**first.body, "duplicate": True}
    assert stored_count(pg_url, space.space.id, "t1") == 1


async def test_context_is_compared_in_canonical_form(api, space, pg_url):
    body = event(context={"amount": 1.0, "tags": ["a"], "meta": {"b": 1, "a": 2}})
    assert (await api.post("/v1/events", body)).body["duplicate"] is False
    same = event(context={"meta": {"a": 2, "b": 1.00}, "tags": ["a"], "amount": 1})
    assert (await api.post("/v1/events", same)).body["duplicate"] is True
    missing = event(tx="t2")
    assert (await api.post("/v1/events", missing)).status == 200
    empty = event(tx="t2", context={})
    assert (await api.post("/v1/events", empty)).body["duplicate"] is True
    assert stored_count(pg_url, space.space.id) == 2


@pytest.mark.parametrize(
    "changed",
    [{"user_id": "u2"}, {"event": "other.thing"}, {"context": {"amount": 2}}],
    ids=["user", "event", "context"],
)
async def test_same_transaction_with_a_different_payload_conflicts(api, space, pg_url, changed):
    assert (await api.post("/v1/events", event(context={"amount": 1}))).status == 200
    conflict = await api.post("/v1/events", {**event(context={"amount": 1}), **changed})
    assert (conflict.status, conflict.body["error"]) == (400, "idempotency_conflict")
    assert stored_count(pg_url, space.space.id, "t1") == 1


async def test_fifty_concurrent_identical_requests_apply_once(api, space, pg_url):
    answers = []

    async def send() -> None:
        answers.append(await api.post("/v1/events", event(tx="same")))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(send)
    assert [a.status for a in answers] == [200] * 50
    assert sorted(a.body["duplicate"] for a in answers) == [False] + [True] * 49
    assert len({a.body["event_id"] for a in answers}) == 1
    assert stored_count(pg_url, space.space.id, "same") == 1


async def test_one_transaction_id_for_two_users_applies_once(api, space, pg_url):
    answers = {}

    async def send(user: str) -> None:
        answers[user] = await api.post("/v1/events", event(user=user, tx="shared"))

    async with trio.open_nursery() as nursery:
        for user in ("alice", "bob"):
            nursery.start_soon(send, user)
    statuses = sorted((a.status, a.body.get("error")) for a in answers.values())
    assert statuses == [(200, None), (400, "idempotency_conflict")]
    assert stored_count(pg_url, space.space.id, "shared") == 1
    loser = next(u for u, a in answers.items() if a.status == 400)
    # The loser's profile was not created by the refused event.
    assert (await api.get(f"/v1/profile/{loser}")).status == 404


async def test_transaction_ids_are_unique_per_space_not_globally(runtime, pg_url):
    from tests.spaces import make_space

    a, b = make_space(pg_url), make_space(pg_url)
    for s in (a, b):
        answer = await Api(app_for(runtime), s.key).post("/v1/events", event(tx="order-1"))
        assert (answer.status, answer.body["duplicate"]) == (200, False)


async def test_batch_of_100_over_30_users_mixed(api, space, pg_url):
    items = []
    invalid = set()
    for n in range(100):
        user = f"user-{n % 30}"
        item = event(user=user, tx=f"b{n}", context={"n": n})
        if n % 7 == 3:
            item = {**item, "event": "bad event"}  # whitespace: invalid
            invalid.add(n)
        if n % 11 == 5:
            item = {**item, "tenant": "someone-else"}
            invalid.add(n)
        items.append(item)
    a = await api.post("/v1/events:batch", {"events": items})
    assert a.status == 200
    results = a.body["results"]
    assert len(results) == 100
    for n, result in enumerate(results):
        if n in invalid:
            assert result["applied"] is False and result["error"]["error"] in {
                "validation_error",
                "tenant_mismatch",
            }
            assert result["wallet_state"] == {} and result["level"] is None
        else:
            assert result["applied"] is True and "error" not in result, (n, result)
    assert stored_count(pg_url, space.space.id) == 100 - len(invalid)
    # One user's items applied in list order.
    history = (await api.get("/v1/profile/user-0")).body["events"]
    expected = [f"b{n}" for n in range(0, 100, 30) if n not in invalid]
    assert [e["transaction_id"] for e in reversed(history)] == expected


async def test_repeated_transaction_in_a_batch_resolves_in_list_order(api):
    items = [
        event(user="a", tx="r1"),
        event(user="a", tx="r1"),  # same user, same payload: duplicate of the first
        event(user="b", tx="r1"),  # another user: conflict with the first
        event(user="a", tx="r1", context={"x": 1}),  # same user, other payload: conflict
    ]
    results = (await api.post("/v1/events:batch", {"events": items})).body["results"]
    assert [r["applied"] for r in results] == [True, True, False, False]
    assert [r["duplicate"] for r in results] == [False, True, False, False]
    assert results[2]["error"]["error"] == "idempotency_conflict"
    assert results[3]["error"]["error"] == "idempotency_conflict"


async def test_batch_tenant_at_the_top_is_checked(api, space):
    ok = await api.post("/v1/events:batch", {"tenant": space.slug, "events": [event()]})
    assert ok.status == 200
    bad = await api.post("/v1/events:batch", {"tenant": "nope", "events": [event()]})
    assert (bad.status, bad.body["error"]) == (403, "tenant_mismatch")


async def test_a_full_mailbox_answers_overloaded(pg_url, space, tmp_path):
    settings = Settings(data_dir=tmp_path, mailbox_capacity=1)
    async with open_runtime(settings, pg_url) as rt:
        api = Api(app_for(rt), space.key)
        items = [event(tx=f"m{n}") for n in range(3)]  # one user: one mailbox of one
        results = (await api.post("/v1/events:batch", {"events": items})).body["results"]
        assert results[0]["applied"] is True
        for r in results[1:]:
            assert r["error"]["error"] == "overloaded"
        # The refused items were not applied: a retry applies them.
        retry = await api.post("/v1/events", items[1])
        assert (retry.status, retry.body["duplicate"]) == (200, False)


async def test_identify_creates_then_merges(api, space):
    first = await api.post("/v1/identify", {"user_id": "p", "traits": {"plan": "free", "a": 1}})
    assert first.body == {
        "tenant": space.slug,
        "user_id": "p",
        "traits": {"plan": "free", "a": 1},
        "created": True,
    }
    second = await api.post(
        "/v1/identify", {"user_id": "p", "traits": {"plan": "premium", "a": None, "b": [1]}}
    )
    assert second.body["created"] is False
    assert second.body["traits"] == {"plan": "premium", "b": [1]}
    profile = await api.get("/v1/profile/p")
    assert profile.body["traits"] == {"plan": "premium", "b": [1]}


async def test_profile_document_has_every_key_at_both_paths(api, space):
    await api.post("/v1/identify", {"user_id": "account:acme/42", "traits": {"x": 1}})
    a = await api.get("/v1/profile/account:acme%2F42")
    b = await api.get("/v1/customer/account:acme%2F42")
    assert a.status == b.status == 200
    assert a.body == b.body
    assert set(a.body) >= {
        "tenant",
        "user_id",
        "traits",
        "wallets",
        "level",
        "perks",
        "next_perks",
        "achievements",
        "flags",
        "events",
        "redemptions",
        "streaks",
        "active_boosts",
        "created_at",
        "updated_at",
    }
    assert a.body["user_id"] == "account:acme/42" and a.body["tenant"] == space.slug
    assert a.body["achievements"] == {"completed": [], "in_progress": [], "unlocked": []}
    assert set(a.body["flags"]) == {"levels", "has_level_at_least", "perks"}
    assert a.body["created_at"].endswith("Z")


async def test_an_event_creates_the_profile(api):
    assert (await api.get("/v1/profile/new")).status == 404
    await api.post("/v1/events", event(user="new"))
    assert (await api.get("/v1/profile/new")).status == 200
    identify = await api.post("/v1/identify", {"user_id": "new"})
    assert identify.body["created"] is False


async def test_health_and_readiness(api):
    assert (await api.get("/healthz", key=None)).body == {"status": "ok"}
    assert (await api.get("/readyz", key=None)).body == {"status": "ready"}


async def test_a_batch_of_distinct_users_is_staged_together_and_retried_exactly(
    api, space, pg_url, monkeypatch
):
    """Idle profiles of one batch run as one cohort (profiles/cohort.py); a retried item
    is still the duplicate of its stored original, a changed one a conflict, and a profile
    whose unit was refused for a taken id commits its other items in a later round."""
    cohorts: list[int] = []
    real = ProfileCohort.receive

    async def receive(self, batches, answered):
        cohorts.append(len(batches))
        await real(self, batches, answered)

    monkeypatch.setattr(ProfileCohort, "receive", receive)
    items = [event(user=f"c{n}", tx=f"c{n}", context={"amount": 100 + n}) for n in range(40)]
    first = (await api.post("/v1/events:batch", {"events": items})).body["results"]
    assert [(r["applied"], r["duplicate"]) for r in first] == [(True, False)] * 40
    assert cohorts == [40]
    retry = [
        *items[:20],  # retried as they were
        event(user="c20", tx="c20", context={"amount": 1}),  # the same id, another body
        event(user="c0", tx="c0-next"),  # c0's unit is refused for "c0", then commits this
        *[event(user=f"n{n}", tx=f"n{n}") for n in range(5)],
    ]
    again = (await api.post("/v1/events:batch", {"events": retry})).body["results"]
    for n in range(20):
        assert again[n]["duplicate"] is True and again[n]["applied"] is True
        assert again[n]["event_id"] == first[n]["event_id"]
        assert again[n]["wallet_state"] == first[n]["wallet_state"]
    assert again[20]["error"]["error"] == "idempotency_conflict"
    assert [(r["applied"], r["duplicate"]) for r in again[21:]] == [(True, False)] * 6
    assert stored_count(pg_url, space.space.id) == 46
    history = (await api.get("/v1/profile/c0")).body["events"]
    assert [e["transaction_id"] for e in history] == ["c0-next", "c0"]
    assert cohorts == [40, 26]
