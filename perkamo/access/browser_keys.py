"""Browser keys (docs/api.md "The browser half"): what a front end ships, and the policy that bounds
every token minted for it — the origins a page may call from, the events it may send, what it may do
(read, events, stream) and how fast one customer may go.

One set of rules for the API, the console and the CLI: :func:`policy` checks a whole
policy (raising :class:`PolicyError` with the JSON path of the first problem), and
:func:`origin_allowed` is the one origin comparison.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from perkamo.access.keys import hash_key, random_token
from storage import browser_keys as store
from storage.browser_keys import BrowserKeyRecord
from storage.database import Conn

CAPABILITIES = ("read", "events", "stream")
DEFAULT_CAPABILITIES = {"read": True, "events": True, "stream": True}
DEFAULT_RATE = {"per_second": 5, "burst": 20}
LOCALHOST_ANY_PORT = "http://localhost:*"
MAX_ORIGINS = 100
MAX_EVENTS = 500
MAX_RATE = 10_000
_EVENT = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]{1,128}\Z")
_TRAIT = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,128}\Z")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\Z")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class PolicyError(ValueError):
    """A policy that cannot be stored: ``path`` names the field (``allowed_origins[1]``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def generate_key(environment: str) -> str:
    return f"bk_{environment}_{random_token(32)}"


def new_key_id() -> str:
    return "bkey_" + random_token(16)


def display_prefix(key: str) -> str:
    return key[:12]


def parse_origin(text: str) -> str | None:
    """``scheme://host[:port]`` normalised (lowercase, no default port), or None when it is
    not exactly an origin (a path, a query, user info, another scheme, a bad host)."""
    if not text.isascii() or any(c in text for c in " \t\r\n\\"):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in _DEFAULT_PORTS or parts.path or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return None
    if not text.lower().startswith(f"{scheme}://"):
        return None
    host = host.lower()
    if not (_HOST.match(host) or _is_ip(host)):
        return None
    shown = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def origin_allowed(allowed: list[str], origin: str) -> bool:
    """Whether a request's ``Origin`` header is one of ``allowed`` — exactly (scheme, host
    and port), never ``null``, and ``http://localhost:*`` for localhost on any port."""
    if origin == "null":
        return False
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    if parsed in allowed:
        return True
    if LOCALHOST_ANY_PORT in allowed:
        return parsed == "http://localhost" or parsed.startswith("http://localhost:")
    return False


def policy(
    given: Mapping[str, object], environment: str, base: Mapping[str, object] | None = None
) -> dict[str, object]:
    """A whole, checked policy from the fields ``given`` (over ``base``, an existing key's
    policy, for an update; else the defaults). Raises PolicyError."""
    merged: dict[str, object] = {
        "name": None,
        "allowed_origins": None,
        "allowed_events": [],
        "capabilities": dict(DEFAULT_CAPABILITIES),
        "rate": dict(DEFAULT_RATE),
        "expose_traits": None,
        **(base or {}),
    }
    for field, value in given.items():
        current = merged.get(field)  # capabilities and rate: always an object (defaults above)
        if field in ("capabilities", "rate") and isinstance(value, dict):
            assert isinstance(current, dict)
            merged[field] = {**current, **value}
        else:
            merged[field] = value
    return {
        "name": _name(merged["name"]),
        "allowed_origins": _origins(merged["allowed_origins"], environment),
        "allowed_events": _events(merged["allowed_events"]),
        "capabilities": _capabilities(merged["capabilities"]),
        "rate": _rate(merged["rate"]),
        "expose_traits": _traits(merged["expose_traits"]),
    }


def _name(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 128:
        raise PolicyError("name", "a name is 1-128 characters")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise PolicyError("name", "contains control characters")
    return value.strip()


def _origins(value: object, environment: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise PolicyError("allowed_origins", "list at least one origin")
    if len(value) > MAX_ORIGINS:
        raise PolicyError("allowed_origins", f"at most {MAX_ORIGINS} origins")
    origins: list[str] = []
    for index, item in enumerate(value):
        path = f"allowed_origins[{index}]"
        if item == LOCALHOST_ANY_PORT:
            if environment != "test":
                raise PolicyError(path, "http://localhost:* is for test Spaces only")
            parsed: str | None = LOCALHOST_ANY_PORT
        else:
            parsed = parse_origin(item) if isinstance(item, str) else None
        if parsed is None:
            raise PolicyError(
                path,
                "an origin is scheme://host[:port] exactly (http or https; no path, no "
                "wildcard), e.g. https://shop.example.com",
            )
        if parsed not in origins:
            origins.append(parsed)
    return origins


def _events(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_EVENTS:
        raise PolicyError("allowed_events", f'a list of at most {MAX_EVENTS} event keys, or ["*"]')
    if "*" in value and value != ["*"]:
        raise PolicyError("allowed_events", '"*" stands alone: ["*"] allows every configured event')
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _EVENT.match(item):
            raise PolicyError(f"allowed_events[{index}]", "must be an event key")
    return list(dict.fromkeys(value))


def _capabilities(value: object) -> dict[str, bool]:
    if not isinstance(value, dict):
        raise PolicyError("capabilities", "an object of read, events and stream booleans")
    for name, flag in value.items():
        if name not in CAPABILITIES:
            raise PolicyError(f"capabilities.{name}", "is not read, events or stream")
        if not isinstance(flag, bool):
            raise PolicyError(f"capabilities.{name}", "must be true or false")
    return {name: bool(value.get(name, False)) for name in CAPABILITIES}


def _rate(value: object) -> dict[str, int | float]:
    if not isinstance(value, dict) or set(value) - {"per_second", "burst"}:
        raise PolicyError("rate", "an object {per_second, burst}")
    per_second, burst = value.get("per_second"), value.get("burst")
    if isinstance(per_second, Decimal):
        per_second = float(per_second)
    if isinstance(per_second, bool) or not isinstance(per_second, int | float):
        raise PolicyError("rate.per_second", "must be a number")
    if not 0 < float(per_second) <= MAX_RATE:
        raise PolicyError("rate.per_second", f"must be above 0 and at most {MAX_RATE}")
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_RATE:
        raise PolicyError("rate.burst", f"must be a whole number from 1 to {MAX_RATE}")
    number = int(per_second) if float(per_second).is_integer() else float(per_second)
    return {"per_second": number, "burst": burst}


def _traits(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 100:
        raise PolicyError("expose_traits", "a list of at most 100 trait names, or null")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _TRAIT.match(item):
            raise PolicyError(f"expose_traits[{index}]", "must be a trait name")
    return list(dict.fromkeys(value))


def policy_of(record: BrowserKeyRecord) -> dict[str, object]:
    return {
        "name": record.name,
        "allowed_origins": list(record.allowed_origins),
        "allowed_events": list(record.allowed_events),
        "capabilities": dict(record.capabilities),
        "rate": dict(record.rate),
        "expose_traits": None if record.expose_traits is None else list(record.expose_traits),
    }


@dataclass(frozen=True, slots=True)
class Created:
    record: BrowserKeyRecord
    key: str  # shown once


def create(conn: Conn, space_id: int, environment: str, given: Mapping[str, object]) -> Created:
    """A new browser key of the Space (raises PolicyError)."""
    checked = policy(given, environment)
    secret = generate_key(environment)
    record = store.insert(
        conn, new_key_id(), space_id, hash_key(secret), display_prefix(secret), checked
    )
    return Created(record, secret)


def of_space(conn: Conn, space_id: int, key_id: str) -> BrowserKeyRecord | None:
    """The key ``key_id`` if it belongs to the Space (another Space's is not found)."""
    record = store.get(conn, key_id)
    return record if record is not None and record.space_id == space_id else None


def update(
    conn: Conn, space_id: int, key_id: str, given: Mapping[str, object]
) -> BrowserKeyRecord | None:
    """Change some of a key's policy (None: no such key in the Space). A revoked key can
    still be read but not changed back to life: its tokens stay invalid."""
    record = of_space(conn, space_id, key_id)
    if record is None:
        return None
    checked = policy(given, record.space_environment, policy_of(record))
    return store.update(conn, key_id, checked)


def revoke(conn: Conn, space_id: int, key_id: str) -> BrowserKeyRecord | None:
    if of_space(conn, space_id, key_id) is None:
        return None
    return store.revoke(conn, key_id)


def ensure_demo(conn: Conn, space_id: int, key_file: Path, origins: list[str]) -> str:
    """The demo Space's browser key (``perkamo serve --demo``), kept in ``key_file``: reused
    while it is live and allows ``origins``, else replaced."""
    if key_file.exists():
        secret = key_file.read_text(encoding="utf-8").strip()
        record = store.find_by_hash(conn, hash_key(secret))
        if (
            record is not None
            and record.revoked_at is None
            and record.space_id == space_id
            and all(o in record.allowed_origins for o in origins)
        ):
            return secret
    given = {
        "name": "Demo widget",
        "allowed_origins": origins,
        "allowed_events": ["*"],
        "expose_traits": [],
    }
    created = create(conn, space_id, "test", given)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(created.key + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    return created.key
