"""The unit being staged: the rows one batch of a profile's writes adds, and the profile as
the messages so far left it (staging.py applies each message kind to it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from perkamo.program import ProfileState, Program
from perkamo.webhooks import SpaceHook
from storage import (
    AdjustmentRow,
    AuditRow,
    EventRow,
    IdentifyRow,
    OutboxRow,
    RedemptionRow,
    ReversalRow,
)
from storage.profiles import StoredRedemption

_encoder = msgspec.json.Encoder(decimal_format="number")


def encode_json(value: Any) -> str:
    return _encoder.encode(value).decode()


@dataclass(slots=True)
class Draft:
    """The unit being built and the profile as the messages so far left it."""

    space_id: int
    user_id: str
    version: int  # the version this unit commits; every row carries it for replay
    program: Program
    hook: SpaceHook
    traits: dict[str, Any]
    state: ProfileState
    exists: bool
    # The redemptions this batch's reversals name, as stored (fetched before staging).
    reversible: dict[str, StoredRedemption] | None
    events: list[EventRow] = field(default_factory=list)
    redemptions: list[RedemptionRow] = field(default_factory=list)
    identifies: list[IdentifyRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    adjustments: list[AdjustmentRow] = field(default_factory=list)
    reversals: list[ReversalRow] = field(default_factory=list)
    audits: list[AuditRow] = field(default_factory=list)
