"""Run ``perkamo serve`` as a real subprocess against the test's PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import trio

from perkamo import configuration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        pg_url: str | None,
        workdir: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        """``pg_url`` None: the server runs its own embedded PostgreSQL in ``workdir``."""
        self.extra_env = env or {}
        self.pg_url = pg_url
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"server-{self.port}.log"

    async def start(self) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if k != "PERKAMO_DATABASE_URL"},
            **({"PERKAMO_DATABASE_URL": self.pg_url} if self.pg_url else {}),
            "PERKAMO_DATA_DIR": str(self.workdir),
            "PERKAMO_LOG_LEVEL": "info",
            "PERKAMO_SHUTDOWN_GRACE_SECONDS": "2",
            **self.extra_env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "perkamo", "serve", "--host", "127.0.0.1"]
                + ["--port", str(self.port), *self.extra_args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient() as client:
            with trio.fail_after(60):
                while True:
                    assert self.proc.poll() is None, self.log()
                    try:
                        if (await client.get(self.base_url + "/readyz")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)

    def rss_bytes(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        proc = self.proc
        with trio.fail_after(timeout):
            while proc.poll() is None:
                await trio.sleep(0.05)
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def demo_program() -> dict[str, object]:
    """The demo program as a ``POST /v1/admin/config`` body."""
    _, modules = configuration.demo_program()
    return {"version": "demo", "modules": modules}
