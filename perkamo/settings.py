"""Settings: ``PERKAMO_*`` environment variables, overridden by CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True)
class Settings:
    host: str = field(default_factory=lambda: os.environ.get("PERKAMO_HOST", "localhost"))
    port: int = field(default_factory=lambda: int(os.environ.get("PERKAMO_PORT", "4001")))
    database_url: str | None = field(
        default_factory=lambda: os.environ.get("PERKAMO_DATABASE_URL") or None
    )
    data_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("PERKAMO_DATA_DIR", ".perkamo"))
    )
    log_level: str = field(default_factory=lambda: os.environ.get("PERKAMO_LOG_LEVEL", "info"))
    mailbox_capacity: int = field(
        default_factory=lambda: int(os.environ.get("PERKAMO_MAILBOX_CAPACITY", "1000"))
    )
    max_resident_profiles: int = field(
        default_factory=lambda: int(os.environ.get("PERKAMO_MAX_RESIDENT_PROFILES", "1000000"))
    )
    idle_seconds: float = field(
        default_factory=lambda: float(os.environ.get("PERKAMO_IDLE_SECONDS", "300"))
    )
    # The most messages the server holds (admitted to profiles, not yet answered — batch
    # items included); below it, the bound follows what the server drains in 2 s
    # (admission.py, API.md "Admission").
    max_pending: int = field(
        default_factory=lambda: int(os.environ.get("PERKAMO_MAX_PENDING", "20000"))
    )
    request_timeout: float = 5.0
    # A connection whose client sends nothing for this long is closed, also mid-body: a body
    # trickled in (or abandoned) cannot hold a connection forever. Well above the longest
    # request (the 5 s actor wait), since the server reads while a request is handled.
    read_timeout_seconds: int = field(
        default_factory=lambda: int(os.environ.get("PERKAMO_READ_TIMEOUT_SECONDS", "30"))
    )
    # Open connections beyond this are answered 503 and closed at once (file descriptors
    # must never run out; each connection also holds buffers).
    max_connections: int = field(
        default_factory=lambda: int(os.environ.get("PERKAMO_MAX_CONNECTIONS", "4096"))
    )
    # How long in-flight requests (and idle keep-alive connections) may hold a shutdown.
    shutdown_grace_seconds: float = field(
        default_factory=lambda: float(os.environ.get("PERKAMO_SHUTDOWN_GRACE_SECONDS", "10"))
    )
