"""Calls into worker threads that their trio caller gives up on at a deadline.

psycopg's sync API runs in worker threads, and a thread cannot be cancelled: a statement
sent to a host that vanished silently (a failover, a network partition) blocks its thread
until TCP gives up. So the caller does not wait for it: at its deadline it abandons the
thread (``abandon_on_cancel``) and answers by itself, and the thread, when it finally
returns, discards its connection instead of reusing it. A :class:`Ticket` shared by the two
sides settles the one race that matters: whether a COMMIT may have been sent. The thread asks
before committing; once the caller has given up, it never commits (docs/architecture.md
"PostgreSQL failover": a call past its deadline is abandoned, its connection discarded).

The abandoned statement itself is cancelled (a cancel request, from a thread of its own):
some waits never end by themselves — a COMMIT waiting for a synchronous standby that is gone
is not ended by ``statement_timeout`` (PostgreSQL disables it before committing) — and a
thread that never returns would hold its connection, its locks and a slot for ever.

A request's storage calls share the request's deadline (``deadline_at``), so that however
many of them a request makes, it is answered within the 5 s bound (docs/api.md "Timeouts").
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, cast

import psycopg
import trio
import trio.testing

from ._errors import CommitOutcomeUnknown, StorageUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

CANCEL_SECONDS = 5.0  # how long the cancel request of an abandoned call may try

_deadline: ContextVar[float | None] = ContextVar("perkamo_storage_deadline", default=None)


def current_deadline() -> float | None:
    """The deadline (trio time) the current task's storage calls must meet, if any."""
    return _deadline.get()


@contextmanager
def deadline_at(when: float) -> Iterator[None]:
    """Storage calls made in this context (this task) give up at ``when`` (trio time)."""
    token = _deadline.set(when)
    try:
        yield
    finally:
        _deadline.reset(token)


def deadline_within(seconds: float) -> float:
    """``seconds`` from now, or the current task's deadline when that comes first."""
    bound = trio.current_time() + seconds
    given = _deadline.get()
    return bound if given is None else min(bound, given)


