"""Request bodies: one msgspec Struct per wire shape, plus the field rules of docs/api.md (field
limits).

Decoding is two-phase, matching the documented order of checks: raw bytes → JSON value
(``invalid_json``), then the tenant check, then JSON value → Struct (``validation_error``).
Numbers decode to exact decimals, never binary floats.

The event routes first try one typed decode straight into their Structs (:func:`typed`): a
valid body — the common case — then costs one pass in C instead of two. Any failure falls
back to the two phases, which find the documented error; the checks msgspec cannot express
(tenants, nesting, sizes, reserved keys, timestamps) run on both paths alike.

The operator endpoints' bodies (configuration, simulate, back-tests) are in
``admin_bodies.py``, with the same rules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from perkamo.errors import Code, PerkamoError, validation_failed
from perkamo.program.conform import conform, has_numbers
from perkamo.program.json_walk import JsonObject, walk
from perkamo.program.timefmt import parse_rfc3339
from perkamo.program.validation import describe

if TYPE_CHECKING:
    from perkamo.http.admin_bodies import SimulateEventBody

MAX_OBJECT_BYTES = 16 * 1024
MAX_DEPTH = 8
MAX_BATCH = 100
RESERVED_CONTEXT_KEYS = frozenset(
    {"xp", "wallet", "wallets", "rewards", "level", "perks", "achievements"}
)

T = TypeVar("T")
U = TypeVar("U", bound=msgspec.Struct)

MAX_NUMBER_CHARS = 100
MAX_EXPONENT = 1000


def _number(text: str) -> Decimal:
    """A JSON number with a fraction or exponent, as an exact decimal. Bounded so that every
    accepted number fits PostgreSQL's numeric (a 1e999999 in a context once failed a whole
    group commit)."""
    value = Decimal(text)
    if len(text) > MAX_NUMBER_CHARS or not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        raise ValueError(
            f"numbers must have at most {MAX_NUMBER_CHARS} characters and lie within "
            f"1e-{MAX_EXPONENT} to 1e{MAX_EXPONENT}"
        )
    return value


_json_decoder = msgspec.json.Decoder(float_hook=_number)
_compact = msgspec.json.Encoder(decimal_format="number")


# The field rules of docs/api.md (field limits) as msgspec constraints: enforced on decoding and
# published in the OpenAPI document. Patterns are written out as explicit character classes so that
# the published (ECMA) regex and Python's agree; exact() below refuses what a regex anchored with
# ``$`` lets through in Python (a trailing newline).
_CONTROL = "\\x00-\\x1f\\x7f-\\x9f"  # Unicode category Cc
_SPACE = (  # what str.isspace() calls whitespace
    "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
Slug = Annotated[str, Meta(min_length=1, max_length=128, pattern="^[^\\x00]*$")]
UserId = Annotated[str, Meta(min_length=1, max_length=256, pattern=f"^[^{_CONTROL}]*$")]
EventName = Annotated[str, Meta(min_length=1, max_length=128, pattern=f"^[^{_CONTROL}{_SPACE}]*$")]
RewardKey = Annotated[str, Meta(min_length=1, max_length=64, pattern=f"^[^{_CONTROL}{_SPACE}]*$")]
TransactionId = Annotated[str, Meta(min_length=1, max_length=256, pattern="^[^\\x00]*$")]
# An optional JSON object; PHP encodes an empty one as ``[]``, so an empty list is accepted.
OptionalObject = JsonObject | Annotated[list[Any], Meta(max_length=0)] | None
Timestamp = Annotated[
    str, Meta(description="RFC 3339 with a zone, e.g. 2026-06-01T10:00:00.000Z", min_length=1)
]


class IdentifyBody(msgspec.Struct):
    user_id: UserId
    traits: OptionalObject = None
    tenant: Slug | None = None
    space: Slug | None = None


class EventBody(msgspec.Struct):
    user_id: UserId
    event: EventName
    transaction_id: TransactionId
    context: OptionalObject = None
    occurred_at: Timestamp | None = None
    tenant: Slug | None = None
    space: Slug | None = None


class RedeemBody(msgspec.Struct):
    user_id: UserId
    reward_key: RewardKey
    transaction_id: TransactionId
    context: OptionalObject = None
    tenant: Slug | None = None
    space: Slug | None = None


Version = Annotated[str, Meta(min_length=1, max_length=64)]
Reason = Annotated[str, Meta(min_length=1, max_length=500, pattern="^[^\\x00]*$")]
Actor = Annotated[str, Meta(min_length=1, max_length=256, pattern="^[^\\x00]*$")]


class AdjustBody(msgspec.Struct):
    user_id: UserId
    wallet: RewardKey
    amount: Annotated[Decimal, Meta(description="non-zero, within the wallet's precision")]
    reason: Reason
    transaction_id: TransactionId
    counts_toward_level: bool = True
    actor: Actor | None = None
    tenant: Slug | None = None
    space: Slug | None = None


class ReverseBody(msgspec.Struct):
    reason: Reason
    actor: Actor | None = None
    tenant: Slug | None = None
    space: Slug | None = None


class EventReverseBody(msgspec.Struct):
    reason: Reason
    actor: Actor | None = None
    # Which event: a server event (the default), or one a browser sent ("client"), whose
    # transaction id is its customer's own and so needs ``user_id`` (docs/api.md "Support
    # operations"). With a server event, ``user_id`` (optional) must be its customer's.
    source: Annotated[str, Meta(pattern="^(server|client)$")] = "server"
    user_id: UserId | None = None
    tenant: Slug | None = None
    space: Slug | None = None


class BatchBody(msgspec.Struct):
    # Items are validated one by one (a bad item fails alone), and an empty or oversized
    # list has its own error codes, so the list is untyped here and described for OpenAPI.
    events: Annotated[
        list[Any],
        Meta(
            description="1 to 100 items, each an EventBody; an invalid item fails alone, "
            "with its error inside the 200 answer",
            extra_json_schema={"minItems": 1, "maxItems": 100},
        ),
    ]
    tenant: Slug | None = None
    space: Slug | None = None


class TypedBatch(msgspec.Struct):
    """A batch whose items all decode as EventBody (the fast path's shape)."""

    events: list[EventBody]
    tenant: Slug | None = None
    space: Slug | None = None


# A body this small holds no object whose compact encoding exceeds MAX_OBJECT_BYTES: the
# compact form is never longer than 4/3 of its source ("1e2" becomes "1E+2"), so the size
# check need not encode it.
_SMALL_BODY = MAX_OBJECT_BYTES * 3 // 4


def typed(shape: type[U]) -> Callable[[bytes], U | None]:
    """A one-pass decoder for ``shape``: the Struct, or None when the body is not valid
    for it (or escapes U+0000) and the two-phase path must find the error."""
    decoder = msgspec.json.Decoder(shape, float_hook=_number)

    def decode(body: bytes) -> U | None:
        if b"\\u0000" in body:
            return None
        try:
            return decoder.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None  # msgspec.ValidationError is a DecodeError

    return decode


class EventInput(msgspec.Struct, frozen=True):
    """A validated event, ready for the profile actor."""

    user_id: str
    event: str
    transaction_id: str
    context: JsonObject
    occurred_at: datetime | None


def decode_json(body: bytes) -> object:
    """Raw body → JSON value. Raises invalid_json, or validation_error for a
    U+0000 anywhere in it (PostgreSQL cannot store one; JSON can only carry it escaped)."""
    if not body.strip():
        raise PerkamoError(Code.INVALID_JSON, "The request body is empty; send a JSON object.")
    try:
        value = _json_decoder.decode(body)
        if b"\\u0000" in body and (path := _nul_path(value)) is not None:
            raise validation_failed(path, "must not contain U+0000")
        return value
    except msgspec.ValidationError as exc:  # raised by _number
        raise validation_failed("", str(exc).split(" - at ")[0]) from None
    except msgspec.DecodeError as exc:
        message = f"The request body is not valid JSON: {exc}"
        raise PerkamoError(Code.INVALID_JSON, message) from None
    except UnicodeDecodeError:
        raise PerkamoError(Code.INVALID_JSON, "The request body is not valid UTF-8.") from None
    except RecursionError:
        raise validation_failed("", "JSON nesting is too deep") from None


def _nul_path(value: object) -> str | None:
    """The path of the first string holding U+0000, or of the object whose key holds one
    (the key itself is unprintable)."""
    for path, key, item in walk(value):
        if key is not None and "\x00" in key:
            return path.rpartition(".")[0]
        if isinstance(item, str) and "\x00" in item:
            return path
    return None


def convert(value: object, shape: type[T], prefix: str) -> T:
    try:
        return msgspec.convert(conform(value, shape), shape)
    except msgspec.ValidationError as exc:
        path, message = describe(exc, prefix)
        raise validation_failed(path.lstrip("."), message) from None


def exact(value: str, path: str) -> str:
    """The published patterns end in ``$``, which in Python also matches before a final
    newline, so msgspec lets exactly that through (a newline is never allowed): refuse it."""
    if value.endswith("\n"):
        raise validation_failed(path, "contains characters that are not allowed here")
    return value


def check_user_id(value: str, path: str = "user_id") -> str:
    """A user id from the path (bodies get the same rules from their Struct)."""
    return exact(convert(value, UserId, path), path)


def _too_deep(value: object, depth: int) -> bool:
    """Nesting deeper than MAX_DEPTH (the object itself is depth 1)."""
    if isinstance(value, dict):
        return depth > MAX_DEPTH or any(_too_deep(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return depth > MAX_DEPTH or any(_too_deep(v, depth + 1) for v in value)
    return False


def check_object(value: object, path: str, body_size: int | None = None) -> JsonObject:
    """An optional JSON object; ``null`` and ``[]`` (PHP's empty array; a longer list is
    refused by the Struct) mean ``{}``. U+0000 was refused when the body was decoded.
    ``body_size``: the size of the request body it came from, when known."""
    if not isinstance(value, dict):
        return {}
    if _too_deep(value, 1):
        raise validation_failed(path, f"nesting deeper than {MAX_DEPTH} levels")
    small = body_size is not None and body_size <= _SMALL_BODY
    if not small and len(_compact.encode(value)) > MAX_OBJECT_BYTES:
        raise validation_failed(path, f"encoded size must be at most {MAX_OBJECT_BYTES} bytes")
    return value


def check_tenants(named: list[str], slug: str) -> None:
    """Every Space a body, query or batch item names must be the key's own (403 if not)."""
    for name in named:
        if name != slug:
            raise PerkamoError(
                Code.TENANT_MISMATCH,
                "The Space named in the request does not match the API key's Space.",
            )


def tenants_named(value: object) -> list[str]:
    """The Space slugs a body names (``tenant`` / ``space``), if any: a raw JSON value or
    a decoded body Struct."""
    if isinstance(value, msgspec.Struct):
        return [v for k in ("tenant", "space") if isinstance(v := getattr(value, k, None), str)]
    if not isinstance(value, dict):
        return []
    return [v for k in ("tenant", "space") if isinstance(v := value.get(k), str)]


def decode_body(
    raw: bytes, shape: type, named: list[str], slug: str, fast_shape: type | None = None
) -> object:
    """A request body decoded once into its route's Struct, in the documented order of
    checks: JSON (``invalid_json``), then the Spaces it names (``tenant_mismatch``, with
    ``named`` from the query), then its schema (``validation_error``). A valid body — the
    common case — takes one pass in C (``typed``); anything else the two phases."""
    fast = _fast(fast_shape or shape)
    body = fast(raw) if fast is not None else None
    if body is not None:
        check_tenants(named + tenants_named(body), slug)
        return body
    value = decode_json(raw)
    check_tenants(named + tenants_named(value), slug)
    return convert(value, shape, "")


def decode_as(raw: bytes, shape: type[U], slug: str) -> U:
    """``decode_body`` into exactly ``shape`` (for a body built by the console or the CLI)."""
    body = decode_body(raw, shape, [], slug)
    assert isinstance(body, shape)
    return body


@functools.cache
def _fast(shape: type) -> Callable[[bytes], object] | None:
    """The one-pass decoder of ``shape``, unless it has number fields: msgspec would take a
    numeric string for a Decimal there, which ``conform`` refuses on the two-phase path."""
    return None if has_numbers(shape) else typed(shape)


def identify_input(body: IdentifyBody) -> tuple[str, JsonObject]:
    return exact(body.user_id, "user_id"), check_object(body.traits, "traits")


def event_input(value: object, prefix: str = "", body_size: int | None = None) -> EventInput:
    """Validate one event body (``prefix`` like ``events[3].`` inside a batch): a raw JSON
    value, or an EventBody the fast path decoded."""
    if isinstance(value, EventBody):
        body = value
    else:
        body = convert(value, EventBody, prefix.rstrip("."))
    exact(body.user_id, prefix + "user_id")
    context, occurred_at = event_fields(body, prefix, body_size)
    return EventInput(body.user_id, body.event, body.transaction_id, context, occurred_at)


def event_fields(
    body: EventBody | SimulateEventBody, prefix: str, body_size: int | None
) -> tuple[JsonObject, datetime | None]:
    """The checks every event gets beyond its Struct: the event key, the context (object,
    nesting, size, reserved keys) and ``occurred_at`` (RFC 3339 with a zone)."""
    exact(body.event, prefix + "event")
    context = check_object(body.context, prefix + "context", body_size)
    for key in context:
        if key.casefold() in RESERVED_CONTEXT_KEYS:
            raise PerkamoError(
                Code.RESERVED_CONTEXT_KEY,
                f"The context key {key!r} is reserved; rename it.",
                details=[{"path": f"{prefix}context.{key}", "message": "reserved key"}],
            )
    occurred_at = None
    if body.occurred_at is not None:
        try:
            occurred_at = parse_rfc3339(body.occurred_at)
        except ValueError as exc:
            raise validation_failed(prefix + "occurred_at", str(exc)) from None
    return context, occurred_at


def redeem_input(body: RedeemBody) -> tuple[str, str, str, JsonObject]:
    """(user_id, reward_key, transaction_id, context) of a redemption request."""
    exact(body.user_id, "user_id")
    exact(body.reward_key, "reward_key")
    return body.user_id, body.reward_key, body.transaction_id, check_object(body.context, "context")


def adjust_input(body: AdjustBody) -> AdjustBody:
    exact(body.user_id, "user_id")
    exact(body.wallet, "wallet")
    if not body.amount.is_finite():
        raise validation_failed("amount", "must be a finite decimal")
    return body


def check_transaction_id(value: str, path: str = "transaction_id") -> str:
    """A transaction id from the path (bodies get the same rules from their Struct)."""
    return convert(value, TransactionId, path)


def batch_items(body: BatchBody | TypedBatch) -> BatchBody | TypedBatch:
    """The batch envelope; raises for a body that is not ``{"events": [1..100 items]}``."""
    if not body.events:
        raise PerkamoError(Code.BATCH_EMPTY, "A batch needs at least one event.")
    if len(body.events) > MAX_BATCH:
        raise PerkamoError(
            Code.BATCH_TOO_LARGE,
            f"A batch holds at most {MAX_BATCH} events; got {len(body.events)}.",
        )
    return body
