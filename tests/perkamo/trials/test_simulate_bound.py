"""A simulation never holds a profile's real writes past the bound (docs/api.md (trying a program)): it runs on
the committed state in a worker thread, one at a time, so the event loop keeps serving. (Three
simulations of 100 events on a 1,000-rule draft once kept the loop busy and a real write
waited 6.3 s, answering 503 outcome_unknown although it had applied.)"""

from __future__ import annotations

import time

import trio

from perkamo.program.schema import MAX_ITEMS
from tests.perkamo.http.test_config_api import demo_modules

RULES = [
    {"key": f"r{i}", "name": f"Rule {i}", "event": "purchase.completed",
     "conditions": [{"path": "context.amount", "op": "gt", "value": i}],
     "award": [{"wallet": "points", "formula": "{{amount}} / 100 + 1"}]}
    for i in range(1000)
]  # fmt: skip


async def test_concurrent_simulations_of_a_large_draft_keep_real_writes_within_the_bound(api):
    modules = demo_modules()
    assert (await api.post("/v1/admin/config", {"version": "v1", "modules": modules})).status == 200
    draft = {**modules["events"], "rules": RULES}
    upload = await api.post(
        "/v1/admin/config/events", {"version": "big", "active": False, "body": draft}
    )
    assert upload.status == 200, upload.body
    event = {"event": "purchase.completed", "context": {"amount": 12900}}
    simulation = {"user_id": "u", "program": {"events": "big"}, "events": [event] * 40}
    latencies: list[float] = []
    answers: list[int] = []

    async def simulate() -> None:
        answer = await api.post("/v1/admin/simulate", simulation)
        answers.append(answer.status)

    async def write(n: int) -> None:
        started = time.perf_counter()
        body = {"user_id": "u", "event": "app.opened", "transaction_id": f"w{n}"}
        answer = await api.post("/v1/events", body)
        latencies.append(time.perf_counter() - started)
        assert answer.status == 200, answer.body

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(simulate)
            await trio.sleep(0.2)  # the simulations are running
            for n in range(20):
                await write(n)
    assert sorted(answers) == [200, 200, 200]
    # Well inside the 5 s bound (a real write is a few ms; the simulations share the CPU).
    assert max(latencies) < 2.0, latencies


async def test_a_module_beyond_the_bounds_is_refused_at_its_path(api):
    rules = RULES * 2  # 2,000 rules
    answer = await api.post(
        "/v1/admin/config/events", {"version": "huge", "active": False, "body": {"rules": rules}}
    )
    assert answer.status == 400 and answer.body["error"] == "invalid_config"
    assert answer.body["details"][0]["path"] == "body.rules"
    assert str(MAX_ITEMS) in answer.body["details"][0]["message"]
