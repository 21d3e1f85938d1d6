"""A one-shot result that one trio task waits for (or a callback is told of).

Cheaper than a ``trio.Event`` beside a value: resolving it reschedules the waiting task
directly (no parking lot), and it carries the value or the error itself. Every message on
the hot path waits on one or more of these (its reply, its profile's load, its commit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import trio

T = TypeVar("T")

_UNSET: object = object()


class Future(Generic[T]):
    __slots__ = ("_error", "_task", "_value", "_when_settled")

    def __init__(self) -> None:
        self._value: object = _UNSET
        self._error: BaseException | None = None
        self._task: trio.lowlevel.Task | None = None
        self._when_settled: Callable[[], None] | None = None

    @property
    def done(self) -> bool:
        return self._value is not _UNSET or self._error is not None

    def resolve(self, value: T) -> None:
        """Set the value (ignored if already settled) and wake the waiter."""
        if not self.done:
            self._value = value
            self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)
        callback, self._when_settled = self._when_settled, None
        if callback is not None:
            callback()

    def when_settled(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the future is settled (now, if it is): for a consumer
        of many futures that should not spend a task on each (it must not raise)."""
        if self.done:
            callback()
        else:
            self._when_settled = callback

    def result(self) -> T:
        """The value of a settled future, or its error raised (without waiting)."""
        if not self.done:
            raise RuntimeError("the future is not settled yet")
        error = self._error
        if error is not None:
            try:
                raise error
            finally:  # the traceback holds this frame: no cycle back through ``self``
                del error, self
        return self._value  # type: ignore[return-value]

    async def wait(self) -> T:
        """The value, or the error raised; one task may wait at a time. Cancellable."""
        if self.done:
            await trio.lowlevel.checkpoint()
        else:
            await self._settled()
        return self.result()

    async def _settled(self) -> None:
        """Park until the future is settled (it is not yet)."""
        if self._task is not None:
            raise RuntimeError("another task is already waiting for this future")
        self._task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


async def wait_all(futures: Iterable[Future[Any]]) -> None:
    """Wait until every future is settled (read each with ``result()``). Futures settled
    together cost one wake-up, not one checkpoint each; this always checkpoints once."""
    waited = False
    for future in futures:
        if not future.done:
            await future._settled()
            waited = True
    if not waited:
        await trio.lowlevel.checkpoint()
