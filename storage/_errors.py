"""Storage failures, as the rest of the product needs to tell them apart."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of storage failures."""


class StorageUnavailable(StorageError):
    """PostgreSQL could not be reached or refused the work: nothing was committed — except
    for the subclass below, whose work may have been. Catching this catches both: storage
    trouble of any kind, for callers that only retry later."""


class CommitOutcomeUnknown(StorageUnavailable):
    """The connection failed, or the call was given up on, while COMMIT was in flight, or
    COMMIT returned with a warning (committed on the primary, maybe not on its synchronous
    standby): the work may or may not be durable. Tell it apart before StorageUnavailable."""


def is_outage(exc: BaseException) -> bool:
    """Storage trouble and nothing else: one StorageUnavailable, or several at once (a
    failover cuts every connection of a nursery) — what a background loop logs as a pause,
    without a traceback, and tries again."""
    if isinstance(exc, BaseExceptionGroup):
        return (
            exc.subgroup(lambda e: not isinstance(e, StorageUnavailable | BaseExceptionGroup))
            is None
        )
    return isinstance(exc, StorageUnavailable)
