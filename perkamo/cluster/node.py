"""This member's part in the cluster: its internal listener, its links to the other members,
and where each profile's messages go (here, or to the member owning the profile's shard)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from actors import Future
from perkamo.cluster.links import ForwardedReply, LinkStatistics, LocalSubmit, PeerLink
from perkamo.cluster.membership import Membership
from perkamo.cluster.protocol import Charge, Charged
from perkamo.cluster.server import InternalServer, Submit
from perkamo.cluster.shards import shard_of
from perkamo.profiles.actor import ProfileKey
from perkamo.profiles.commands import AnyCommand
from perkamo.profiles.subscribers import Subscribers, Watcher

log = logging.getLogger(__name__)

ANSWER_MARGIN = 0.1  # seconds: the owner answers this much before the caller's deadline


@dataclass(frozen=True, slots=True)
class ClusterStatistics:
    member: str
    members: int
    shards: int
    links: LinkStatistics
    acquired: int
    released: int
    hand_over_seconds: float


class Cluster:
    def __init__(
        self,
        membership: Membership,
        secret: str,
        nursery: trio.Nursery,
        listeners: list[trio.SocketListener],
    ) -> None:
        self.membership = membership
        self._secret = secret
        self._nursery = nursery
        self._listeners = listeners
        self._links: dict[str, PeerLink] = {}
        self.stats = LinkStatistics()

    @property
    def peers(self) -> int:
        return self.membership.peers

    def serve(
        self,
        submit: Submit,
        subscribers: Subscribers | None = None,
        charge: Callable[[Charge], Charged] | None = None,
    ) -> None:
        """Start answering other members' requests (``submit`` admits one here), their
        live streams' subscriptions (to ``subscribers``) and their browser buckets'
        charges (``charge``)."""
        server = InternalServer(
            self._secret, self.membership.id, submit, self.stats, subscribers, charge
        )
        self._nursery.start_soon(trio.serve_listeners, server.connection, self._listeners)

    def forward(
        self, key: ProfileKey, message: AnyCommand, seconds: float, local: LocalSubmit
    ) -> ForwardedReply | None:
        """Send the message to its shard's owner when that is another member; None: serve
        it here (this member owns the shard, no member does, or the link is not up)."""
        link = self._link_to_owner(key)
        if link is None:
            return None
        return link.submit(key, message, max(seconds - ANSWER_MARGIN, 0.0), local)

    def owner_of(self, key: ProfileKey) -> str | None:
        """The other member owning the profile's shard (None: this one, or nobody)."""
        owner = self.membership.owner(shard_of(*key))
        return None if owner is None or not owner.address else owner.id

    def subscribe(self, key: ProfileKey, watcher: Watcher) -> tuple[str, int] | None:
        """Watch a profile another member owns, over the link to it: (the owner, the
        subscription); None: watch it here (it is owned here or by nobody, or the link
        is not up yet)."""
        link = self._link_to_owner(key)
        if link is None:
            return None
        subscription = link.subscribe(key, watcher)
        return None if subscription is None else (link.peer, subscription)

    def charge(
        self, key: ProfileKey, bucket: str, per_second: float, burst: int
    ) -> Future[Charged | None] | None:
        """A token of a customer's browser bucket from the member owning the profile;
        None: take it here (owned here or by nobody, or the link is not up)."""
        link = self._link_to_owner(key)
        return None if link is None else link.charge(bucket, per_second, burst)

    def unsubscribe(self, owner: str, subscription: int) -> None:
        link = self._links.get(owner)
        if link is not None:
            link.unsubscribe(subscription)

    def _link_to_owner(self, key: ProfileKey) -> PeerLink | None:
        owner = self.membership.owner(shard_of(*key))
        if owner is None or not owner.address:
            return None
        link = self._links.get(owner.id)
        if link is None or link.closed:
            self._prune()
            link = PeerLink(
                self._nursery, self.membership.id, owner.id, owner.address, self._secret,
                self.stats,
            )  # fmt: skip
            self._links[owner.id] = link
        return link

    def _prune(self) -> None:
        """Close the links to members that are gone."""
        for member in [m for m in self._links if m not in self.membership.members]:
            self._links.pop(member).close()

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()

    def statistics(self) -> ClusterStatistics:
        m = self.membership
        return ClusterStatistics(
            m.id,
            len(m.members),
            len(m.held),
            self.stats,
            m.stats.acquired,
            m.stats.released,
            m.stats.hand_over_seconds,
        )


async def open_listeners(address: str) -> tuple[list[trio.SocketListener], str]:
    """Listen on the internal address (HOST:PORT; port 0 picks one); returns the listeners
    and the address to publish."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    listeners = await trio.open_tcp_listeners(int(port), host=host)
    bound = listeners[0].socket.getsockname()[1]
    return listeners, f"{host}:{bound}"
