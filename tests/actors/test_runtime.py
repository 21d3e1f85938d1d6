"""The generic actor runtime, in virtual time (no real sleeps)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import pytest
import trio
import trio.testing

from actors import (
    ActorFailed,
    ActorSystemClosed,
    MailboxFull,
    open_actor_system,
)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class Recorder:
    """An actor that records what it handled; ``delay`` makes handling take virtual time."""

    def __init__(self, key: str, log: list[tuple[str, object]], delay: float = 0.0) -> None:
        self.key = key
        self.log = log
        self.delay = delay
        self.batches: list[int] = []

    async def receive(self, messages: Sequence[object]) -> list[object]:
        self.batches.append(len(messages))
        if self.delay:
            await trio.sleep(self.delay)
        replies = []
        for message in messages:
            if message == "boom":
                raise ValueError("handler failed")
            self.log.append((self.key, message))
            replies.append((self.key, message))
        return replies


def recorder_factory(log: list[tuple[str, object]], delay: float = 0.0, activations=None):
    async def activate(key: str) -> Recorder:
        if activations is not None:
            activations.append(key)
        await trio.sleep(0)  # state loading is asynchronous
        return Recorder(key, log, delay)

    return activate


async def test_messages_to_one_key_are_handled_in_order(autojump_clock):
    log: list[tuple[str, object]] = []
    async with open_actor_system(recorder_factory(log, delay=0.01)) as system:
        replies = [system.ask_nowait("a", i) for i in range(50)]
        results = [await r.wait() for r in replies]
    assert results == [("a", i) for i in range(50)]
    assert [m for _, m in log] == list(range(50))


async def test_waiting_messages_are_handed_over_as_one_batch(autojump_clock):
    log: list[tuple[str, object]] = []
    actors_seen: list[Recorder] = []

    async def activate(key: str) -> Recorder:
        actor = Recorder(key, log, delay=1.0)
        actors_seen.append(actor)
        return actor

    async with open_actor_system(activate, batch_limit=10) as system:
        replies = [system.ask_nowait("a", i) for i in range(25)]
        for r in replies:
            await r.wait()
    assert actors_seen[0].batches == [10, 10, 5]


async def test_different_keys_run_concurrently(autojump_clock):
    log: list[tuple[str, object]] = []
    async with open_actor_system(recorder_factory(log, delay=1.0)) as system:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for key in "abcdefghij":
                nursery.start_soon(system.ask, key, "hello")
        elapsed = trio.current_time() - start
    # Ten actors each taking one virtual second finish together, not in ten seconds.
    assert elapsed == pytest.approx(1.0)
    assert sorted(k for k, _ in log) == list("abcdefghij")


async def test_mailbox_is_bounded(autojump_clock):
    log: list[tuple[str, object]] = []
    async with open_actor_system(
        recorder_factory(log, delay=1.0), mailbox_capacity=3, batch_limit=1
    ) as system:
        accepted = [system.ask_nowait("a", i) for i in range(3)]
        with pytest.raises(MailboxFull):
            system.ask_nowait("a", 99)
        with pytest.raises(MailboxFull):
            system.send_nowait("a", 98)
        # ``send`` waits for space instead of failing.
        with trio.fail_after(10):
            await system.send("a", 4)
        for reply in accepted:
            await reply.wait()
        assert system.statistics().max_mailbox_depth == 3
    assert [m for _, m in log] == [0, 1, 2, 4]


async def test_idle_actors_are_passivated_and_reactivated(autojump_clock):
    log: list[tuple[str, object]] = []
    activations: list[str] = []
    async with open_actor_system(
        recorder_factory(log, activations=activations), idle_timeout=60
    ) as system:
        await system.ask("a", 1)
        await trio.sleep(30)
        assert system.is_resident("a")
        await system.ask("a", 2)  # refreshes the idle clock
        await trio.sleep(45)
        assert system.is_resident("a")
        await trio.sleep(60)
        assert not system.is_resident("a")
        stats = system.statistics()
        assert stats.passivations == 1
        await system.ask("a", 3)
        assert system.is_resident("a")
    assert activations == ["a", "a"]


async def test_resident_actors_are_capped_least_recently_used_first(autojump_clock):
    log: list[tuple[str, object]] = []
    async with open_actor_system(recorder_factory(log), max_resident=3) as system:
        for key in "abc":
            await system.ask(key, 0)
        await system.ask("a", 1)  # b is now the least recently used
        await system.ask("d", 0)
        assert [system.is_resident(k) for k in "abcd"] == [True, False, True, True]
        assert system.statistics().resident == 3
        assert system.statistics().passivations == 1


async def test_a_failing_handler_fails_only_its_callers_and_is_reactivated(autojump_clock):
    log: list[tuple[str, object]] = []
    activations: list[str] = []
    async with open_actor_system(
        recorder_factory(log, activations=activations), batch_limit=1
    ) as system:
        assert await system.ask("a", "before") == ("a", "before")
        with pytest.raises(ActorFailed) as failure:
            await system.ask("a", "boom")
        assert isinstance(failure.value.__cause__, ValueError)
        assert await system.ask("b", "unaffected") == ("b", "unaffected")
        assert await system.ask("a", "after") == ("a", "after")
        stats = system.statistics()
    assert activations == ["a", "b", "a"]
    assert stats.failures == 1


async def test_a_failing_activation_fails_the_waiting_callers(autojump_clock):
    attempts = 0

    async def activate(key: str) -> Recorder:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("storage down")
        return Recorder(key, [])

    async with open_actor_system(activate) as system:
        with pytest.raises(ActorFailed) as failure:
            await system.ask("a", 1)
        assert isinstance(failure.value.__cause__, ConnectionError)
        assert await system.ask("a", 2) == ("a", 2)


async def test_statistics_count_the_work(autojump_clock):
    log: list[tuple[str, object]] = []
    async with open_actor_system(recorder_factory(log, delay=1.0)) as system:
        replies = [system.ask_nowait(k, i) for i in range(3) for k in "xy"]
        stats = system.statistics()
        assert stats.queued == 6
        assert stats.running == 2
        for r in replies:
            await r.wait()
        stats = system.statistics()
    assert stats.messages == 6
    assert stats.activations == 2
    assert stats.queued == 0
    assert stats.running == 0
    assert stats.resident == 2


async def test_closing_drains_every_admitted_message(autojump_clock):
    log: list[tuple[str, object]] = []
    async with open_actor_system(recorder_factory(log, delay=5.0)) as system:
        for i in range(5):
            system.send_nowait("slow", i)
    # Leaving the block waited for all five, although nobody asked for replies.
    assert [m for _, m in log] == list(range(5))
    with pytest.raises(ActorSystemClosed):
        system.send_nowait("slow", 6)


async def test_cancelled_system_fails_pending_callers(autojump_clock):
    log: list[tuple[str, object]] = []
    hosted: list[object] = []
    ready = trio.Event()

    async def host() -> None:
        with trio.move_on_after(1):
            async with open_actor_system(recorder_factory(log, delay=100)) as system:
                hosted.append(system)
                ready.set()
                await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(host)
        await ready.wait()
        system = hosted[0]
        in_flight = system.ask_nowait("a", 1)  # being handled when the cancel comes
        queued = system.ask_nowait("a", 2)  # still in the mailbox
        with trio.fail_after(10):
            for reply in (in_flight, queued):
                with pytest.raises(ActorSystemClosed):
                    await reply.wait()
    assert log == []


def test_actors_package_imports_nothing_from_the_product():
    code = (
        "import sys, actors\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('perkamo', 'storage', 'quart', 'quart_trio', 'hypercorn', 'psycopg', 'psycopg_pool')]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


async def test_a_withdrawn_message_is_never_handled(autojump_clock):
    """A caller that stops waiting before the actor took its message can take it back, and
    then knows for certain it was not applied; once taken it cannot be withdrawn."""
    log: list[tuple[str, object]] = []
    async with open_actor_system(recorder_factory(log, delay=1.0)) as system:
        first = system.ask_nowait("a", 1)
        await trio.sleep(0.5)  # the actor has taken 1 and is busy with it
        second = system.ask_nowait("a", 2)
        third = system.ask_nowait("a", 3)
        assert not first.withdraw()
        assert second.withdraw()
        assert await first.wait() == ("a", 1)
        assert await third.wait() == ("a", 3)
        assert system.statistics().pending == 0
    assert [m for _, m in log] == [1, 3]


async def test_the_work_the_system_holds_is_bounded(autojump_clock):
    from actors import SystemFull

    log: list[tuple[str, object]] = []
    async with open_actor_system(recorder_factory(log, delay=1.0), max_pending=3) as system:
        replies = [system.ask_nowait(key, 0) for key in "abc"]
        with pytest.raises(SystemFull):
            system.ask_nowait("d", 0)
        assert system.statistics().pending == 3
        for reply in replies:
            await reply.wait()
        assert system.statistics().pending == 0
        assert await system.ask_nowait("d", 1).wait() == ("d", 1)
