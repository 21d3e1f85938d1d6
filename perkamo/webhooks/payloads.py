"""What a webhook delivery says: the signed payloads of events and redemptions, written to
the outbox in the same transaction as what they announce."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import msgspec

from perkamo import ids
from perkamo.program.amounts import number
from perkamo.program.json_walk import JsonObject
from perkamo.program.model import Program
from perkamo.program.outcome import (
    Delta,
    LevelState,
    Outcome,
    Redemption,
    Settlement,
    Unlocked,
)
from perkamo.program.timefmt import format_rfc3339
from storage import OutboxRow

_encoder = msgspec.json.Encoder(decimal_format="number")


def sign(secret: str, delivery_id: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), delivery_id.encode() + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class SpaceHook:
    """What staging needs: whether to write deliveries, and the Space for the payload."""

    enabled: bool
    space: dict[str, str]


def event_delivery(
    hook: SpaceHook,
    space_id: int,
    event_id: str,
    user_id: str,
    transaction_id: str,
    event: str,
    occurred_at: datetime,
    received_at: datetime,
    context: JsonObject,
    outcome: Outcome,
    level_from: int | None,
    source: str = "server",
) -> OutboxRow:
    """``source``: "client" for a browser-sent event (docs/api.md "The browser half"), else
    "server"."""
    effects: list[object] = list(outcome.unlocked)
    if level_from is not None and outcome.level is not None:
        effects.append({"type": "level", "from": level_from, "to": outcome.level.level})
    payload = {
        "id": event_id,
        "type": event,
        "created_at": format_rfc3339(received_at),
        "data": {
            "space": hook.space,
            "user_id": user_id,
            "transaction_id": transaction_id,
            "event": event,
            "source": source,
            "status": "applied",
            "occurred_at": format_rfc3339(occurred_at),
            "context": context,
            "delta": outcome.delta,
            "effects": effects,
            "wallet_state": outcome.wallet_state,
        },
    }
    return _row(space_id, event, payload, received_at, transaction_id)


def redemption_delivery(
    hook: SpaceHook,
    space_id: int,
    user_id: str,
    transaction_id: str,
    context: JsonObject,
    redemption: Redemption,
    redemption_id: str,
    received_at: datetime,
) -> OutboxRow:
    payload = {
        "id": redemption_id,
        "type": "reward.redeemed",
        "created_at": format_rfc3339(received_at),
        "data": {
            "space": hook.space,
            "user_id": user_id,
            "transaction_id": transaction_id,
            "reward_key": redemption.reward_key,
            "status": "redeemed",
            "context": context,
            "cost": redemption.cost,
            "effect": redemption.effect,
            "delta": [Delta(redemption.cost.wallet, -redemption.cost.amount)],
            "effects": redemption.unlocked,
            "wallet_state": redemption.wallet_state,
        },
    }
    return _row(space_id, "reward.redeemed", payload, received_at, transaction_id)


class Changed(Protocol):
    """What a support operation changed (an adjustment's, a reversal's ``Change``, a
    return's ``EventReturn``)."""

    @property
    def delta(self) -> list[Delta]: ...
    @property
    def unlocked(self) -> list[Unlocked]: ...
    @property
    def wallet_state(self) -> dict[str, Decimal]: ...


def support_delivery(
    hook: SpaceHook,
    space_id: int,
    event_type: str,
    delivery_id: str,
    user_id: str,
    transaction_id: str,
    received_at: datetime,
    change: Changed,
    details: JsonObject,
) -> OutboxRow:
    """``adjustment.created`` / ``redemption.reversed`` / ``event.reversed`` (docs/api.md
    "Support operations"), in the envelope of the webhooks section."""
    effects: list[object] = list(change.unlocked)
    payload = {
        "id": delivery_id,
        "type": event_type,
        "created_at": format_rfc3339(received_at),
        "data": {
            "space": hook.space,
            "user_id": user_id,
            "transaction_id": transaction_id,
            "status": "applied",
            **details,
            "delta": change.delta,
            "effects": effects,
            "wallet_state": change.wallet_state,
        },
    }
    return _row(space_id, event_type, payload, received_at, transaction_id)


def settlement_deliveries(
    hook: SpaceHook,
    space_id: int,
    user_id: str,
    settlement: Settlement,
    program: Program,
    wallet_state: dict[str, Decimal],
    level: LevelState | None,
    at: datetime,
    subject: str | None,
) -> list[OutboxRow]:
    """``points.released`` / ``points.expired`` (docs/program.md "Points that wait and points that
    expire"): one per wallet and kind that settling changed, with the lots; the level change and
    unlocks settling caused are the ``effects`` of the first one."""
    effects: list[object] = list(settlement.unlocked)
    if settlement.level_from is not None and level is not None:
        effects.append({"type": "level", "from": settlement.level_from, "to": level.level})
    rows = []
    for kind, totals in (("released", settlement.released), ("expired", settlement.expired)):
        for wallet in program.wallets:
            if not totals.get(wallet.key):
                continue
            lots = [
                {"earned_at": format_rfc3339(lot.earned_at),
                 "expires_at": None if lot.expires_at is None else format_rfc3339(lot.expires_at),
                 "amount": number(lot.amount, wallet.precision)}
                for lot in settlement.lots if lot.kind == kind and lot.wallet == wallet.key
            ]  # fmt: skip
            event_type = "points." + kind
            payload = {
                "id": "pts_" + ids.token_hex(12),
                "type": event_type,
                "created_at": format_rfc3339(at),
                "data": {
                    "space": hook.space,
                    "user_id": user_id,
                    "wallet": wallet.key,
                    "amount": number(totals[wallet.key], wallet.precision),
                    "lots": lots,
                    "wallet_state": wallet_state,
                    "effects": effects,
                },
            }
            effects = []
            rows.append(_row(space_id, event_type, payload, at, subject))
    return rows


def _row(
    space_id: int, event_type: str, payload: object, at: datetime, subject: str | None
) -> OutboxRow:
    body = _encoder.encode(payload).decode()
    return OutboxRow("dlv_" + ids.token_hex(12), space_id, event_type, body, at, subject)


def test_delivery(space: dict[str, str], space_id: int, at: datetime) -> OutboxRow:
    """``webhook.test``: what the console's "send a test event" queues (same envelope, no
    customer), so an operator can check a receiver and its signature check."""
    event_id = "whtest_" + ids.token_hex(8)
    payload = {
        "id": event_id,
        "type": "webhook.test",
        "created_at": format_rfc3339(at),
        "data": {"space": space, "message": "A test event sent from the Perkamo console."},
    }
    return _row(space_id, "webhook.test", payload, at, None)
