"""Schema fuzzing: schemathesis against a running server (subprocess, real PostgreSQL),
driven by the server's own ``/openapi.json``. Every check runs — no 5xx, status codes,
content types, headers and bodies conform to the document, invalid data is refused, auth is
enforced, 405s carry ``allow`` — except ``positive_data_acceptance``: schema-valid requests
may meet business rules (an unknown reward, a balance too low, a program that does not
compile), which answer 400 by design; and ``use_after_free``: ``DELETE`` on a back-test
cancels it, and the job stays readable with status ``cancelled`` (docs/api.md (trying a program)) — the check
takes that for a deleted resource still served.

CI runs a bounded pass (fixed seed, 25 examples per operation, examples + coverage +
fuzzing + stateful phases). A longer run for contributors: ``make fuzz`` (see README).
The browser calls (``/v1/client/*``) are left out: they take a browser token minted for a
customer (the schema's bearer token, which a fuzzer cannot make), so every call would be
one 401; their refusals are the security tests' job (tests/perkamo/http/test_client_api.py).

One worker: with two, schemathesis' threads occasionally crash inside Hypothesis on CPython
3.11's ``ast.parse`` ("AST constructor recursion depth mismatch", python/cpython#106905) —
a failure of the tool, not of the server. Concurrent requests are the fault tests' job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.server_process import demo_program
from tests.spaces import make_space

# Real server processes in real time: left out by `make test-fast`.
pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("PERKAMO_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("PERKAMO_FUZZ_SEED", "20261125")
MAX_SECONDS = int(os.environ.get("PERKAMO_FUZZ_MAX_SECONDS", "300"))


async def test_schemathesis_finds_nothing(server, pg_url, tmp_path):
    space = make_space(pg_url)
    headers = {"x-perkamo-api-key": space.key}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as client:
        loaded = await client.post("/v1/admin/config", json=demo_program())
        assert loaded.status_code == 200, loaded.text
    st = Path(sys.executable).with_name("st")
    command = [
        str(st), "run", f"{server.base_url}/openapi.json",
        "--header", f"x-perkamo-api-key: {space.key}",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance,use_after_free",
        "--exclude-path-regex", "^/v1/client/",
        "--max-examples", str(EXAMPLES), "--seed", SEED, "--workers", "1",
        "--request-timeout", "10", "--no-color",
    ]  # fmt: skip
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            command, capture_output=True, text=True, cwd=tmp_path, timeout=MAX_SECONDS
        )
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
    log = server.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-4000:]
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        assert (await client.get("/readyz")).status_code == 200
