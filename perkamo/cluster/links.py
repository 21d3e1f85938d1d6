"""One persistent, multiplexed link from this member to each peer it forwards to (the
peer's side is ``server.py``).

Forwarding is synchronous for the caller, like admitting a message to a local mailbox: the
request goes into the link's send buffer at once, and one writer task sends everything
buffered as one ``Requests`` frame in one write (a batch's items for this peer travel
together), so the messages a caller forwards in a row keep their order. Answers come back
many to a frame too (``Responses``)."""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from actors import Future, Reply
from perkamo.cluster import protocol
from perkamo.cluster.protocol import (
    Challenge,
    Charge,
    Charged,
    Ended,
    FrameReader,
    Hello,
    Push,
    Request,
    Requests,
    Resnapshot,
    Response,
    Responses,
    Subscribe,
    Unsubscribe,
    Welcome,
)
from perkamo.errors import Code, PerkamoError
from perkamo.profiles.actor import ProfileKey
from perkamo.profiles.commands import AnyCommand, on_the_wire
from perkamo.profiles.subscribers import Watcher

log = logging.getLogger(__name__)

HANDSHAKE_SECONDS = 5.0
RETRY_AFTER = 1.0  # a peer that could not be reached is not tried again for this long

LocalSubmit = Callable[[], Reply[object]]


@dataclass
class LinkStatistics:
    forwarded: int = 0
    forward_seconds: float = 0.0  # sum of the round trips of answered forwards
    answered: int = 0
    served: int = 0  # requests other members forwarded here
    refused_handshakes: int = 0
    failed_connections: int = 0  # internal connections ended by an unexpected error
    failed: int = 0  # forwards that lost their link before an answer
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


_SERVE_HERE = object()  # the link broke before the owner could have applied the message


def _lost() -> PerkamoError:
    return PerkamoError(
        Code.OUTCOME_UNKNOWN,
        "The member owning this profile went away while applying the request; it may or "
        "may not have been applied. Retry with the same transaction_id.",
    )


class ForwardedReply:
    """A forwarded message's answer, waited for like a local Reply. When the link breaks
    before the frame was sent (or the message only reads), the message is served here."""

    __slots__ = ("_future", "_local", "answer_type", "read", "sent", "sent_at", "withdrawn")

    def __init__(self, local: LocalSubmit, message: AnyCommand) -> None:
        self._future: Future[object] = Future()
        self._local = local
        self.answer_type = message.answer_type
        self.read = not message.writes
        self.sent = False
        self.withdrawn = False
        self.sent_at = trio.current_time()

    @property
    def done(self) -> bool:
        return False  # an answer is decoded when waited for

    def resolve(self, value: object) -> None:
        self._future.resolve(value)

    async def wait(self) -> object:
        answer = await self._future.wait()
        if answer is _SERVE_HERE:
            try:
                reply = self._local()
            except PerkamoError as exc:
                return exc.with_traceback(None)
            return await reply.wait()
        if isinstance(answer, protocol.Response):
            return protocol.decode_answer(answer, self.answer_type)
        return answer

    def withdraw(self) -> bool:
        """Take the message back if its frame is still in the send buffer."""
        if self.sent:
            return False
        self.withdrawn = True
        return True


