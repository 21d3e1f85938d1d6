"""Errors raised by the actor runtime."""

from __future__ import annotations


class ActorError(Exception):
    """Base class of every error the runtime raises."""


class MailboxFull(ActorError):
    """``send_nowait`` / ``ask_nowait`` found the actor's bounded mailbox full."""

    def __init__(self, key: object) -> None:
        super().__init__(f"mailbox of actor {key!r} is full")
        self.key = key


class SystemFull(ActorError):
    """The system already holds ``max_pending`` messages (admitted, not yet answered)."""


class ActorSystemClosed(ActorError):
    """The system is draining or closed; it admits no new messages."""


class ActorFailed(ActorError):
    """The actor's handler (or its activation) raised; the original is ``__cause__``.

    Only the callers of the failing batch see this. The actor instance is discarded and
    re-activated on its next message.
    """

    def __init__(self, key: object, cause: BaseException) -> None:
        super().__init__(f"actor {key!r} failed: {type(cause).__name__}")
        self.key = key
        self.__cause__ = cause
