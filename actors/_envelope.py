"""A message travelling to an actor, with the caller's reply slot."""

from __future__ import annotations

from typing import Generic, TypeVar

from ._future import Future

M = TypeVar("M")
R = TypeVar("R")


class Reply(Future[R]):
    """A one-shot reply: resolved exactly once with a value or an error.

    Until the actor takes its message the caller may :meth:`withdraw` it (a caller that
    stops waiting): the message is then never handled, so the caller can say for certain
    that it was not applied.
    """

    __slots__ = ("_taken", "_withdrawn")

    def __init__(self) -> None:
        super().__init__()
        self._taken = False
        self._withdrawn = False

    def withdraw(self) -> bool:
        """Take the message back if the actor has not taken it yet; True if it was."""
        if self._taken:
            return False
        self._withdrawn = True
        return True


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