class PeerLink:
    """One member's link to another: connected in the background on first use, reconnected
    after a failure; until it is connected, the caller serves the request itself."""

    def __init__(
        self,
        nursery: trio.Nursery,
        member: str,
        peer: str,
        address: str,
        secret: str,
        stats: LinkStatistics,
    ) -> None:
        self.member, self.peer, self.address = member, peer, address
        self._nursery = nursery
        self._secret = secret
        self._stats = stats
        self._stream: trio.SocketStream | None = None
        self._pending: dict[int, ForwardedReply] = {}
        self._watchers: dict[int, Watcher] = {}  # live streams' subscriptions at the peer
        self._charges: dict[int, Future[Charged | None]] = {}  # browser buckets asked
        self._outbox: deque[Request | bytes] = deque()  # bytes: an encoded frame, always sent
        self._ready = trio.Event()
        self._ids = itertools.count(1)
        self._connecting = False
        self._down_until = -1.0
        self.closed = False

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def submit(
        self, key: ProfileKey, message: AnyCommand, seconds: float, local: LocalSubmit
    ) -> ForwardedReply | None:
        """Queue the message for its owner; None when the link is not up (serve it here;
        the link connects in the background)."""
        if self._stream is None:
            self._connect_soon()
            return None
        request_id = next(self._ids)
        reply = ForwardedReply(local, message)
        self._pending[request_id] = reply
        self._outbox.append(Request(request_id, key[0], key[1], on_the_wire(message), seconds))
        self._ready.set()
        self._stats.forwarded += 1
        return reply

    def subscribe(self, key: ProfileKey, watcher: Watcher) -> int | None:
        """Watch a profile the peer owns: its committed changes come to ``watcher``;
        None when the link is not up (watch here; the link connects meanwhile)."""
        if self._stream is None:
            self._connect_soon()
            return None
        subscription = next(self._ids)
        self._watchers[subscription] = watcher
        self._send(protocol.encode_frame(Subscribe(subscription, key[0], key[1])))
        return subscription

    def unsubscribe(self, subscription: int) -> None:
        if self._watchers.pop(subscription, None) is not None and self._stream is not None:
            self._send(protocol.encode_frame(Unsubscribe(subscription)))

    def charge(self, bucket: str, per_second: float, burst: int) -> Future[Charged | None] | None:
        """Ask the peer (the profile's owner) for a token of a customer's browser bucket;
        None when the link is not up (the answer is None if the link breaks first)."""
        if self._stream is None:
            self._connect_soon()
            return None
        asked = next(self._ids)
        answer: Future[Charged | None] = Future()
        self._charges[asked] = answer
        self._send(protocol.encode_frame(Charge(asked, bucket, per_second, burst)))
        return answer

    def _send(self, frame: bytes) -> None:
        self._outbox.append(frame)
        self._ready.set()

    def _connect_soon(self) -> None:
        if not (self._connecting or self.closed or trio.current_time() < self._down_until):
            self._connecting = True
            self._nursery.start_soon(self._connect)

    async def _connect(self) -> None:
        host, _, port = self.address.rpartition(":")
        try:
            with trio.fail_after(HANDSHAKE_SECONDS):
                stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
                reader = FrameReader(stream)
                challenge = await reader.next()
                if not isinstance(challenge, Challenge):
                    raise ValueError("no challenge")
                proof = protocol.proof(self._secret, challenge.nonce)
                await protocol.send(stream, Hello(self.member, proof))
                if not isinstance(await reader.next(), Welcome):
                    raise ValueError("refused")
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, ValueError) as exc:
            log.info("cannot reach member %s at %s: %s", self.peer, self.address, exc)
            self._down_until = trio.current_time() + RETRY_AFTER
            return
        finally:
            self._connecting = False
        if self.closed:
            stream.socket.close()
            return
        self._stream = stream
        self._nursery.start_soon(self._read, stream, reader)
        self._nursery.start_soon(self._write, stream)

    async def _write(self, stream: trio.SocketStream) -> None:
        try:
            while self._stream is stream:
                await self._ready.wait()
                self._ready = trio.Event()
                items: list[Request] = []
                frames: list[bytes] = []
                while self._outbox:
                    request = self._outbox.popleft()
                    if isinstance(request, bytes):  # a subscription's or a bucket's frame
                        if items:  # what was queued before it goes first
                            frames.append(protocol.encode_frame(Requests(items)))
                            items = []
                        frames.append(request)
                        continue
                    reply = self._pending.get(request.id)
                    if reply is None or reply.withdrawn:
                        self._pending.pop(request.id, None)
                        continue
                    reply.sent = True
                    items.append(request)
                if items:
                    frames.append(protocol.encode_frame(Requests(items)))
                if frames:
                    await stream.send_all(b"".join(frames))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._broken(stream)
        except Exception:
            log.error("the link to member %s failed; closed it", self.peer, exc_info=True)
            self._broken(stream)

    async def _read(self, stream: trio.SocketStream, reader: FrameReader) -> None:
        try:
            while True:
                frame = await reader.next()
                if frame is None:
                    break
                if isinstance(frame, Responses):
                    self._answered(frame.items)
                elif isinstance(frame, Response):
                    self._answered([frame])
                elif isinstance(frame, Push | Resnapshot | Ended):
                    self._watched(frame)
                elif isinstance(frame, Charged) and (asked := self._charges.pop(frame.id, None)):
                    asked.resolve(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass
        except Exception:  # a defect or a peer speaking nonsense: this link alone ends
            log.error("the link to member %s failed; closed it", self.peer, exc_info=True)
        finally:
            self._broken(stream)

    def _watched(self, frame: Push | Resnapshot | Ended) -> None:
        watcher = self._watchers.get(frame.id)
        if watcher is None:
            return
        if isinstance(frame, Push):
            watcher.offer(frame.version, bytes(frame.change))
        elif isinstance(frame, Resnapshot):
            watcher.overflow()
        else:
            del self._watchers[frame.id]
            watcher.end()

    def _answered(self, responses: list[Response]) -> None:
        now = trio.current_time()
        stats = self._stats
        for response in responses:
            reply = self._pending.pop(response.id, None)
            if reply is not None:
                elapsed = now - reply.sent_at
                stats.answered += 1
                stats.forward_seconds += elapsed
                stats.latencies.append(elapsed)
                reply.resolve(response)  # decoded by its waiter, as its command's answer

    def _broken(self, stream: trio.SocketStream) -> None:
        if self._stream is not stream:
            return
        self._stream = None
        stream.socket.close()
        watchers, self._watchers = self._watchers, {}
        for watcher in watchers.values():  # subscribe again (where the profile is now)
            watcher.end()
        charges, self._charges = self._charges, {}
        for asked in charges.values():
            asked.resolve(None)
        self._ready.set()  # the writer sees the link gone and ends
        pending, self._pending = self._pending, {}
        self._outbox.clear()
        for reply in pending.values():
            if reply.sent and not reply.read:
                self._stats.failed += 1
                reply.resolve(_lost())
            else:
                reply.resolve(_SERVE_HERE)

    def close(self) -> None:
        self.closed = True
        if self._stream is not None:
            self._broken(self._stream)
