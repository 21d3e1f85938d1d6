"""Profile commands: every kind of write (and the read) a profile's actor handles, one module
each, behind one interface (``base.Command``). ``Message`` is their tagged union: what a
profile's mailbox holds and what crosses the cluster's wire; ``COMMANDS`` maps each tag
(also the history's ``kind``) to its class."""

from collections.abc import Sequence

from perkamo.profiles.commands.adjustment import Adjust
from perkamo.profiles.commands.base import (
    Command,
    Draft,
    Replay,
    Replayed,
    TransactionKey,
    Written,
)
from perkamo.profiles.commands.client_event import ClientEvent
from perkamo.profiles.commands.event import Ingest
from perkamo.profiles.commands.event_reversal import ReverseClientEvent, ReverseEvent
from perkamo.profiles.commands.identify import Identify, IdentifyResult
from perkamo.profiles.commands.opening import OpenBalance
from perkamo.profiles.commands.read import ProfileView, Read
from perkamo.profiles.commands.redemption import Redeem
from perkamo.profiles.commands.reversal import AlreadyReversed, Reverse
from perkamo.profiles.commands.tick import Tick, tick_id

# Every command as the cluster's wire decodes it (a tagged union: one decode, no dispatch).
Message = (
    Ingest
    | ClientEvent
    | Identify
    | Redeem
    | Adjust
    | Reverse
    | ReverseEvent
    | ReverseClientEvent
    | Tick
    | OpenBalance
    | Read
)
# Any command, as the runtime handles it: through the Command interface alone.
AnyCommand = Command[object]
Write = AnyCommand  # a command that writes (``writes`` is True)


def writes_of(messages: Sequence[AnyCommand]) -> list[Write]:
    """The writes among ``messages`` (a read answers from the committed state)."""
    return [m for m in messages if m.writes]


def on_the_wire(command: AnyCommand) -> Message:
    """``command`` as a member of the wire's union (every command class is one)."""
    assert isinstance(command, Message), type(command)
    return command


COMMANDS: dict[str, type[Command[object]]] = {
    str(cls.__struct_config__.tag): cls
    for cls in (
        Ingest,
        ClientEvent,
        Identify,
        Redeem,
        Adjust,
        Reverse,
        ReverseEvent,
        ReverseClientEvent,
        Tick,
        OpenBalance,
        Read,
    )
}

__all__ = [
    "COMMANDS",
    "AnyCommand",
    "AlreadyReversed",
    "ClientEvent",
    "Adjust",
    "Command",
    "Draft",
    "Identify",
    "IdentifyResult",
    "Ingest",
    "Message",
    "OpenBalance",
    "ProfileView",
    "Read",
    "Redeem",
    "Replay",
    "Replayed",
    "Reverse",
    "ReverseClientEvent",
    "ReverseEvent",
    "Tick",
    "TransactionKey",
    "Write",
    "Written",
    "on_the_wire",
    "tick_id",
    "writes_of",
]
