"""Storage failures, as the rest of the product needs to tell them apart."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of storage failures."""


class StorageUnavailable(StorageError):
    """PostgreSQL could not be reached or refused the work; nothing was committed."""


class CommitOutcomeUnknown(StorageError):
    """The connection failed while COMMIT was in flight: the work may or may not be durable."""
