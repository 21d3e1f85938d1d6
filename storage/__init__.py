"""PostgreSQL storage: connections, the embedded server, migrations, tables and the
group-commit writer. It knows SQL, not loyalty rules."""

from ._errors import CommitOutcomeUnknown, StorageError, StorageUnavailable, is_outage
from .database import Database, Timeouts, connect, open_database
from .embedded import EmbeddedPostgres
from .group_commit import (
    AuditRow,
    GroupCommitWriter,
    OutboxRow,
    SnapshotWrite,
    Status,
    Unit,
    Verdict,
    open_group_commit_writer,
)
from .log_rows import AdjustmentRow, EventRow, IdentifyRow, RedemptionRow, ReversalRow
from .notify import Listener

__all__ = [
    "AdjustmentRow",
    "AuditRow",
    "ReversalRow",
    "CommitOutcomeUnknown",
    "Database",
    "EmbeddedPostgres",
    "EventRow",
    "GroupCommitWriter",
    "IdentifyRow",
    "is_outage",
    "Listener",
    "OutboxRow",
    "RedemptionRow",
    "SnapshotWrite",
    "Status",
    "Timeouts",
    "StorageError",
    "StorageUnavailable",
    "Unit",
    "Verdict",
    "connect",
    "open_database",
    "open_group_commit_writer",
]
