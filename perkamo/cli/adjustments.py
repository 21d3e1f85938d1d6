"""``perkamo adjust``, ``perkamo reverse`` and ``perkamo reverse-event``: the support operations
of docs/api.md (support operations) from the command line. They run through a profile actor of
their own, exactly as the HTTP endpoints do (the same checks, idempotency, history and webhooks),
against the same database as the server: the version check keeps the server's copy of the
profile right."""

from __future__ import annotations

import argparse
import getpass
import secrets
import socket
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import msgspec

from perkamo.access import admin
from perkamo.cli.operators import cli_actor
from perkamo.errors import PerkamoError
from perkamo.profiles.commands import Written
from perkamo.program.json_walk import JsonObject
from perkamo.runtime import Runtime, open_runtime
from perkamo.settings import Settings
from perkamo.usecases import support

_encoder = msgspec.json.Encoder(decimal_format="number")


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    adjust = sub.add_parser("adjust", help="adjust a balance with a reason (support)")
    adjust.add_argument("--space", required=True)
    adjust.add_argument("user_id")
    adjust.add_argument("wallet")
    adjust.add_argument("amount", help="a non-zero decimal: positive adds, negative subtracts")
    adjust.add_argument(
        "--no-level", action="store_true", help="move the balance only, not the earned total"
    )
    adjust.add_argument(
        "--transaction-id", dest="idempotency", help="retry with the id a previous run printed"
    )
    reverse = sub.add_parser("reverse", help="reverse a redemption (support)")
    reverse.add_argument("--space", required=True)
    reverse.add_argument("transaction_id", help="the redemption's transaction id")
    returned = sub.add_parser(
        "reverse-event", help="reverse an event: take back what it gave (a return; support)"
    )
    returned.add_argument("space")
    returned.add_argument("transaction_id", help="the event's transaction id")
    for p in (adjust, reverse, returned):
        p.add_argument("--reason", required=True, help="why (1-500 characters)")
        p.add_argument("--actor", help="who asked (default: your login on this host)")
        p.add_argument("--json", action="store_true", help="print the answer as JSON")
    return [adjust, reverse, returned]


async def run(args: argparse.Namespace, settings: Settings, url: str) -> int:
    """Apply the operation; prints the answer. Returns the exit status."""
    actor = args.actor or f"{getpass.getuser()}@{socket.gethostname()}"
    if not 1 <= len(args.reason) <= 500:
        raise admin.AdminError("--reason must have 1 to 500 characters")
    failure: admin.AdminError | None = None
    async with open_runtime(settings, url, member=False) as runtime:
        try:
            user, transaction_id, answer = await _apply(args, runtime, actor)
        except admin.AdminError as exc:  # raised outside the runtime's nursery, not grouped
            failure = exc
    if failure is not None:
        raise failure
    document = msgspec.json.decode(answer.body)
    if args.json:
        print(_encoder.encode(document).decode())
    else:
        _print_summary(args.command, user, transaction_id, document)
    return 0


def _describe(exc: PerkamoError) -> str:
    return f"{exc.code.value}: {exc}"


def _print_summary(command: str, user: str, transaction_id: str, document: JsonObject) -> None:
    deltas = ", ".join(f"{d['wallet']} {d['amount']:+}" for d in document.get("delta", []))
    duplicate = " (already applied: this is the original answer)" if document["duplicate"] else ""
    if command == "adjust":
        print(f"adjusted {user}: {deltas}{duplicate}")
        print(f"adjustment {document['adjustment_id']}, transaction id {transaction_id}")
    elif command == "reverse":
        print(f"reversed redemption {transaction_id} of {user}: {deltas}{duplicate}")
    else:
        print(f"reversed event {transaction_id} of {user}: {deltas or 'no balance change'}"
              f"{duplicate}")  # fmt: skip
        for kind in ("pending", "shortfall"):
            listed = ", ".join(f"{d['wallet']} {d['amount']}" for d in document.get(kind, []))
            if listed:
                print(f"{kind}: {listed}")
    balances = ", ".join(f"{k} {v}" for k, v in document.get("wallet_state", {}).items())
    print(f"balances now: {balances}")
    if document.get("leveled_up"):
        print(f"level up: now level {document['level']['level']}")


async def _apply(
    args: argparse.Namespace, runtime: Runtime, actor: str
) -> tuple[str, str, Written]:
    """(user, transaction id, answer); raises AdminError."""
    space = await runtime.db.run(admin.require_space, args.space)
    now = datetime.now(UTC)
    try:
        if args.command == "adjust":
            try:
                amount = Decimal(args.amount)
            except InvalidOperation:
                raise admin.AdminError(f"{args.amount!r} is not a decimal number") from None
            transaction_id = args.idempotency or "cli-" + secrets.token_hex(8)
            answer = await support.adjust(
                runtime, space.id, args.user_id, wallet=args.wallet, amount=amount,
                reason=args.reason, transaction_id=transaction_id,
                counts_toward_level=not args.no_level, actor=actor, received_at=now,
                audit=cli_actor(),
            )  # fmt: skip
            return args.user_id, transaction_id, answer
        reverse = (
            support.reverse_event if args.command == "reverse-event" else support.reverse_redemption
        )
        owner, answer = await reverse(
            runtime, space.id, args.transaction_id, reason=args.reason, actor=actor,
            received_at=now, audit=cli_actor(),
        )  # fmt: skip
        return owner, args.transaction_id, answer
    except PerkamoError as exc:
        raise admin.AdminError(_describe(exc)) from None
