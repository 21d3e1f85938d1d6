"""Support operations (API §8): adjust a balance, reverse a redemption, reverse an event (a
return) — the same for the API, the console and ``perkamo adjust`` / ``perkamo reverse`` /
``perkamo reverse-event``. Each goes through the profile's actor like any write
(commands/adjustment.py, commands/reversal.py, commands/event_reversal.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from perkamo.errors import Code, PerkamoError, validation_failed
from perkamo.profiles.commands import Adjust, Reverse, ReverseClientEvent, ReverseEvent, Written
from perkamo.profiles.commands.event_reversal import event_not_found
from perkamo.program.adjustments import check_adjustment
from perkamo.program.json_walk import JsonObject
from perkamo.runtime import Runtime
from storage.adjustments import event_owner, redemption_owner


async def adjust(
    runtime: Runtime,
    space_id: int,
    user_id: str,
    *,
    wallet: str,
    amount: Decimal,
    reason: str,
    transaction_id: str,
    counts_toward_level: bool = True,
    actor: str | None = None,
    received_at: datetime,
    limits: JsonObject | None = None,
    audit: str | None = None,
) -> Written:
    """Adjust ``user_id``'s ``wallet`` by ``amount``. The wallet and the amount are checked
    against the program before the profile is asked (400 before the profile's 404).
    ``audit``: who to record in the audit log, in the same commit."""
    program = await runtime.programs.get(space_id)
    check_adjustment(program, wallet, amount)
    command = Adjust(
        transaction_id=transaction_id, wallet=wallet, amount=amount,
        counts_toward_level=counts_toward_level, reason=reason, actor=actor,
        received_at=received_at, limits=limits or {}, audit=audit,
    )  # fmt: skip
    return await runtime.gateway.ask((space_id, user_id), command)


async def reverse_redemption(
    runtime: Runtime,
    space_id: int,
    transaction_id: str,
    *,
    reason: str,
    actor: str | None = None,
    received_at: datetime,
    limits: JsonObject | None = None,
    audit: str | None = None,
    user_id: str | None = None,
) -> tuple[str, Written]:
    """Reverse the redemption ``transaction_id`` at the profile that owns it; returns
    (that profile's user id, the answer). ``user_id``: refuse unless it is that user's."""
    owner = await runtime.db.run(redemption_owner, space_id, transaction_id)
    if owner is None or (user_id is not None and owner != user_id):
        raise PerkamoError(
            Code.REDEMPTION_NOT_FOUND, f"No redemption with transaction_id {transaction_id!r}."
        )
    command = Reverse(
        transaction_id=transaction_id, reason=reason, actor=actor, received_at=received_at,
        limits=limits or {}, audit=audit,
    )  # fmt: skip
    return owner, await runtime.gateway.ask((space_id, owner), command)


async def reverse_event(
    runtime: Runtime,
    space_id: int,
    transaction_id: str,
    *,
    reason: str,
    actor: str | None = None,
    received_at: datetime,
    limits: JsonObject | None = None,
    audit: str | None = None,
    source: str = "server",
    user_id: str | None = None,
) -> tuple[str, Written]:
    """Take back what the event ``transaction_id`` gave (a return), at the profile that owns
    it; returns (that profile's user id, the answer). ``source``: a server event (its id is
    the Space's), or ``client``: one a browser sent, whose id is the customer ``user_id``'s
    own. ``user_id`` with a server event: refuse unless it is that user's. Unknown or refused
    event: 404 event_not_found."""
    kind: type[ReverseEvent] = ReverseEvent
    if source == "client":  # found (or not: 404) by the command among the customer's events
        if user_id is None:
            raise validation_failed("user_id", "is required to reverse a browser-sent event")
        owner: str | None = user_id
        kind = ReverseClientEvent
    else:
        owner = await runtime.db.run(event_owner, space_id, transaction_id)
        if owner is None or (user_id is not None and owner != user_id):
            raise event_not_found(transaction_id)
    assert owner is not None
    command = kind(
        transaction_id=transaction_id, reason=reason, actor=actor, received_at=received_at,
        limits=limits or {}, audit=audit,
    )  # fmt: skip
    try:
        return owner, await runtime.gateway.ask((space_id, owner), command)
    except PerkamoError as exc:  # a customer with no profile has no event either
        if exc.code is Code.PROFILE_NOT_FOUND:
            raise event_not_found(transaction_id) from None
        raise
