"""Idempotency (docs/api.md (events and profiles)): a transaction id applies once per Space and
namespace, forever.

The unique indexes of the log tables are the final guard: a write whose id is taken is
refused at commit and then judged against the stored original by its command — the same
payload is a duplicate (the original answer, ``duplicate: true``), anything else a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from perkamo.errors import Code, PerkamoError
from perkamo.profiles.commands import TransactionKey, Write
from storage import Database
from storage.history import StoredWrite, find_originals


async def originals(
    db: Database, space_id: int, keys: Iterable[TransactionKey], user_id: str = ""
) -> dict[TransactionKey, StoredWrite]:
    """The stored writes of the given keys, one query per namespace asked for (``user_id``:
    the profile asking, for the namespaces scoped to a customer: browser events)."""
    wanted: dict[str, list[str]] = {}
    for namespace, tx in keys:
        wanted.setdefault(namespace, []).append(tx)
    found: dict[TransactionKey, StoredWrite] = {}
    for namespace, ids in sorted(wanted.items()):
        for row in await db.run(find_originals, space_id, namespace, sorted(set(ids)), user_id):
            found[(namespace, row.transaction_id)] = row
    return found


async def judge_taken(
    db: Database,
    space_id: int,
    user_id: str,
    commands: Sequence[Write],
    taken: frozenset[TransactionKey],
    *,
    refused_at_commit: bool = False,
) -> dict[TransactionKey, object]:
    """Verdicts (an answer or a PerkamoError) for the commands whose key is among ``taken``
    and stored. A key that is not stored gets no verdict (apply it) — unless the commit just
    refused it, which makes its fate uncertain (503, retry)."""
    stored = await originals(db, space_id, taken, user_id)
    verdicts: dict[TransactionKey, object] = {}
    for command in commands:
        key = command.key()
        if key is None or key not in taken:
            continue
        original = stored.get(key)
        if original is None:
            if refused_at_commit:
                verdicts[key] = PerkamoError(
                    Code.STORAGE_UNAVAILABLE, "The write could not be recorded; retry."
                )
            continue
        verdicts[key] = command.judge(user_id, original)
    return verdicts
