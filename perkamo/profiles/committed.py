"""A profile as last committed, read without queueing behind its writes (docs/api.md "The browser
half": a browser's read never takes a mailbox slot from the shop's own writes).

From memory when this process may answer from memory (it is the only member: the history
lease) and the profile's actor is resident with its recent lists kept; otherwise from
storage, which holds every committed write (a write is answered after its commit)."""

from __future__ import annotations

from perkamo.profiles.actor import ProfileActor, ProfileKey, ProfileServices
from perkamo.profiles.commands.read import ProfileView
from perkamo.profiles.history import RECENT, Kept
from perkamo.profiles.snapshot import Snapshot
from storage.profiles import read_profile


async def committed_view(
    services: ProfileServices, key: ProfileKey, resident: ProfileActor | None
) -> ProfileView | None:
    history = services.history
    if resident is not None and not resident.reloading and resident.snapshot.exists:
        snap = resident.snapshot
        kept = history.read(key, snap.version)
        if kept is not None:
            return _view(snap, kept)
    epoch = history.epoch
    row, events, redemptions, adjustments = await services.db.run(read_profile, *key, RECENT, 0)
    if row is None:
        return None
    snap = Snapshot.from_row(row)
    return _view(snap, history.keep(key, snap.version, events, redemptions, adjustments, epoch))


def _view(snap: Snapshot, kept: Kept) -> ProfileView:
    assert snap.created_at is not None and snap.updated_at is not None
    return ProfileView(
        snap.traits(), snap.state(), snap.created_at, snap.updated_at, *kept, snap.version
    )
