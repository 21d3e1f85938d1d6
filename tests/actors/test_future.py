"""The one-shot future every message waits on (reply, load, commit)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors import Future


async def test_a_waiter_gets_the_value_set_later():
    future: Future[int] = Future()
    got: list[int] = []

    async def waiter() -> None:
        got.append(await future.wait())

    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert not future.done
            future.resolve(7)
            future.resolve(8)  # settled once: ignored
    assert got == [7]


async def test_a_settled_future_answers_at_once_and_raises_its_error():
    future: Future[int] = Future()
    future.fail(ValueError("no"))
    future.resolve(1)  # ignored: already failed
    with trio.fail_after(1), pytest.raises(ValueError, match="no"):
        await future.wait()


async def test_a_cancelled_waiter_leaves_the_future_usable():
    future: Future[int] = Future()
    with trio.move_on_after(0.01) as scope:
        await future.wait()
    assert scope.cancelled_caught
    future.resolve(3)  # nobody waits: nothing to wake
    with trio.fail_after(1):
        assert await future.wait() == 3


async def test_only_one_task_may_wait():
    future: Future[int] = Future()
    errors: list[BaseException] = []

    async def second() -> None:
        try:
            await future.wait()
        except RuntimeError as exc:
            errors.append(exc)

    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(future.wait)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            future.resolve(1)
    assert len(errors) == 1
