"""``POST /v1/rewards/redeem``."""

from __future__ import annotations

from perkamo.http.bodies import RedeemBody, redeem_input
from perkamo.http.edge import Call, Result
from perkamo.http.responses import RedeemResponse
from perkamo.profiles.commands import Redeem


async def redeem_reward(call: Call[RedeemBody]) -> Result[RedeemResponse]:
    user_id, reward_key, transaction_id, context = redeem_input(call.body)
    command = Redeem(
        reward_key=reward_key, transaction_id=transaction_id, context=context,
        received_at=call.received_at, limits=call.key.space_limits,
    )  # fmt: skip
    answer = await call.runtime.gateway.ask((call.key.space_id, user_id), command)
    return Result(answer.body)
