"""A message travelling to an actor, with the caller's reply slot."""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

M = TypeVar("M")
R = TypeVar("R")

_UNSET: object = object()


class Reply(Generic[R]):
    """A one-shot reply: resolved exactly once with a value or an error."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: object = _UNSET
        self._error: BaseException | None = None

    def resolve(self, value: R) -> None:
        if not self._done.is_set():
            self._value = value
            self._done.set()

    def fail(self, error: BaseException) -> None:
        if not self._done.is_set():
            self._error = error
            self._done.set()

    async def wait(self) -> R:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Envelope(Generic[M, R]):
    __slots__ = ("message", "reply")

    def __init__(self, message: M, reply: Reply[R] | None) -> None:
        self.message = message
        self.reply = reply
