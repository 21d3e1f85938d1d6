"""Settings: defaults that work on a laptop, ``PERKAMO_*`` environment variables read once
by :meth:`Settings.from_env`, then CLI flags. Nothing reads the environment on its own, so a
developer's shell never leaks into tests. The timeouts are one set whose order is checked
when settings are made: a request waits longer than a statement runs, which runs longer
than a pool checkout waits — otherwise a slow database would surface as a request timeout
(``outcome_unknown``) instead of ``storage_unavailable``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import Timeouts

# NOTIFY is a hint, never the only path: what a server caches from storage (key records,
# compiled programs, webhook endpoints) is read again at least this often, so a change whose
# notification was missed (the listener was reconnecting, a failover) still arrives
# (docs/architecture.md "PostgreSQL failover"). The listener's (re)connection forgets them too.
CACHE_RELOAD_SECONDS = 30.0


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(slots=True)
class Settings:
    """What a server (or an operator command) runs with."""

    host: str = "localhost"
    port: int = 4001
    database_url: str | None = None  # None: the embedded PostgreSQL under data_dir
    data_dir: Path = Path(".perkamo")
    log_level: str = "info"
    mailbox_capacity: int = 1000  # messages waiting per profile before 503 overloaded
    max_resident_profiles: int = 1_000_000
    idle_seconds: float = 300.0  # a profile idle this long leaves memory
    # The most messages the server holds (admitted to profiles, not yet answered — batch
    # items included); below it, the bound follows what the server drains in 2 s
    # (actors/_admission.py, docs/api.md "Admission").
    max_pending: int = 20_000
    # Open connections beyond this are answered 503 and closed at once (file descriptors
    # must never run out; each connection also holds buffers). Live streams are connections
    # too: the default leaves room for max_streams of them beside 4,096 others.
    max_connections: int = 4096 + 20_000
    # How long in-flight requests (and idle keep-alive connections) may hold a shutdown.
    shutdown_grace_seconds: float = 10.0
    # A request's headers and body must arrive within read_timeout (also how long an idle
    # connection stays open). It then waits at most request_timeout for its answer, longer
    # than a statement runs, longer than a pool checkout waits (checked in __post_init__).
    read_timeout_seconds: float = 30.0
    request_timeout: float = 5.0
    statement_timeout: float = 4.0
    checkout_timeout: float = 3.0
    # Several members (README "Several workers and hosts"): the address other members reach
    # this one's internal port at (HOST:PORT; port 0 picks a free one), and how many worker
    # processes ``perkamo serve`` starts on this host.
    cluster_address: str = "127.0.0.1:0"
    workers: int = 1
    # Live streams (docs/api.md "The browser half"): at most this many open in one process (beyond:
    # 503); and the ``iss`` of the browser tokens this server mints and accepts.
    max_streams: int = 20_000
    token_issuer: str = "perkamo"
    # Ticks a second the sweeper may send from this member to profiles whose pending points
    # are due for release or whose points are due to expire (0: no sweeper; they settle at
    # their next write instead). Due times cluster at local midnights.
    sweep_rate: float = 2000.0

    def __post_init__(self) -> None:
        if self.read_timeout_seconds <= 0:
            raise SettingsError("PERKAMO_READ_TIMEOUT_SECONDS must be a positive number")
        order = [
            ("PERKAMO_REQUEST_TIMEOUT_SECONDS", self.request_timeout),
            ("PERKAMO_STATEMENT_TIMEOUT_SECONDS", self.statement_timeout),
            ("PERKAMO_CHECKOUT_TIMEOUT_SECONDS", self.checkout_timeout),
        ]
        for (name, value), (shorter, limit) in zip(order, order[1:], strict=False):
            if value <= limit:
                raise SettingsError(
                    f"{name} ({value:g} s) must be longer than {shorter} ({limit:g} s)"
                )
        for name, value in order:
            if value <= 0:
                raise SettingsError(f"{name} must be a positive number of seconds")
        for name in (
            "mailbox_capacity", "max_resident_profiles", "max_pending", "max_connections",
            "max_streams",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise SettingsError(f"PERKAMO_{name.upper()} must be at least 1")

        host, _, port = self.cluster_address.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise SettingsError("PERKAMO_CLUSTER_ADDRESS must be HOST:PORT")
        if self.workers < 1:
            raise SettingsError("PERKAMO_WORKERS must be at least 1")
        if self.sweep_rate < 0:
            raise SettingsError("PERKAMO_SWEEP_RATE must not be negative")

    @property
    def timeouts(self) -> Timeouts:
        """What storage needs of them."""
        return Timeouts(statement=self.statement_timeout, checkout=self.checkout_timeout)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: object) -> Settings:
        """Settings from ``PERKAMO_*`` variables (unset ones keep their defaults), then
        ``overrides`` (CLI flags; None means not given). Raises SettingsError naming the
        variable for a value that does not parse."""
        values: dict[str, Any] = {}  # each of a field's own type
        for variable, field, parse in _VARIABLES:
            raw = environ.get(variable)
            if raw is None or raw == "":
                continue
            try:
                values[field] = parse(raw)
            except ValueError:
                raise SettingsError(f"{variable}={raw!r} is not a valid value") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:  # the fields' own types
        return dataclasses.replace(self, **changes)


def parse_workers(raw: str) -> int:
    """A number of worker processes, or ``auto``: one per core."""
    return (os.cpu_count() or 1) if raw.strip() == "auto" else int(raw)


_VARIABLES: list[tuple[str, str, Callable[[str], object]]] = [
    ("PERKAMO_HOST", "host", str),
    ("PERKAMO_PORT", "port", int),
    ("PERKAMO_DATABASE_URL", "database_url", str),
    ("PERKAMO_DATA_DIR", "data_dir", Path),
    ("PERKAMO_LOG_LEVEL", "log_level", str),
    ("PERKAMO_MAILBOX_CAPACITY", "mailbox_capacity", int),
    ("PERKAMO_MAX_RESIDENT_PROFILES", "max_resident_profiles", int),
    ("PERKAMO_IDLE_SECONDS", "idle_seconds", float),
    ("PERKAMO_MAX_PENDING", "max_pending", int),
    ("PERKAMO_MAX_CONNECTIONS", "max_connections", int),
    ("PERKAMO_SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds", float),
    ("PERKAMO_READ_TIMEOUT_SECONDS", "read_timeout_seconds", float),
    ("PERKAMO_REQUEST_TIMEOUT_SECONDS", "request_timeout", float),
    ("PERKAMO_STATEMENT_TIMEOUT_SECONDS", "statement_timeout", float),
    ("PERKAMO_CHECKOUT_TIMEOUT_SECONDS", "checkout_timeout", float),
    ("PERKAMO_CLUSTER_ADDRESS", "cluster_address", str),
    ("PERKAMO_WORKERS", "workers", lambda raw: parse_workers(raw)),
    ("PERKAMO_MAX_STREAMS", "max_streams", int),
    ("PERKAMO_TOKEN_ISSUER", "token_issuer", str),
    ("PERKAMO_SWEEP_RATE", "sweep_rate", float),
]
