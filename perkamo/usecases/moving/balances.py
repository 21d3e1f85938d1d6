"""The files ``perkamo import-balances`` reads (docs/operations.md (moving a Space)):
opening balances as CSV (header
``user_id,wallet,amount[,earned][,traits][,earned_at][,expires_at]``, ``traits`` a JSON
object) or JSON Lines of the same fields, and known transaction ids (``transaction_id``,
``user_id,transaction_id`` or ``kind,user_id,transaction_id`` per line). Each row is read on
its own: a bad row is a refusal naming its line (1-based), the others go on.

Numbers are values: ``150.0`` and ``1.5E2`` are the whole number 150 (the wallet's
precision is checked against the value, not its notation).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from perkamo.errors import PerkamoError
from perkamo.http.bodies import check_object, check_user_id
from perkamo.program.json_walk import JsonObject, walk
from perkamo.program.timefmt import parse_rfc3339
from perkamo.usecases.moving.format import MoveRefused

FIELDS = ("user_id", "wallet", "amount", "earned", "traits", "earned_at", "expires_at")
REQUIRED = ("user_id", "wallet", "amount")
_json = msgspec.json.Decoder(float_hook=Decimal)


@dataclass(frozen=True, slots=True)
class Opening:
    """One customer's opening balance in one wallet (line ``number``)."""

    number: int
    user_id: str
    wallet: str
    amount: Decimal
    earned: Decimal | None = None
    traits: JsonObject = field(default_factory=dict)
    earned_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    number: int
    message: str


@dataclass(frozen=True, slots=True)
class Known:
    """A transaction id the old system applied (line ``number``)."""

    number: int
    namespace: str  # event | redemption
    transaction_id: str
    user_id: str | None


def read_balances(path: Path) -> Iterator[Opening | Refused]:
    """The rows of a CSV or JSON Lines file (JSON Lines: ``.jsonl``/``.json``, or a first
    character ``{``). Raises MoveRefused when the file cannot be read at all."""
    with _open(path) as text:
        first = text.read(1)
        text.seek(0)
        if path.suffix in (".jsonl", ".json", ".ndjson") or first == "{":
            yield from _json_lines(text)
        else:
            yield from _csv_rows(text)


def _open(path: Path) -> io.TextIOWrapper:
    try:
        return path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise MoveRefused(f"cannot read {path}: {exc.strerror}") from None


def _json_lines(text: io.TextIOWrapper) -> Iterator[Opening | Refused]:
    for number, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            fields = _json.decode(line)
        except msgspec.DecodeError as exc:
            yield Refused(number, f"not valid JSON ({exc})")
            continue
        if not isinstance(fields, dict):
            yield Refused(number, "a line is one JSON object")
            continue
        yield _opening(number, fields, from_json=True)


def _csv_rows(text: io.TextIOWrapper) -> Iterator[Opening | Refused]:
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        raise MoveRefused("the file is empty")
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in FIELDS]
    missing = [n for n in REQUIRED if n not in names]
    if unknown or missing:
        raise MoveRefused(
            f"line 1: the header names {', '.join(FIELDS[:3])} and optionally"
            f" {', '.join(FIELDS[3:])}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    number = reader.line_num + 1
    for values in reader:
        if values and any(v.strip() for v in values):
            if len(values) != len(names):
                yield Refused(number, f"{len(values)} fields where the header has {len(names)}")
            else:
                row = {n: v for n, v in zip(names, values, strict=True) if v != ""}
                yield _opening(number, row, from_json=False)
        number = reader.line_num + 1


def _opening(number: int, row: Mapping[str, object], *, from_json: bool) -> Opening | Refused:
    """One row checked on its own (the program's checks come when it is applied)."""
    try:
        unknown = sorted(set(row) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        for name in REQUIRED:
            if row.get(name) is None:
                raise ValueError(f"{name} is required")
        user_id, wallet = row["user_id"], row["wallet"]
        if not isinstance(user_id, str) or not isinstance(wallet, str) or not wallet:
            raise ValueError("user_id and wallet are strings")
        check_user_id(user_id)
        traits = row.get("traits")
        if isinstance(traits, str) and not from_json:
            traits = _json.decode(traits)
        if traits is not None and not isinstance(traits, dict):
            raise ValueError("traits is a JSON object")
        if _holds_nul(traits):  # PostgreSQL cannot store it: refused here, not retried
            raise ValueError("traits must not contain U+0000")
        amount = _number(row["amount"], "amount", from_json)
        earned = None if row.get("earned") is None else _number(row["earned"], "earned", from_json)
        if amount == 0 and earned is None and not traits:
            raise ValueError("nothing to apply: amount is 0 and neither earned nor traits given")
        return Opening(
            number, user_id, wallet, amount, earned, check_object(traits, "traits"),
            _time(row.get("earned_at"), "earned_at"), _time(row.get("expires_at"), "expires_at"),
        )  # fmt: skip
    except msgspec.DecodeError as exc:
        return Refused(number, f"traits is not valid JSON ({exc})")
    except (ValueError, PerkamoError) as exc:
        return Refused(number, str(exc))


def _number(value: object, name: str, from_json: bool) -> Decimal:
    if from_json and (isinstance(value, bool) or not isinstance(value, int | Decimal)):
        raise ValueError(f"{name} is a JSON number")
    try:
        if not isinstance(value, Decimal | str | int | float | tuple):
            raise TypeError  # what Decimal() raises for any other value
        number = Decimal(value) if not isinstance(value, Decimal) else value
    except (InvalidOperation, TypeError):
        raise ValueError(f"{name} {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{name} is not a finite number")
    return number


def _time(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} is an RFC 3339 timestamp")
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def read_known(path: Path) -> Iterator[Known | Refused]:
    """Known transaction ids, one a line: ``transaction_id``, ``user_id,transaction_id`` or
    ``kind,user_id,transaction_id`` (``kind`` event or redemption; an empty user_id: any
    customer). A first line naming these columns is a header."""
    with _open(path) as text:
        reader = csv.reader(text)
        number = 1
        for values in reader:
            fields = [v.strip() for v in values]
            if number == 1 and fields and fields[-1] == "transaction_id":
                pass  # the header
            elif fields and any(fields):
                yield _known(number, fields)
            number = reader.line_num + 1


def _known(number: int, fields: list[str]) -> Known | Refused:
    if len(fields) == 1:
        kind, user, tx = "event", "", fields[0]
    elif len(fields) == 2:
        kind, (user, tx) = "event", fields
    elif len(fields) == 3:
        kind, user, tx = fields
    else:
        return Refused(number, "a line holds transaction_id, user_id,transaction_id or"
                               " kind,user_id,transaction_id")  # fmt: skip
    if kind not in ("event", "redemption"):
        return Refused(number, f"kind is event or redemption, not {kind!r}")
    if not 1 <= len(tx) <= 256:
        return Refused(number, "transaction_id has 1 to 256 characters")
    if "\x00" in tx:
        return Refused(number, "transaction_id must not contain U+0000")
    try:
        if user:
            check_user_id(user)
    except PerkamoError as exc:
        return Refused(number, str(exc))
    return Known(number, kind, tx, user or None)


def _holds_nul(value: object) -> bool:
    """Whether a JSON value holds U+0000 in a key or a string."""
    return any(
        (key is not None and "\x00" in key) or (isinstance(item, str) and "\x00" in item)
        for _, key, item in walk(value)
    )
