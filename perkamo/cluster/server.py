"""A member's internal listener: nothing answers before the handshake with the cluster
secret; then each request's message is admitted to the profile's mailbox as soon as its
frame is read, in arrival order, and answered when its answer is ready (answers buffered
and sent by one task per connection)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

import msgspec
import trio

from perkamo.cluster import protocol
from perkamo.cluster.links import HANDSHAKE_SECONDS, LinkStatistics
from perkamo.cluster.protocol import (
    Challenge,
    Charge,
    Charged,
    Ended,
    FrameReader,
    Hello,
    Push,
    Request,
    Resnapshot,
    Subscribe,
    Unsubscribe,
    Welcome,
)
from perkamo.errors import Code, PerkamoError
from perkamo.profiles.actor import ProfileKey
from perkamo.profiles.commands import AnyCommand
from perkamo.profiles.subscribers import Subscribers

log = logging.getLogger(__name__)

# Admits a forwarded message here (raising PerkamoError when it cannot) and returns the
# coroutine function that waits, at most the given seconds, for its answer.
Submit = Callable[[ProfileKey, AnyCommand], Callable[[float], Awaitable[object]]]


class InternalServer:
    """Serves the cluster's requests to members that prove the secret (``connection`` is
    the handler for each accepted connection)."""

    def __init__(
        self,
        secret: str,
        member: str,
        submit: Submit,
        stats: LinkStatistics,
        subscribers: Subscribers | None = None,
        charge: Callable[[Charge], Charged] | None = None,
    ) -> None:
        self._secret = secret
        self._member = member
        self._submit = submit
        self.stats = stats
        self._subscribers = subscribers if subscribers is not None else Subscribers()
        self._charge = charge

    async def _handshake(self, stream: trio.SocketStream, reader: FrameReader) -> bool:
        nonce = secrets.token_hex(16)
        try:
            with trio.fail_after(HANDSHAKE_SECONDS):
                await protocol.send(stream, Challenge(nonce))
                hello = await reader.next()
            if isinstance(hello, Hello) and protocol.proof_matches(
                self._secret, nonce, hello.proof
            ):
                await protocol.send(stream, Welcome(self._member))
                return True
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass
        self.stats.refused_handshakes += 1
        return False  # no answer without the secret: the connection just closes

    async def connection(self, stream: trio.SocketStream) -> None:
        """One peer's connection. Whatever happens on it ends it alone: an exception (a
        defect, or input nobody foresaw from a peer that may not know the secret) closes
        this connection with one log line, never the listener or the process."""
        try:
            await self._serve(stream)
        except Exception as exc:
            self.stats.failed_connections += 1
            log.error("internal connection failed; closed it", exc_info=exc)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _serve(self, stream: trio.SocketStream) -> None:
        reader = FrameReader(stream)
        if not await self._handshake(stream, reader):
            return
        answers = _Answers(stream)
        watched: dict[int, tuple[ProfileKey, _RemoteWatcher]] = {}
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answers.run)
                while True:
                    try:
                        frame = await reader.next()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
                        break
                    if frame is None:
                        break
                    if isinstance(frame, Request):
                        self._admit(nursery, answers, frame)
                    elif isinstance(frame, Subscribe | Unsubscribe):
                        self._watch(frame, answers, watched)
                    elif isinstance(frame, Charge) and self._charge is not None:
                        answers.push(protocol.encode_frame(self._charge(frame)))
                # The peer closed: what it sent is still answered (or dropped unsent).
                answers.finish()
                nursery.cancel_scope.deadline = trio.current_time() + 30
        finally:
            for key, watcher in watched.values():
                self._subscribers.remove(key, watcher)

    def _watch(
        self,
        frame: Subscribe | Unsubscribe,
        answers: _Answers,
        watched: dict[int, tuple[ProfileKey, _RemoteWatcher]],
    ) -> None:
        """A live stream on the peer starts or stops watching a profile owned here."""
        if isinstance(frame, Unsubscribe):
            found = watched.pop(frame.id, None)
            if found is not None:
                self._subscribers.remove(*found)
            return
        key = (frame.space_id, frame.user_id)
        watcher = _RemoteWatcher(answers, frame.id)
        watched[frame.id] = (key, watcher)
        self._subscribers.add(key, watcher)

    def _admit(self, nursery: trio.Nursery, answers: _Answers, frame: Request) -> None:
        self.stats.served += 1
        try:
            wait = self._submit((frame.space_id, frame.user_id), frame.message)  # admitted now
        except PerkamoError as exc:
            answers.add(frame.id, exc.with_traceback(None), waited=False)
            return
        except Exception:  # a frame this member cannot decode: refused alone
            log.warning("a forwarded request was not understood", exc_info=True)
            refused = PerkamoError(Code.INTERNAL_ERROR, "The forwarded request was not understood.")
            answers.add(frame.id, refused, waited=False)
            return

        async def answer() -> None:
            answers.add(frame.id, await wait(frame.seconds))

        answers.pending += 1
        nursery.start_soon(answer)


class _RemoteWatcher:
    """A peer's live stream of a profile owned here: its changes are sent as frames on the
    peer's connection (bounded: past ``BEHIND`` unsent frames they are dropped, and the
    stream is told to resnapshot once the connection has caught up)."""

    BEHIND = 10_000

    __slots__ = ("_answers", "_id", "_lost")

    def __init__(self, answers: _Answers, subscription: int) -> None:
        self._answers = answers
        self._id = subscription
        self._lost = False

    def offer(self, version: int, change: bytes) -> None:
        if len(self._answers.buffer) >= self.BEHIND:
            self._lost = True
            return
        if self._lost:
            self._lost = False
            self._answers.push(protocol.encode_frame(Resnapshot(self._id)))
        self._answers.push(protocol.encode_frame(Push(self._id, version, msgspec.Raw(change))))

    def overflow(self) -> None:
        self._answers.push(protocol.encode_frame(Resnapshot(self._id)))

    def end(self) -> None:
        self._answers.push(protocol.encode_frame(Ended(self._id)))


class _Answers:
    """The answers on one internal connection: buffered as they are ready and sent by one
    task, everything ready in one write (the other side's link does the same)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer: list[bytes] = []
        self._ready = trio.Event()
        self.pending = 0  # admitted, not yet answered
        self._finishing = False

    def add(self, request_id: int, answer: object, *, waited: bool = True) -> None:
        response = protocol.encode_answer(answer)
        response.id = request_id
        self._buffer.append(protocol.encode_frame(response))
        self.pending -= waited
        self._ready.set()

    @property
    def buffer(self) -> list[bytes]:
        return self._buffer

    def push(self, frame: bytes) -> None:
        """A frame that answers no request (a watched profile's change)."""
        self._buffer.append(frame)
        self._ready.set()

    def finish(self) -> None:
        """No more requests: end once every admitted one is answered."""
        self._finishing = True
        self._ready.set()

    async def run(self) -> None:
        while not (self._finishing and self.pending == 0 and not self._buffer):
            await self._ready.wait()
            self._ready = trio.Event()
            chunks, self._buffer = self._buffer, []
            try:
                await self._stream.send_all(b"".join(chunks))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the forwarding member went away; it answers its client itself
