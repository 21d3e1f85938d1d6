"""A profile as its actor holds it: traits and engine state as JSON text, and the stored
version.

Kept encoded on purpose. A resident profile is then one string per part, which the garbage
collector never walks: decoded trees (dicts of Structs for wallets, rules, perks…) for
100,000 resident profiles made every young-generation collection traverse them, about 15 %
of the server's CPU under load (measured in bench/notes.md). Staging decodes the state once
per batch — the engine copies it anyway — and the encoded text it produces is both the
snapshot row and the next in-memory state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import msgspec

from perkamo.program import ProfileState
from perkamo.program.json_walk import JsonObject
from storage.profiles import ProfileRow

_state_decoder = msgspec.json.Decoder(ProfileState, float_hook=Decimal)
_traits_decoder = msgspec.json.Decoder(JsonObject, float_hook=Decimal)
EMPTY = "{}"


@dataclass(slots=True)
class Snapshot:
    traits_json: str
    state_json: str
    version: int  # 0: not stored yet
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: ProfileRow | None) -> Snapshot:
        if row is None:
            return cls(EMPTY, EMPTY, 0, None, None)
        return cls(row.traits, row.state, row.version, row.created_at, row.updated_at)

    @property
    def exists(self) -> bool:
        return self.version > 0

    def traits(self) -> JsonObject:
        """A fresh copy of the traits."""
        return _traits_decoder.decode(self.traits_json)

    def state(self) -> ProfileState:
        """A fresh copy of the engine state."""
        return _state_decoder.decode(self.state_json)
