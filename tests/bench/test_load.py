"""``python -m bench load`` against a real server process: it reads the program, drives
the workload, reports, and every event it reports answered is in the log."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from tests.perkamo.server.test_faults import start_server
from tests.spaces import committed

# Real server processes in real time: left out by `make test-fast`.
pytestmark = pytest.mark.slow


def _load(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "load", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_load_tool_drives_a_running_server(pg_url, tmp_path):
    server, space = await start_server(pg_url, tmp_path)
    try:
        ran = await trio.to_thread.run_sync(
            lambda: _load(
                "--url",
                server.base_url,
                "--key",
                space.key,
                "--workload",
                "batch",
                "--connections",
                "4",
                "--duration",
                "2",
                "--users",
                "50",
            )  # fmt: skip
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "batch against" in ran.stdout and "p99" in ran.stdout
        answered = int(ran.stdout.split("  200  ")[1].split()[0].replace(",", ""))
        assert answered > 0
        # Every item of every answered batch was applied (100 items per batch), plus at
        # most the batches still in flight on the 4 connections when the run ended.
        applied = sum(committed(pg_url, space.space.id).values())
        assert 100 * answered <= applied <= 100 * (answered + 4)
        paced = await trio.to_thread.run_sync(
            lambda: _load(
                "--url",
                server.base_url,
                "--key",
                space.key,
                "--rate",
                "50",
                "--duration",
                "2",
            )  # fmt: skip
        )
        assert paced.returncode == 0, paced.stdout + paced.stderr
        requests = int(paced.stdout.split("requests")[1].split()[0].replace(",", ""))
        assert 50 <= requests <= 150  # about 100 offered over 2 s
    finally:
        server.kill()


def test_a_server_not_on_this_machine_is_refused_without_the_flag():
    ran = _load("--url", "http://192.0.2.1:4000", "--key", "k", "--duration", "1")
    assert ran.returncode != 0
    assert "--i-own-this-server" in ran.stderr
