"""A member's internal listener: nothing answers before the handshake with the cluster
secret; then the messages of each requests frame are admitted to their profiles' mailboxes
as soon as the frame is read, in arrival order, and each is answered when its answer is
ready. No task per message: an admitted message tells its connection when it is answered
(a callback), one task sends every answer ready as one ``Responses`` frame, and one task
answers the messages still waiting at their deadlines."""

from __future__ import annotations

import heapq
import logging
import math
import secrets
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

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
from perkamo.profiles.commands import AnyCommand
from perkamo.profiles.subscribers import Subscribers

log = logging.getLogger(__name__)


class Admitted(Protocol):
    """A forwarded message admitted here, waiting for its answer."""

    def when_answered(self, callback: Callable[[object], None]) -> None:
        """Call ``callback(answer)`` once answered (an answer or its PerkamoError)."""

    def give_up(self) -> object:
        """The answer when its time is up before it was answered (withdrawn if it can
        be, so certainly not applied)."""


# Admits forwarded messages here, in order: per message what waits for its answer, or the
# PerkamoError that refused it.
Submit = Callable[[Sequence[tuple[ProfileKey, AnyCommand]]], Sequence[Admitted | PerkamoError]]


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
        watched: dict[int, tuple[ProfileKey, _RemoteWatcher]] = {}
        try:
            async with trio.open_nursery() as nursery:
                answers = _Answers(stream, nursery.cancel_scope)
                nursery.start_soon(answers.run)
                nursery.start_soon(answers.sweep)
                while True:
                    try:
                        frame = await reader.next()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
                        break
                    if frame is None:
                        break
                    if isinstance(frame, Requests):
                        self._admit(answers, frame.items)
                    elif isinstance(frame, Request):
                        self._admit(answers, [frame])
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

    def _admit(self, answers: _Answers, requests: list[Request]) -> None:
        self.stats.served += len(requests)
        try:  # admitted now, in order
            admitted = self._submit([((r.space_id, r.user_id), r.message) for r in requests])
        except Exception:  # a defect: these requests are refused, the link goes on
            log.warning("forwarded requests could not be admitted", exc_info=True)
            refused = PerkamoError(Code.INTERNAL_ERROR, "The forwarded request was not understood.")
            admitted = [refused] * len(requests)
        now = trio.current_time()
        for request, waiting in zip(requests, admitted, strict=True):
            if isinstance(waiting, PerkamoError):
                answers.add(request.id, waiting.with_traceback(None))
            else:
                answers.watch(request.id, waiting, now + request.seconds)


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
        if self._answers.behind >= self.BEHIND:
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
    task, everything ready in one frame and one write (the other side's link does the
    same); a second task answers, at its deadline, each message still waiting."""

    def __init__(self, stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        self._stream = stream
        self._scope = scope  # the connection's: cancelled once everything is answered
        self._buffer: list[Response] = []
        self._frames: list[bytes] = []  # encoded frames that answer no request
        self._ready = trio.Event()
        self._waiting: dict[int, Admitted] = {}  # admitted, not yet answered
        self._deadlines: list[tuple[float, int]] = []  # (deadline, request id), a heap
        self._timer: trio.CancelScope | None = None
        self._finishing = False

    def add(self, request_id: int, answer: object) -> None:
        response = protocol.encode_answer(answer)  # encoded once, here
        response.id = request_id
        self._buffer.append(response)
        self._ready.set()

    @property
    def behind(self) -> int:
        """Frames that answer no request, buffered and not yet sent."""
        return len(self._frames)

    def push(self, frame: bytes) -> None:
        """A frame that answers no request (a watched profile's change, a bucket's)."""
        self._frames.append(frame)
        self._ready.set()

    def watch(self, request_id: int, admitted: Admitted, deadline: float) -> None:
        self._waiting[request_id] = admitted
        heapq.heappush(self._deadlines, (deadline, request_id))
        if self._timer is not None and deadline < self._timer.deadline:
            self._timer.deadline = deadline
        admitted.when_answered(partial(self._answered, request_id))

    def _answered(self, request_id: int, answer: object) -> None:
        """(Called by whichever task settled the reply: it must not raise into it.)"""
        if self._waiting.pop(request_id, None) is None:  # given up on meanwhile
            return
        try:
            self.add(request_id, answer)
        except Exception:
            log.error("a forwarded answer could not be encoded", exc_info=True)
            self.add(request_id, PerkamoError(Code.OUTCOME_UNKNOWN))  # as a broken link

    def finish(self) -> None:
        """No more requests: end once every admitted one is answered."""
        self._finishing = True
        self._ready.set()

    async def run(self) -> None:
        while not (self._finishing and not self._waiting and not self._buffer):
            await self._ready.wait()
            self._ready = trio.Event()
            if not (self._buffer or self._frames):
                continue
            items, self._buffer = self._buffer, []
            frames, self._frames = self._frames, []
            if items:
                frames.append(protocol.encode_frame(Responses(items)))
            try:
                await self._stream.send_all(b"".join(frames))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break  # the forwarding member went away; it answers its client itself
        self._scope.cancel()

    async def sweep(self) -> None:
        """Answer the messages whose deadline passed before their answer came."""
        while True:
            first = self._deadlines[0][0] if self._deadlines else math.inf
            with trio.CancelScope(deadline=first) as self._timer:
                await trio.sleep_forever()
            self._timer = None
            now = trio.current_time()
            while self._deadlines and self._deadlines[0][0] <= now:
                _, request_id = heapq.heappop(self._deadlines)
                admitted = self._waiting.pop(request_id, None)
                if admitted is not None:
                    self.add(request_id, admitted.give_up())
