"""A Space's limits (usage meters per calendar month, the API-key rate and burst): which
exist and what a value may be — one rule for the console, the CLI and storage.

Bounded so that whatever is accepted can be stored and used: the meters are PostgreSQL
``bigint``s, and a limit of 10^23 was once accepted by the console and then failed every
group commit of its Space (``NumericValueOutOfRange``) until it was changed.
"""

from __future__ import annotations

LIMIT_NAMES = ("events", "profiles", "redemptions", "api_requests", "rate", "burst")
MAX_LIMIT = 10**15  # far below bigint (9.2 × 10^18), far above any real month


class InvalidLimit(ValueError):
    """A limit that is not a whole number from 1 to MAX_LIMIT (or none)."""


def parse_limit(name: str, text: str) -> int | None:
    """``text`` as the value of limit ``name``: None for "none"/"unlimited"/empty (no
    limit), else a whole number from 1 to MAX_LIMIT. Raises InvalidLimit."""
    if name not in LIMIT_NAMES:
        raise InvalidLimit(f"there is no limit {name!r}")
    value = text.strip().lower()
    if value in ("", "none", "unlimited"):
        return None
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidLimit(
            f"{name}: a limit is a whole number from 1 to {MAX_LIMIT:,} or 'none', not {text!r}"
        )
    return int(value)


def check_limits(changes: dict[str, int | None]) -> None:
    """Raises InvalidLimit unless every value is None or within 1..MAX_LIMIT."""
    for name, value in changes.items():
        if name not in LIMIT_NAMES:
            raise InvalidLimit(f"there is no limit {name!r}")
        if value is not None and (isinstance(value, bool) or not 1 <= value <= MAX_LIMIT):
            raise InvalidLimit(f"{name}: a limit is a whole number from 1 to {MAX_LIMIT:,}")
