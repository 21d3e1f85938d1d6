"""The browser half's use cases (docs/api.md "The browser half"), called alike by the API, the
console and the CLI: browser keys created, changed and revoked (each with its audit row, in the same
transaction), their documents, and minting a browser token for a customer."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from perkamo.access import browser_keys as keys
from perkamo.access import tokens
from perkamo.access.browser_keys import PolicyError
from perkamo.errors import Code, PerkamoError, validation_failed
from perkamo.http.browser_shapes import (
    BrowserKeyDocument,
    BrowserToken,
    BrowserTokenBody,
    Capabilities,
    Rate,
)
from perkamo.program.timefmt import format_rfc3339
from perkamo.runtime import Runtime
from storage import browser_keys as store
from storage.browser_keys import BrowserKeyRecord
from storage.console import audit
from storage.database import Conn
from storage.spaces import KeyRecord


def document(record: BrowserKeyRecord, key: str | None = None) -> BrowserKeyDocument:
    rate = record.rate
    return BrowserKeyDocument(
        id=record.id,
        prefix=record.prefix,
        name=record.name,
        allowed_origins=list(record.allowed_origins),
        allowed_events=list(record.allowed_events),
        capabilities=Capabilities(**{k: bool(v) for k, v in record.capabilities.items()}),
        rate=Rate(Decimal(str(rate["per_second"])), int(rate["burst"])),
        expose_traits=None if record.expose_traits is None else list(record.expose_traits),
        created_at=format_rfc3339(record.created_at),
        revoked_at=None if record.revoked_at is None else format_rfc3339(record.revoked_at),
        key=msgspec.UNSET if key is None else key,
    )


def given_fields(body: msgspec.Struct) -> dict[str, object]:
    """The policy fields a body sets (a PATCH's ``None`` means "unchanged")."""
    fields: dict[str, object] = {}
    for name in ("name", "allowed_origins", "allowed_events", "capabilities", "rate",
                 "expose_traits"):  # fmt: skip
        value = getattr(body, name, None)
        if value is None:
            continue
        fields[name] = msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value
    rate = fields.get("rate")
    if isinstance(rate, dict):
        rate["per_second"] = float(rate["per_second"])
    return fields


def refused(exc: PolicyError) -> PerkamoError:
    return validation_failed(exc.path, exc.message)


def create_key(
    conn: Conn, space_id: int, environment: str, given: dict[str, object], actor: str
) -> keys.Created:
    """Raises PolicyError."""
    created = keys.create(conn, space_id, environment, given)
    audit(conn, actor, "browser_key.create", space_id, created.record.id,
          details={"name": created.record.name})  # fmt: skip
    return created


def update_key(
    conn: Conn, space_id: int, key_id: str, given: dict[str, object], actor: str
) -> BrowserKeyRecord | None:
    record = keys.update(conn, space_id, key_id, given)
    if record is not None:
        audit(conn, actor, "browser_key.update", space_id, key_id, details=given)
    return record


def revoke_key(conn: Conn, space_id: int, key_id: str, actor: str) -> BrowserKeyRecord | None:
    record = keys.revoke(conn, space_id, key_id)
    if record is not None:
        audit(conn, actor, "browser_key.revoke", space_id, key_id)
    return record


def list_keys(conn: Conn, space_id: int) -> list[BrowserKeyRecord]:
    return store.list_of_space(conn, space_id)


def not_found(key_id: str) -> PerkamoError:
    return PerkamoError(Code.NOT_FOUND, f"No browser key {key_id!r} in this Space.")


async def mint(runtime: Runtime, minter: KeyRecord, body: BrowserTokenBody) -> BrowserToken:
    """A browser token for ``body.user_id`` (the caller's backend vouches for it). The
    browser key must be this Space's and alive, and allow streams for a stream token, else
    400 ``invalid_browser_key``. Stream tokens travel in URLs: clamped to 300 s, and
    ``expires_in`` says what was granted."""
    purpose = body.purpose or "client"
    record = await runtime.browser.browser_key(body.browser_key)
    if record is None or record.space_id != minter.space_id:
        raise PerkamoError(
            Code.INVALID_BROWSER_KEY,
            "The browser key is unknown, revoked or belongs to another Space.",
        )
    if purpose == "stream" and not record.capabilities.get("stream"):
        raise PerkamoError(Code.INVALID_BROWSER_KEY, "This browser key does not allow streams.")
    ttl = body.ttl_seconds if body.ttl_seconds is not None else tokens.DEFAULT_TTL
    if purpose == "stream":
        ttl = min(ttl, tokens.STREAM_MAX_TTL)
    token, expires = await tokens.mint(
        runtime.browser.ring, environment=record.space_environment, space=record.space_slug,
        browser_key_id=record.id, api_key_id=minter.id, user_id=body.user_id,
        purpose=purpose, ttl=ttl,
    )  # fmt: skip
    expires_at = format_rfc3339(datetime.fromtimestamp(expires, UTC))
    return BrowserToken(token, "Bearer", expires_at, ttl)
