"""The profile domain: the actor that owns a profile and applies its writes in order, the
usage meters, history replay and ledger verification."""

from perkamo.profiles.actor import ProfileActor, ProfileServices
from perkamo.profiles.messages import (
    Adjust,
    Answer,
    EventRequest,
    Identify,
    IdentifyResult,
    Ingest,
    Message,
    ProfileKey,
    ProfileView,
    Read,
    Redeem,
    Reverse,
)
from perkamo.profiles.snapshot import Snapshot
from perkamo.profiles.usage import UsageLedger

__all__ = [
    "Adjust",
    "Answer",
    "EventRequest",
    "Identify",
    "IdentifyResult",
    "Ingest",
    "Message",
    "ProfileActor",
    "ProfileKey",
    "ProfileServices",
    "ProfileView",
    "Read",
    "Redeem",
    "Reverse",
    "Snapshot",
    "UsageLedger",
]
