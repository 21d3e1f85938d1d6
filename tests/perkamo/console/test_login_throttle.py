"""Login throttling is exact across server processes and concurrent attempts: attempts are
counted in PostgreSQL before the password is checked (with ``--workers 2``, 20 wrong logins
from one address once got 10 password checks before the first 429, and 40 concurrent ones
got 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from tests.api_client import app_for
from tests.conftest import forget_dead_members
from tests.perkamo.console.helpers import Browser, add_operator


async def _attempt(browser: Browser, email: str, password: str, statuses: list[int]) -> None:
    statuses.append((await browser.login(email, password)).status)


async def test_forty_concurrent_wrong_logins_get_five_password_checks(
    pg_url, runtime, monkeypatch: pytest.MonkeyPatch
):
    from perkamo.console import security

    checks: list[str] = []
    original = security.check_password

    def counted(password_hash: str | None, password: str) -> bool:
        checks.append(password)
        return original(password_hash, password)

    monkeypatch.setattr(security, "check_password", counted)
    email, _ = add_operator(pg_url, "swarm", "admin")
    address = "10.77.0.1"
    browsers = [Browser(app_for(runtime), address) for _ in range(40)]
    statuses: list[int] = []
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for browser in browsers:
                nursery.start_soon(_attempt, browser, email, "wrong", statuses)
    assert sorted(statuses) == [401] * 5 + [429] * 35
    assert len(checks) == 5


async def test_the_limit_holds_across_two_server_processes(pg_url, tmp_path: Path):
    """Two runtimes (what two workers are) share the count: 20 wrong logins alternating
    between them from one address get 5 password checks, then 429."""
    email, password = add_operator(pg_url, "pair", "admin")
    forget_dead_members(pg_url)
    with trio.fail_after(120):
        async with (
            open_runtime(Settings(data_dir=tmp_path / "a"), pg_url) as one,
            open_runtime(Settings(data_dir=tmp_path / "b"), pg_url) as two,
        ):
            first = Browser(app_for(one), "10.77.0.2")
            second = Browser(app_for(two), "10.77.0.2")
            statuses = [
                (await (first if n % 2 else second).login(email, "wrong")).status for n in range(20)
            ]
            assert statuses == [401] * 5 + [429] * 15
            refused = await first.login(email, password)  # even the right password, for now
            assert refused.status == 429 and int(refused.headers["retry-after"]) > 0
            # Another account from another address is not held back by these failures.
            someone, theirs = add_operator(pg_url, "other", "viewer")
            other = Browser(app_for(two), "10.77.0.3")
            assert (await other.login(someone, theirs)).status == 303
