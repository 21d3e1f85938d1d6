"""Actors started together by ``ask_many_nowait`` run as one cohort: one activation call,
one receive call for their first batches, then each goes on alone."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from actors import ActorFailed, ActorSystemClosed, MailboxFull, Reply, SystemFull, open_actor_system

from .test_runtime import Recorder, recorder_factory


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class RecordingCohort:
    """Activates and receives for many actors at once, recording each call."""

    def __init__(self, log: list[tuple[str, object]], *, fail_keys: Sequence[str] = ()) -> None:
        self.log = log
        self.fail_keys = set(fail_keys)
        self.activations: list[list[str]] = []
        self.receives: list[list[tuple[str, list[object]]]] = []
        self.raise_in_receive: Exception | None = None
        self.slow: set[int] = set()  # batches answered 5 s after the others

    async def activate(self, keys: Sequence[str]) -> list[Recorder | Exception]:
        self.activations.append(list(keys))
        await trio.sleep(0.01)
        return [
            ValueError(f"cannot load {k}") if k in self.fail_keys else Recorder(k, self.log)
            for k in keys
        ]

    async def receive(self, batches: Sequence[tuple[Recorder, Sequence[object]]], answered) -> None:
        self.receives.append([(a.key, list(m)) for a, m in batches])
        await trio.sleep(0.01)
        if self.raise_in_receive is not None:
            raise self.raise_in_receive
        for i, (actor, messages) in enumerate(batches):
            if i in self.slow:
                continue
            try:
                answered(i, await actor.receive(messages))
            except Exception as exc:
                answered(i, exc)
        for i in sorted(self.slow):
            if i < len(batches):
                await trio.sleep(5)
                answered(i, await batches[i][0].receive(batches[i][1]))


async def answers(replies: Sequence[Reply[object] | Exception]) -> list[object]:
    out: list[object] = []
    for reply in replies:
        if isinstance(reply, Exception):
            out.append(reply)
            continue
        try:
            out.append(await reply.wait())
        except Exception as exc:
            out.append(exc)
    return out


async def test_idle_actors_start_as_one_cohort(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    single: list[str] = []
    async with open_actor_system(recorder_factory(log, activations=single), cohort=cohort) as s:
        replies = s.ask_many_nowait([("a", 1), ("b", 2), ("a", 3), ("c", 4)])
        assert await answers(replies) == [("a", 1), ("b", 2), ("a", 3), ("c", 4)]
    assert cohort.activations == [["a", "b", "c"]]
    assert cohort.receives == [[("a", [1, 3]), ("b", [2]), ("c", [4])]]
    assert single == []  # nobody was activated alone
    assert log == [("a", 1), ("a", 3), ("b", 2), ("c", 4)]


async def test_one_idle_actor_runs_alone(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    async with open_actor_system(recorder_factory(log), cohort=cohort) as s:
        assert await answers(s.ask_many_nowait([("a", 1), ("a", 2)])) == [("a", 1), ("a", 2)]
    assert cohort.activations == [] and cohort.receives == []


async def test_a_busy_actor_keeps_its_own_runner_and_order(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    async with open_actor_system(recorder_factory(log, delay=1.0), cohort=cohort) as s:
        first = s.ask_nowait("a", 0)  # "a" is running alone from now on
        await trio.sleep(0.1)
        replies = s.ask_many_nowait([("a", 1), ("b", 2), ("c", 3)])
        assert await answers([first, *replies]) == [("a", 0), ("a", 1), ("b", 2), ("c", 3)]
    assert cohort.receives == [[("b", [2]), ("c", [3])]]
    assert [m for k, m in log if k == "a"] == [0, 1]


async def test_messages_arriving_during_the_cohort_are_handled_after_it(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    async with open_actor_system(recorder_factory(log), cohort=cohort, batch_limit=2) as s:
        replies = s.ask_many_nowait([("a", 1), ("a", 2), ("a", 3), ("b", 4)])
        await trio.sleep(0.015)  # activated; the cohort's receive is under way
        later = s.ask_nowait("b", 5)
        assert await answers([*replies, later]) == [
            ("a", 1), ("a", 2), ("a", 3), ("b", 4), ("b", 5),
        ]  # fmt: skip
        stats = s.statistics()
        assert stats.pending == 0 and stats.running == 0 and stats.queued == 0
    assert cohort.receives == [[("a", [1, 2]), ("b", [4])]]  # the batch limit held
    assert [m for k, m in log if k == "a"] == [1, 2, 3]
    assert [m for k, m in log if k == "b"] == [4, 5]


async def test_failures_stay_with_their_actor(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log, fail_keys=["x"])
    async with open_actor_system(recorder_factory(log), cohort=cohort) as s:
        replies = s.ask_many_nowait([("a", 1), ("x", 2), ("b", "boom"), ("c", 3)])
        got = await answers(replies)
        assert got[0] == ("a", 1) and got[3] == ("c", 3)
        assert isinstance(got[1], ActorFailed) and isinstance(got[1].__cause__, ValueError)
        assert isinstance(got[2], ActorFailed)
        assert not s.is_resident("x")  # never activated
        assert s.resident("b") is None  # discarded after failing
        # Each is activated again on its next message: "b" recovers, "x" still cannot load.
        again = await answers(s.ask_many_nowait([("x", 4), ("b", 5)]))
        assert isinstance(again[0], ActorFailed) and again[1] == ("b", 5)
        assert s.statistics().failures == 3
    assert cohort.activations == [["a", "x", "b", "c"], ["x", "b"]]


async def test_a_cohort_that_raises_fails_every_batch_and_discards_the_actors(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    cohort.raise_in_receive = RuntimeError("cohort broke")
    async with open_actor_system(recorder_factory(log), cohort=cohort) as s:
        got = await answers(s.ask_many_nowait([("a", 1), ("b", 2)]))
        assert all(isinstance(g, ActorFailed) for g in got)
        assert s.resident("a") is None and s.resident("b") is None
        cohort.raise_in_receive = None
        assert await answers(s.ask_many_nowait([("a", 3), ("b", 4)])) == [("a", 3), ("b", 4)]
    assert len(cohort.activations) == 2


async def test_refused_items_are_reported_in_place(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    async with open_actor_system(
        recorder_factory(log), cohort=cohort, mailbox_capacity=1, max_pending=3
    ) as s:
        replies = s.ask_many_nowait([("a", 1), ("a", 2), ("b", 3), ("c", 4), ("d", 5)])
        assert isinstance(replies[1], MailboxFull)
        assert isinstance(replies[4], SystemFull)
        got = await answers(replies)
        assert [got[0], got[2], got[3]] == [("a", 1), ("b", 3), ("c", 4)]
    assert cohort.receives == [[("a", [1]), ("b", [3]), ("c", [4])]]


async def test_a_withdrawn_message_is_never_handled(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    async with open_actor_system(recorder_factory(log), cohort=cohort) as s:
        replies = s.ask_many_nowait([("a", 1), ("b", 2)])
        assert isinstance(replies[1], Reply) and replies[1].withdraw()
        assert await answers(replies[:1]) == [("a", 1)]
        await trio.sleep(1)
    assert cohort.receives == [[("a", [1])]]
    assert ("b", 2) not in log


async def test_cancelling_the_system_fails_the_cohort_callers(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    with trio.move_on_after(0.005):
        async with open_actor_system(recorder_factory(log), cohort=cohort) as s:
            replies = s.ask_many_nowait([("a", 1), ("b", 2)])
            await trio.sleep(1)
    for reply in replies:
        assert isinstance(reply, Reply) and reply.done
        with pytest.raises(ActorSystemClosed):
            reply.result()


async def test_asks_in_one_scheduler_pass_start_as_one_cohort(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    async with open_actor_system(recorder_factory(log), cohort=cohort) as s:
        replies = [s.ask_nowait(k, n) for n, k in enumerate("abc")]
        assert await answers(replies) == [("a", 0), ("b", 1), ("c", 2)]
        alone = s.ask_nowait("d", 3)  # nobody else starts with it: its own runner
        assert await alone.wait() == ("d", 3)
    assert cohort.activations == [["a", "b", "c"]]
    assert cohort.receives == [[("a", [0]), ("b", [1]), ("c", [2])]]


async def test_a_slow_batch_does_not_hold_the_others(autojump_clock):
    log: list[tuple[str, object]] = []
    cohort = RecordingCohort(log)
    cohort.slow = {0}
    async with open_actor_system(recorder_factory(log), cohort=cohort) as s:
        slow, quick = s.ask_many_nowait([("a", 1), ("b", 2)])
        assert isinstance(quick, Reply) and isinstance(slow, Reply)
        start = trio.current_time()
        assert await quick.wait() == ("b", 2)
        assert trio.current_time() - start < 1
        # "b" was released with its answer: its next message does not wait for "a".
        assert await s.ask_nowait("b", 3).wait() == ("b", 3)
        assert trio.current_time() - start < 1 and not slow.done
        assert await slow.wait() == ("a", 1)
        assert trio.current_time() - start >= 5


async def test_a_batch_the_cohort_never_answers_fails_alone(autojump_clock):
    log: list[tuple[str, object]] = []

    class Forgetful(RecordingCohort):
        async def receive(self, batches, answered) -> None:
            answered(1, await batches[1][0].receive(batches[1][1]))

    cohort = Forgetful(log)
    async with open_actor_system(recorder_factory(log), cohort=cohort) as s:
        got = await answers(s.ask_many_nowait([("a", 1), ("b", 2)]))
        assert isinstance(got[0], ActorFailed) and got[1] == ("b", 2)
        assert s.statistics().pending == 0 and s.statistics().running == 0
