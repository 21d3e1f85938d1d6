"""``perkamo spaces freeze`` (docs/operations.md (moving a Space)): while a Space moves its writes answer 503
``space_frozen`` with ``retry-after`` — at the edge, and in the group commit for a write that
came another way (the console, the CLI) or passed the edge before the freeze — reads go
on, and an export taken meanwhile is exact."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import trio

from perkamo.errors import Code, PerkamoError
from perkamo.profiles.commands import Ingest
from perkamo.usecases import program, support
from tests.notifications import notified
from tests.perkamo.moving.conftest import Cli
from tests.perkamo.moving.shop import PROGRAM
from tests.perkamo.moving.test_round_trip import lines_of

EVENT = {"user_id": "ann", "event": "buy", "transaction_id": "t-frozen", "context": {"amount": 5}}


async def test_a_frozen_space_refuses_writes_serves_reads_and_exports_exactly(
    api, runtime, space, pg_url, cli: Cli, tmp_path
):
    assert (await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})).status == 200
    assert (await api.post("/v1/events", {**EVENT, "transaction_id": "t0"})).status == 200
    async with notified(runtime):
        code, out, _ = cli(pg_url, "spaces", "freeze", space.slug)
    assert code == 0 and "frozen" in out

    for path, body in (
        ("/v1/events", EVENT),
        ("/v1/identify", {"user_id": "ann", "traits": {"a": 1}}),
        ("/v1/rewards/redeem", {"user_id": "ann", "reward_key": "coupon", "transaction_id": "r"}),
        ("/v1/admin/adjustments", {"user_id": "ann", "wallet": "points", "amount": 1,
                                   "reason": "x", "transaction_id": "a"}),
        ("/v1/admin/config/events", {"version": "v9", "body": PROGRAM["events"]}),
    ):  # fmt: skip
        answer = await api.post(path, body)
        assert answer.status == 503 and answer.body["error"] == "space_frozen", path
        assert answer.headers["retry-after"] == "30"
    assert (await api.get("/v1/customer/ann")).status == 200
    assert (await api.get("/v1/program")).status == 200
    simulated = await api.post("/v1/admin/simulate", {"events": [{"event": "buy"}]})
    assert simulated.status == 200

    # Past the edge (the console, the CLI, a request authenticated before the freeze):
    # the group commit refuses it, and the config store too.
    now = datetime.now(UTC)
    with pytest.raises(PerkamoError) as refused:
        await support.adjust(runtime, space.space.id, "ann", wallet="points", amount=Decimal(1),
                             reason="x", transaction_id="a2", received_at=now)  # fmt: skip
    assert refused.value.code is Code.SPACE_FROZEN
    command = Ingest(transaction_id="t-inner", event="buy", context={}, received_at=now)
    with pytest.raises(PerkamoError) as refused:
        await runtime.gateway.ask((space.space.id, "ann"), command)
    assert refused.value.code is Code.SPACE_FROZEN
    with pytest.raises(PerkamoError) as refused:
        await program.upload(runtime, space.space.id, "v9", {"events": PROGRAM["events"]},
                             active=True, prefix="body")  # fmt: skip
    assert refused.value.code is Code.SPACE_FROZEN

    known = tmp_path / "known.txt"
    known.write_text("old-order-1\n", encoding="utf-8")
    code, out, err = await trio.to_thread.run_sync(  # (the command runs trio itself)
        lambda: cli(pg_url, "import-balances", space.slug, "--known-transactions", str(known))
    )
    assert code == 1 and "space_frozen" in err, (out, err)  # nothing added to the export

    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    code, _, err = cli(pg_url, "export", space.slug, "--output", str(first))
    assert code == 0 and "frozen: exact" in err
    assert cli(pg_url, "export", space.slug, "--output", str(second))[0] == 0
    assert lines_of(first)[1:-1] == lines_of(second)[1:-1]
    assert lines_of(first)[-1]["counts"] == lines_of(second)[-1]["counts"]
    assert lines_of(first)[-1]["counts"]["event"] == 1
    assert "known" not in lines_of(first)[-1]["counts"]

    async with notified(runtime):
        assert cli(pg_url, "spaces", "unfreeze", space.slug)[0] == 0
    applied = await api.post("/v1/events", EVENT)  # the refused request, retried
    assert applied.status == 200 and applied.body["duplicate"] is False
    again = await api.post("/v1/events", EVENT)
    assert again.body["duplicate"] is True
