"""Numbers are values, not text (docs/api.md (conventions)): a string where a number is expected is 400
everywhere, and a whole number written ``150.0`` or ``1.5E2`` is the whole number 150 wherever
a number is checked (PHP's ``json_encode`` writes floats as ``150.0``)."""

from __future__ import annotations

import pytest

from tests.perkamo.http.test_config_api import demo_modules

JSON = {"content-type": "application/json"}


async def _demo(api) -> None:
    answer = await api.post("/v1/admin/config", {"version": "demo", "modules": demo_modules()})
    assert answer.status == 200, answer.body
    assert (await api.post("/v1/identify", {"user_id": "u"})).status == 200


def _adjustment(amount: str, tx: str = "a1") -> bytes:
    head = f'{{"user_id": "u", "wallet": "points", "reason": "r", "transaction_id": "{tx}", '
    return (head + f'"amount": {amount}}}').encode()


@pytest.mark.parametrize("amount", ['"5"', '"150"', "true", "[5]", '{"v": 5}'])
async def test_an_adjustment_amount_must_be_a_number(api, amount):
    await _demo(api)
    answer = await api.request("POST", "/v1/admin/adjustments", data=_adjustment(amount),
                               headers=JSON)  # fmt: skip
    assert answer.status == 400, answer.body
    assert answer.body["error"] == "validation_error"
    assert answer.body["details"][0]["path"] == "amount"
    profile = await api.get("/v1/profile/u")
    assert profile.body["wallets"]["points"] == 0


async def test_whole_numbers_in_any_notation_are_whole(api):
    await _demo(api)
    first = await api.request("POST", "/v1/admin/adjustments", data=_adjustment("150.0"),
                              headers=JSON)  # fmt: skip
    assert first.status == 200, first.body
    assert first.body["delta"] == [{"wallet": "points", "amount": 150}]
    for retry in ("150", "1.5E2", "150.000", "15e1"):
        again = await api.request("POST", "/v1/admin/adjustments", data=_adjustment(retry),
                                  headers=JSON)  # fmt: skip
        assert again.status == 200 and again.body["duplicate"] is True, (retry, again.body)
    fraction = await api.request("POST", "/v1/admin/adjustments",
                                 data=_adjustment("150.5", "a2"), headers=JSON)  # fmt: skip
    assert fraction.status == 400
    assert "decimal places" in fraction.body["details"][0]["message"]
    assert (await api.get("/v1/profile/u")).body["wallets"]["points"] == 150


async def test_configuration_numbers_are_values(api):
    wallets = {"wallets": [{"key": "points", "name": "Points", "precision": 2.0}],
               "rewards": [{"key": "r", "name": "R", "cost": {"wallet": "points", "amount": 1E2},
                            "effect": {"type": "x"}, "limits": {"per_user": 3.0}}]}  # fmt: skip
    answer = await api.post("/v1/admin/config/wallets", {"version": "v1", "body": wallets})
    assert answer.status == 200, answer.body
    for path, bad in (("precision", "2"), ("precision", 2.5)):
        body = {"wallets": [{"key": "points", "name": "Points", path: bad}]}
        refused = await api.post("/v1/admin/config/wallets", {"version": f"v-{bad}", "body": body})
        assert refused.status == 400 and refused.body["error"] == "invalid_config", refused.body
        assert refused.body["details"][0]["path"] == "body.wallets[0].precision"
    text_cost = {"wallets": [{"key": "points", "name": "Points"}],
                 "rewards": [{"key": "r", "name": "R", "cost": {"wallet": "points", "amount": "5"},
                              "effect": {}}]}  # fmt: skip
    refused = await api.post("/v1/admin/config/wallets", {"version": "v3", "body": text_cost})
    assert refused.status == 400 and refused.body["error"] == "invalid_config"
    assert refused.body["details"][0]["path"] == "body.rewards[0].cost.amount"


async def test_a_number_where_a_string_is_expected_is_refused(api):
    answer = await api.post("/v1/events", {"user_id": 5, "event": "e", "transaction_id": "t"})
    assert answer.status == 400 and answer.body["details"][0]["path"] == "user_id"
    answer = await api.post("/v1/events", {"user_id": "u", "event": "e", "transaction_id": 7})
    assert answer.status == 400 and answer.body["details"][0]["path"] == "transaction_id"
