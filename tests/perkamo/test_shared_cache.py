"""The one cache for values loaded from storage (keys, programs, endpoints, meters)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from storage.cache import SharedCache


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_concurrent_misses_share_one_load(autojump_clock):
    loads: list[str] = []

    async def load(key: str) -> str:
        loads.append(key)
        await trio.sleep(1)
        return key.upper()

    cache: SharedCache[str, str] = SharedCache(load)
    results: list[str] = []
    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(lambda: _append(results, cache.get("a")))
    assert results == ["A"] * 100 and loads == ["a"]
    assert await cache.get("a") == "A" and loads == ["a"]


async def _append(results: list[str], value) -> None:
    results.append(await value)


async def test_a_load_that_overlapped_a_forget_is_not_kept(autojump_clock):
    versions = iter(["old", "new"])

    async def load(key: str) -> str:
        value = next(versions)
        await trio.sleep(1)
        return value

    cache: SharedCache[str, str] = SharedCache(load)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _append([], cache.get("k")))
        await trio.sleep(0.5)
        cache.forget()  # the change was announced while "old" was being read
    assert cache.peek("k") is None
    assert await cache.get("k") == "new"


async def test_max_age_reloads_and_failed_loads_are_not_cached(autojump_clock):
    calls = []

    async def load(key: str) -> int:
        calls.append(key)
        if len(calls) == 2:
            raise RuntimeError("storage is down")
        return len(calls)

    cache: SharedCache[str, int] = SharedCache(load)
    assert await cache.get("k") == 1
    await trio.sleep(2)
    with pytest.raises(RuntimeError):
        await cache.get("k", max_age=1)
    assert await cache.get("k", max_age=1) == 3
