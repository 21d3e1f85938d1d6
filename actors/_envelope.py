"""A message travelling to an actor, with the caller's reply slot."""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

M = TypeVar("M")
R = TypeVar("R")

_UNSET: object = object()


class Reply(Generic[R]):
    """A one-shot reply: resolved exactly once with a value or an error.

    Until the actor takes its message the caller may :meth:`withdraw` it (a caller that
    stops waiting): the message is then never handled, so the caller can say for certain
    that it was not applied.
    """

    __slots__ = ("_done", "_error", "_taken", "_value", "_withdrawn")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: object = _UNSET
        self._error: BaseException | None = None
        self._taken = False
        self._withdrawn = False

    def resolve(self, value: R) -> None:
        if not self._done.is_set():
            self._value = value
            self._done.set()

    def fail(self, error: BaseException) -> None:
        if not self._done.is_set():
            self._error = error
            self._done.set()

    def withdraw(self) -> bool:
        """Take the message back if the actor has not taken it yet; True if it was."""
        if self._taken:
            return False
        self._withdrawn = True
        return True

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

    @property
    def withdrawn(self) -> bool:
        return self.reply is not None and self.reply._withdrawn

    def take(self) -> None:
        if self.reply is not None:
            self.reply._taken = True