class Ticket:
    """What a call's worker thread and its trio caller share."""

    __slots__ = ("_abandoned", "_committing", "_conn", "_discard", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._committing = False
        self._discard = False
        self._conn: psycopg.Connection[Any] | None = None

    # -- in the worker thread ------------------------------------------------------------------

    def using(self, conn: psycopg.Connection[Any] | None) -> None:
        """The connection the call works on now (None: none)."""
        with self._lock:
            self._conn = conn
            abandoned = self._abandoned
        if abandoned and conn is not None:
            _cancel_soon(conn)

    def may_commit(self) -> bool:
        """Called just before COMMIT: False when the caller gave up (roll back instead)."""
        with self._lock:
            if self._abandoned:
                return False
            self._committing = True
            return True

    def discard(self) -> None:
        """The connection must not be used again (its state is unknown)."""
        self._discard = True

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def keeps_connection(self) -> bool:
        """Called when the thread is done: whether its connection may be used again."""
        with self._lock:
            return not (self._abandoned or self._discard)

    # -- in trio -------------------------------------------------------------------------------

    def abandon(self) -> bool:
        """The caller gives up; what the connection runs is cancelled. Returns whether a
        COMMIT may have been sent."""
        with self._lock:
            first = not self._abandoned
            self._abandoned = True
            conn = self._conn
        if first and conn is not None:
            _cancel_soon(conn)
        return self._committing


async def call_in_thread(
    fn: Callable[[Ticket], T],
    *,
    deadline: float,
    limiter: trio.CapacityLimiter | None = None,
    checkout: float | None = None,
    what: str = "the storage call",
) -> T:
    """``fn(ticket)`` in a worker thread, abandoned at ``deadline``: then StorageUnavailable,
    or CommitOutcomeUnknown when it had begun to commit. Cancelled from outside, the thread
    is abandoned the same way. With a ``limiter`` (one slot per connection), a slot must be
    free within ``checkout`` seconds (StorageUnavailable otherwise); an abandoned thread
    keeps its slot until it ends."""
    ticket = Ticket()
    if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        # Tests in virtual time: trio's clock is not the thread's, and an autojumping one
        # would pass any deadline while the thread works. The call is waited for.
        deadline = checkout_deadline = math.inf
    else:
        checkout_deadline = deadline if checkout is None else trio.current_time() + checkout
    slot = None
    if limiter is not None:
        with trio.move_on_at(min(deadline, checkout_deadline)):
            await limiter.acquire_on_behalf_of(ticket)
            slot = _Slot(limiter, ticket)
        if slot is None:
            raise StorageUnavailable(f"no connection was free for {what}")
    finished = False
    try:
        with trio.fail_at(deadline):
            # (trio takes any object with a limiter's two methods; its annotation is narrower)
            held = cast("trio.CapacityLimiter | None", slot)
            result = await trio.to_thread.run_sync(fn, ticket, limiter=held, abandon_on_cancel=True)
            finished = True
            return result
    except trio.TooSlowError:
        if ticket.abandon():
            raise CommitOutcomeUnknown(f"{what} passed its deadline while committing") from None
        raise StorageUnavailable(f"{what} passed its deadline") from None
    finally:
        if not finished:
            ticket.abandon()
        if slot is not None and not slot.handed:
            slot.release_on_behalf_of(ticket)  # the thread never started


class _Slot:
    """A limiter slot taken before the thread call (within the checkout bound), handed to
    trio's thread machinery, which gives it back when the thread ends — an abandoned one
    included."""

    def __init__(self, limiter: trio.CapacityLimiter, owner: Ticket) -> None:
        self._limiter = limiter
        self._owner = owner
        self.handed = False

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        self.handed = True

    def release_on_behalf_of(self, borrower: object) -> None:
        self._limiter.release_on_behalf_of(self._owner)


def _cancel_soon(conn: psycopg.Connection[Any]) -> None:
    """Ask the server to cancel what ``conn`` runs, from a thread of its own (the server may
    be unreachable: the request then times out there, not here)."""

    def cancel() -> None:
        try:
            conn.cancel_safe(timeout=CANCEL_SECONDS)
        except psycopg.Error:
            pass  # closed meanwhile, or the server is gone: nothing left to cancel

    threading.Thread(target=cancel, name="perkamo-cancel", daemon=True).start()


def commit_acknowledged(conn: psycopg.Connection[Any]) -> None:
    """COMMIT, accepted only when PostgreSQL acknowledged it cleanly.

    A COMMIT whose wait for the synchronous standby was cancelled (a statement timeout, a
    cancel, a shutdown) returns with the warning "canceling wait for synchronous replication
    … committed locally, but might not have been replicated": the write is on the primary
    only, and lost if the primary is. That is not an acknowledgement: CommitOutcomeUnknown
    (the request answers 503 outcome_unknown; a retry with the same transaction id is safe).
    Any warning during COMMIT counts — its text may be translated (lc_messages), its
    severity is not. A COMMIT that fails is CommitOutcomeUnknown as well."""
    warnings: list[str] = []

    def notice(diagnostic: psycopg.errors.Diagnostic) -> None:
        # (read now: the diagnostic is only valid during the call)
        if diagnostic.severity_nonlocalized == "WARNING":
            warnings.append(f"{diagnostic.message_primary} ({diagnostic.message_detail})")

    conn.add_notice_handler(notice)
    try:
        conn.commit()
    except psycopg.Error as exc:
        raise CommitOutcomeUnknown(f"COMMIT failed: {type(exc).__name__}") from exc
    finally:
        conn.remove_notice_handler(notice)
    if warnings:
        log.error("COMMIT not acknowledged: %s", warnings[0])
        raise CommitOutcomeUnknown(f"COMMIT answered with a warning: {warnings[0]}")
