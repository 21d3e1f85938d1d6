"""``GET /v1/profile/{user_id}``: the committed profile, read through its actor so that a
caller always reads its own acknowledged writes (answered from memory or storage by the
actor; see ``ProfileActor.read``)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

from perkamo.profiles.commands.base import Command
from perkamo.profiles.history import HistoryAdjustment, HistoryEvent, HistoryRedemption
from perkamo.program import ProfileState
from perkamo.program.json_walk import JsonObject


class ProfileView(msgspec.Struct, frozen=True):
    traits: JsonObject
    state: ProfileState
    created_at: datetime
    updated_at: datetime
    recent_events: list[HistoryEvent]  # newest first
    recent_redemptions: list[HistoryRedemption]
    recent_adjustments: list[HistoryAdjustment]
    version: int = (
        0  # the profile's version (a live stream's snapshot id, docs/api.md "The browser half")
    )


class Read(Command[ProfileView | None], tag="read", frozen=True, kw_only=True):
    writes: ClassVar[bool] = False
    answer_type: ClassVar[object] = ProfileView | None
