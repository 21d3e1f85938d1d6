"""Operator use cases behind the CLI and demo mode: Spaces and API keys."""

from __future__ import annotations

import re
from pathlib import Path

from perkamo.access import keys
from storage import spaces as space_store
from storage.database import Conn
from storage.spaces import KeyRecord, SpaceRecord

DEMO_SPACE = "commerce-test"
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,127}\Z")


class AdminError(Exception):
    """An operator mistake, reported as a one-line message by the CLI."""


def create_space(conn: Conn, slug: str, name: str | None, environment: str) -> SpaceRecord:
    if not _SLUG.match(slug):
        raise AdminError("a slug is 1-128 characters of a-z, 0-9 and '-', starting alphanumeric")
    if environment not in ("test", "live"):
        raise AdminError("environment must be 'test' or 'live'")
    if space_store.get_space(conn, slug) is not None:
        raise AdminError(f"Space {slug!r} already exists")
    return space_store.create_space(conn, slug, name or slug, environment)


def require_space(conn: Conn, slug: str) -> SpaceRecord:
    space = space_store.get_space(conn, slug)
    if space is None:
        raise AdminError(f"no Space {slug!r}")
    return space


def create_key(conn: Conn, space: SpaceRecord, scopes: list[str] | None = None) -> tuple[str, str]:
    """Create a key; returns (key id, the key itself — shown once, never stored)."""
    try:
        chosen = keys.normalise_scopes(scopes) if scopes else list(keys.SCOPES)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    secret = keys.generate_key(space.environment)
    key_id = keys.new_key_id()
    space_store.insert_key(
        conn, key_id, space.id, keys.hash_key(secret), keys.display_prefix(secret), chosen
    )
    return key_id, secret


def revoke_key(conn: Conn, key_id: str) -> KeyRecord:
    record = space_store.get_key(conn, key_id)
    if record is None:
        raise AdminError(f"no key {key_id!r}")
    space_store.revoke_key(conn, key_id)
    return record


def rotate_key(conn: Conn, key_id: str, grace_seconds: float = 0) -> tuple[str, str]:
    """Issue a new key with the same Space and scopes and revoke the old one at once, or
    after ``grace_seconds`` (clients move to the new key meanwhile)."""
    record = space_store.get_key(conn, key_id)
    if record is None:
        raise AdminError(f"no key {key_id!r}")
    if record.revoked_at is not None:
        raise AdminError(f"key {key_id!r} is already revoked")
    space = require_space(conn, record.space_slug)
    new = create_key(conn, space, record.scopes)
    space_store.revoke_key(conn, key_id, grace_seconds)
    return new


def ensure_demo(conn: Conn, key_file: Path) -> tuple[SpaceRecord, str]:
    """The demo Space ``commerce-test`` and a key with every scope, kept in ``key_file``.

    A second run reuses both; a key file whose key no longer works is replaced.
    """
    space = space_store.get_space(conn, DEMO_SPACE) or space_store.create_space(
        conn, DEMO_SPACE, "Commerce Test", "test"
    )
    if key_file.exists():
        secret = key_file.read_text(encoding="utf-8").strip()
        record = space_store.find_key_by_hash(conn, keys.hash_key(secret))
        if record is not None and record.revoked_at is None and record.space_id == space.id:
            return space, secret
    _, secret = create_key(conn, space)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(secret + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    return space, secret


def check_webhook_url(space: SpaceRecord, url: str) -> None:
    """Raises AdminError unless ``url`` can receive this Space's webhooks."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
        raise AdminError("the webhook URL must be an absolute http(s) URL")
    if parts.scheme != "https" and space.environment == "live":
        raise AdminError("live Spaces deliver webhooks over https only")


def set_webhook(conn: Conn, slug: str, url: str) -> str:
    """Point the Space's webhook at ``url`` (enabled); returns the new signing secret, shown
    once. ``http://`` is allowed for test Spaces only, so local receivers work."""
    from perkamo.webhooks import new_secret
    from storage import webhooks as hook_store

    space = require_space(conn, slug)
    check_webhook_url(space, url)
    secret = new_secret()
    hook_store.set_endpoint(conn, space.id, url, secret)
    return secret
