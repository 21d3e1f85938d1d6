"""``perkamo import-balances`` (docs/operations.md (moving a Space)): opening balances through each customer's actor
(levels and perks follow, ``earned`` added to the level basis), idempotent per customer and
wallet, bad rows reported by line and skipped — and known transaction ids answering the old
system's retries as imported duplicates after the cut-over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import trio

from perkamo.profiles.replay import replay_profile
from tests.perkamo.moving.conftest import Cli
from tests.perkamo.moving.shop import PROGRAM
from tests.perkamo.profiles.test_properties import stored_profile


@pytest.fixture
async def shop(api):
    assert (await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})).status == 200
    return api


async def run(cli: Cli, url: str, *argv: str) -> tuple[int, str, str]:
    """The command in a thread of its own (it runs trio itself)."""
    return await trio.to_thread.run_sync(lambda: cli(url, *argv))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def summary_line(out: str, what: str = "balances") -> str:
    return next(line for line in out.splitlines() if line.startswith(what + ":"))


async def test_opening_balances_apply_once_and_levels_and_perks_follow(
    shop, space, pg_url, cli: Cli, tmp_path
):
    buy = {"user_id": "ann", "event": "buy", "transaction_id": "b1", "context": {"amount": 30}}
    assert (await shop.post("/v1/events", buy)).status == 200
    balances = write(tmp_path / "balances.csv", (
        "user_id,wallet,amount,earned,traits\n"
        'ann,points,50,80,"{""tier"": ""gold""}"\n'
        "bob,points,150.0,,\n"
        "carol,points,0,20,\n"
        "dave,cash,1.5,,\n"
    ))  # fmt: skip
    code, out, err = await run(cli, pg_url, "import-balances", space.slug, str(balances))
    assert code == 0, err
    assert summary_line(out) == "balances: 4 applied, 0 duplicate, 0 refused"

    ann = (await shop.get("/v1/customer/ann")).body
    assert ann["wallets"]["points"] == 80  # 30 earned by the event, 50 brought
    assert ann["level"]["level"] == 2 and ann["level"]["current"] == 110  # 30 + 80: added
    assert [p["key"] for p in ann["perks"]] == ["silver"]
    assert ann["traits"] == {"tier": "gold"}
    assert ann["adjustments"][0]["reason"] == "opening balance"
    bob = (await shop.get("/v1/customer/bob")).body
    assert bob["wallets"]["points"] == 150 and bob["level"]["level"] == 2
    carol = (await shop.get("/v1/customer/carol")).body
    assert carol["wallets"]["points"] == 0 and carol["level"]["current"] == 20
    dave = (await shop.get("/v1/customer/dave")).body
    assert str(dave["wallets"]["cash"]) == "1.5"

    code, out, err = await run(cli, pg_url, "import-balances", space.slug, str(balances))
    assert code == 0 and summary_line(out) == "balances: 0 applied, 4 duplicate, 0 refused"
    assert (await shop.get("/v1/customer/ann")).body["wallets"]["points"] == 80

    code, out, _ = await run(cli, pg_url, "verify", "--space", space.slug)
    assert code == 0 and "ok" in out
    with psycopg.connect(pg_url) as conn:
        for user in ("ann", "bob", "carol", "dave"):
            stored = stored_profile(pg_url, space.space.id, user)
            assert replay_profile(conn, space.space.id, user) == stored


async def test_bad_rows_are_reported_by_line_and_a_fixed_file_applies_only_what_was_refused(
    shop, space, pg_url, cli: Cli, tmp_path
):
    text = (
        "user_id,wallet,amount,traits\n"
        "ok,points,10,\n"
        "gem-holder,gems,10,\n"
        "precise,points,1.5,\n"
        "broken,points,5,{not json\n"
        ",points,5,\n"
        "whole,points,150.0,\n"
    )
    balances = write(tmp_path / "balances.csv", text)
    code, out, err = await run(cli, pg_url, "import-balances", space.slug, str(balances))
    assert code == 1
    assert summary_line(out) == "balances: 2 applied, 0 duplicate, 4 refused"
    assert "line 3: refused: validation_error" in err and "gems" in err
    assert "line 4: refused: validation_error" in err and "decimal places" in err
    assert "line 5: refused: traits is not valid JSON" in err
    assert "line 6: refused: user_id is required" in err

    fixed = write(tmp_path / "fixed.csv", text.replace("precise,points,1.5", "precise,points,2"))
    code, out, err = await run(cli, pg_url, "import-balances", space.slug, str(fixed))
    assert summary_line(out) == "balances: 1 applied, 2 duplicate, 3 refused" and code == 1
    assert (await shop.get("/v1/customer/precise")).body["wallets"]["points"] == 2
    assert (await shop.get("/v1/customer/ok")).body["wallets"]["points"] == 10  # once

    other = write(tmp_path / "other.csv", "user_id,wallet,amount\nok,points,11\n")
    code, out, err = await run(cli, pg_url, "import-balances", space.slug, str(other))
    assert code == 1 and "line 2: refused: idempotency_conflict" in err
    assert (await shop.get("/v1/customer/ok")).body["wallets"]["points"] == 10


async def test_json_lines_take_numbers_as_values(shop, space, pg_url, cli: Cli, tmp_path):
    balances = write(tmp_path / "balances.jsonl", (
        '{"user_id": "j1", "wallet": "points", "amount": 150.0}\n'
        '{"user_id": "j2", "wallet": "points", "amount": "5"}\n'
        "not json\n"
        '{"user_id": "j3", "wallet": "cash", "amount": 1.25, "earned_at": "2026-01-01T00:00:00Z",'
        ' "expires_at": "2027-01-01T00:00:00Z", "traits": {"from": "old"}}\n'
        '{"user_id": "j4", "wallet": "points", "amount": 1, "expires_at": "soon"}\n'
    ))  # fmt: skip
    code, out, err = await run(cli, pg_url, "import-balances", space.slug, str(balances))
    assert code == 1 and summary_line(out) == "balances: 2 applied, 0 duplicate, 3 refused"
    assert "line 2: refused: amount is a JSON number" in err
    assert "line 3: refused: not valid JSON" in err
    assert "line 5: refused: expires_at" in err
    assert (await shop.get("/v1/customer/j1")).body["wallets"]["points"] == 150
    j3 = (await shop.get("/v1/customer/j3")).body
    assert str(j3["wallets"]["cash"]) == "1.25" and j3["traits"] == {"from": "old"}


async def test_known_transaction_ids_answer_as_imported_duplicates_after_the_cut_over(
    shop, space, pg_url, cli: Cli, tmp_path
):
    balances = write(tmp_path / "b.csv", "user_id,wallet,amount\nann,points,100\nbob,points,5\n")
    logged = {
        "user_id": "bob",
        "event": "buy",
        "transaction_id": "here-1",
        "context": {"amount": 1},
    }
    assert (await shop.post("/v1/events", logged)).status == 200
    known = write(tmp_path / "known.csv", (
        "old-any\n"
        "ann,old-ann\n"
        "redemption,ann,old-redeem\n"
        "event,,old-any-2\n"
        "here-1\n"
        "refund,ann,old-x\n"
    ))  # fmt: skip
    argv = ("import-balances", space.slug, str(balances), "--known-transactions", str(known))
    code, out, err = await run(cli, pg_url, *argv)
    assert code == 1  # the unknown kind
    assert summary_line(out, "known transactions") == (
        "known transactions: 4 applied, 1 duplicate, 1 refused"
    )
    assert "line 5: event 'here-1' is in this Space's log already" in err
    assert "line 6: refused: kind is event or redemption" in err
    before = (await shop.get("/v1/customer/ann")).body

    retry = {
        "user_id": "ann",
        "event": "buy",
        "transaction_id": "old-ann",
        "context": {"amount": 9},
    }
    answer = await shop.post("/v1/events", retry)
    assert answer.status == 200
    body = answer.body
    assert body["applied"] is True and body["duplicate"] is True and body["imported"] is True
    assert body["delta"] == [] and body["unlocked"] == [] and body["leveled_up"] is False
    assert body["wallet_state"] == before["wallets"] and body["level"] == before["level"]
    assert (await shop.post("/v1/events", retry)).body == body  # again and again

    other = await shop.post("/v1/events", {**retry, "user_id": "bob"})
    assert other.status == 400 and other.body["error"] == "idempotency_conflict"
    anyone = await shop.post("/v1/events", {**retry, "user_id": "bob", "transaction_id": "old-any"})
    assert anyone.status == 200 and anyone.body["imported"] is True
    assert anyone.body["wallet_state"]["points"] == 6  # bob's own balance (5 + the logged 1)
    batch = {
        "events": [{**retry, "transaction_id": "old-any-2"}, {**retry, "transaction_id": "new"}]
    }
    items = (await shop.post("/v1/events:batch", batch)).body["results"]
    assert items[0]["imported"] is True and items[0]["delta"] == []
    assert "imported" not in items[1] and items[1]["delta"][0]["amount"] == 9

    redeem = {"user_id": "ann", "reward_key": "coupon", "transaction_id": "old-redeem"}
    redeemed = await shop.post("/v1/rewards/redeem", redeem)
    assert redeemed.status == 200, redeemed.body
    assert redeemed.body["redeemed"] is True and redeemed.body["imported"] is True
    assert redeemed.body["delta"] == [] and redeemed.body["cost"] == {
        "wallet": "points",
        "amount": 10,
    }
    after = (await shop.get("/v1/customer/ann")).body
    assert after["wallets"]["points"] == before["wallets"]["points"] + 9  # only the new event
    assert [e["transaction_id"] for e in after["events"]] == ["new"]
    assert after["redemptions"] == []  # nothing charged, nothing logged

    code, out, err = await run(cli, pg_url, *argv)
    assert summary_line(out, "known transactions") == (
        "known transactions: 0 applied, 5 duplicate, 1 refused"
    )


async def test_an_opening_balance_in_a_wallet_with_lots_keeps_its_dates(
    api, space, pg_url, cli: Cli, tmp_path
):
    wallets = {"wallets": [{"key": "miles", "name": "Miles", "expiry": {"after_days": 30}}]}
    answer = await api.post(
        "/v1/admin/config", {"version": "lots", "modules": {"wallets": wallets}}
    )
    assert answer.status == 200, answer.body
    now = datetime.now(UTC)
    old, soon, past = now - timedelta(days=100), now + timedelta(days=10), now - timedelta(days=1)
    balances = write(tmp_path / "lots.csv", (
        "user_id,wallet,amount,earned,traits,earned_at,expires_at\n"
        f"u1,miles,40,,,{old.isoformat()},{soon.isoformat()}\n"
        "u2,miles,25,,,,\n"
        f"u3,miles,5,,,,{past.isoformat()}\n"
        f"u4,miles,5,,,{old.isoformat()},\n"  # 30 days from then: gone long ago
    ))  # fmt: skip
    code, out, err = await run(cli, pg_url, "import-balances", space.slug, str(balances))
    assert code == 1 and summary_line(out) == "balances: 2 applied, 0 duplicate, 2 refused"
    assert "line 4: refused" in err and "expires_at" in err
    assert "line 5: refused" in err and "earned_at" in err
    u1 = (await api.get("/v1/customer/u1")).body["wallet_details"]["miles"]
    assert u1["balance"] == 40 and u1["earned"] == 40
    assert [e["amount"] for e in u1["expiring"]] == [40]
    assert u1["expiring"][0]["expires_at"].startswith(soon.strftime("%Y-%m-%dT%H:%M"))
    u2 = (await api.get("/v1/customer/u2")).body["wallet_details"]["miles"]
    assert [e["amount"] for e in u2["expiring"]] == [25]  # by the wallet's rule: 30 days on
    assert u2["expiring"][0]["expires_at"] > (now + timedelta(days=30)).strftime("%Y-%m-%d")
    with psycopg.connect(pg_url) as conn:
        for user in ("u1", "u2"):
            stored = stored_profile(pg_url, space.space.id, user)
            assert replay_profile(conn, space.space.id, user) == stored


async def test_an_unreadable_file_is_refused_plainly(shop, space, pg_url, cli: Cli, tmp_path):
    """A missing file, an empty one and a header naming unknown columns: exit status 2, one
    line saying why, nothing applied (the rows are read as they are applied)."""
    cases = {
        tmp_path / "missing.csv": "cannot read",
        write(tmp_path / "empty.csv", ""): "the file is empty",
        write(tmp_path / "header.csv", "customer,points\nann,5\n"): "line 1: the header",
    }
    for path, why in cases.items():
        code, _, err = await run(cli, pg_url, "import-balances", space.slug, str(path))
        assert code == 2 and why in err, (path, err)  # a crash exits 1
    assert (await shop.get("/v1/customer/ann")).status == 404


async def test_u0000_is_refused_by_line_not_retried(shop, space, pg_url, cli: Cli, tmp_path):
    """PostgreSQL cannot store U+0000: a row or a known id holding one is refused with its
    line number at once (never sent to the database and retried as an outage)."""
    balances = write(tmp_path / "nul.jsonl", (
        '{"user_id": "n1", "wallet": "points", "amount": 5, "traits": {"a": "x\\u0000"}}\n'
        '{"user_id": "n2", "wallet": "points", "amount": 5, "traits": {"b\\u0000": 1}}\n'
        '{"user_id": "n3", "wallet": "points", "amount": 5}\n'
    ))  # fmt: skip
    known = write(tmp_path / "known.txt", "good-1\nbad\x00one\ngood-2\n")
    with trio.fail_after(60):
        code, out, err = await run(cli, pg_url, "import-balances", space.slug, str(balances),
                                   "--known-transactions", str(known))  # fmt: skip
    assert code == 1, err
    assert summary_line(out) == "balances: 1 applied, 0 duplicate, 2 refused"
    assert summary_line(out, "known transactions") == (
        "known transactions: 2 applied, 0 duplicate, 1 refused"
    )
    assert "line 1: refused: traits must not contain U+0000" in err
    assert "line 2: refused: traits must not contain U+0000" in err
    assert "line 2: refused: transaction_id must not contain U+0000" in err
    assert (await shop.get("/v1/customer/n3")).body["wallets"]["points"] == 5
