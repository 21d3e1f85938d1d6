"""A profile as its actor holds it: traits, engine state and the stored version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from perkamo.program import ProfileState
from storage.profiles import ProfileRow


@dataclass(slots=True)
class Snapshot:
    traits: dict[str, Any]
    state: ProfileState
    version: int  # 0: not stored yet
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: ProfileRow | None) -> Snapshot:
        if row is None:
            return cls({}, ProfileState(), 0, None, None)
        state = msgspec.convert(row.state, ProfileState, strict=False)
        return cls(row.traits, state, row.version, row.created_at, row.updated_at)

    @property
    def exists(self) -> bool:
        return self.version > 0
