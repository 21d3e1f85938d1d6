"""Failures below the API, as the API says them: the one translation of the actor system's
and storage's exceptions into error codes (``classify``). The edge, the gateway, the console
and the cluster's server all use it; the headers an answer carries follow from its code at
the edge (``PerkamoError.headers``), never from the failure.
"""

from __future__ import annotations

import logging

from actors import ActorFailed, ActorSystemClosed, MailboxFull, SystemFull
from perkamo.errors import Code, PerkamoError
from storage import CommitOutcomeUnknown, StorageUnavailable

log = logging.getLogger(__name__)


def classify(exc: BaseException, *, defect: Code = Code.INTERNAL_ERROR) -> PerkamoError:
    """``exc`` as a PerkamoError. ``defect``: the code of an unexpected exception — a 500
    at the edge, but ``outcome_unknown`` for a write whose actor failed (it may or may not
    have committed: retry-safe, never a 500 for committed work)."""
    if isinstance(exc, PerkamoError):
        return exc
    if isinstance(exc, MailboxFull):
        return PerkamoError(
            Code.OVERLOADED, "This profile is receiving more work than it can take; retry shortly."
        )
    if isinstance(exc, SystemFull):
        return PerkamoError(
            Code.OVERLOADED,
            "The server is holding all the work it can answer in time; retry shortly.",
        )
    if isinstance(exc, ActorSystemClosed):
        return PerkamoError(Code.SHUTTING_DOWN)
    if isinstance(exc, ActorFailed) and exc.__cause__ is not None:
        return classify(exc.__cause__, defect=defect)
    if isinstance(exc, CommitOutcomeUnknown):
        return PerkamoError(Code.OUTCOME_UNKNOWN)
    if isinstance(exc, StorageUnavailable):
        return PerkamoError(Code.STORAGE_UNAVAILABLE)
    log.error("unexpected error", exc_info=exc)
    return PerkamoError(defect)
