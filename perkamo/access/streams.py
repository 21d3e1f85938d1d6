"""The bounds of live streams (docs/api.md "The browser half"): at most ``max_streams`` open in this
process (beyond: 503 ``overloaded``), at most 5 per (browser key, customer) — a sixth closes the
oldest, which is told ``evicted`` first — and one per token (``jti``): a stream URL replayed while
its stream is open is refused. A shutdown, or a change of keys (a revocation), reaches every open
stream at once through its :class:`OpenStream`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from perkamo.errors import Code, PerkamoError

PER_CUSTOMER = 5


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    open: int
    opened: int
    evicted: int


class OpenStream:
    """One open stream's place in the registry. ``wake`` is set by the stream to what
    wakes it; ``reason`` says why it must act: ``evicted``, ``closing`` (a shutdown) or
    ``recheck`` (keys changed: is its token still backed by live keys?)."""

    __slots__ = ("customer", "jti", "reason", "wake")

    def __init__(self, jti: str, customer: tuple[str, str]) -> None:
        self.jti = jti
        self.customer = customer
        self.reason: str | None = None
        self.wake: Callable[[], None] = lambda: None

    def tell(self, reason: str) -> None:
        if self.reason not in ("evicted", "closing"):  # the final word stays
            self.reason = reason
        self.wake()


class StreamRegistry:
    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._by_jti: dict[str, OpenStream] = {}
        self._by_customer: dict[tuple[str, str], OrderedDict[str, OpenStream]] = {}
        self.opened = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._by_jti)

    def open(self, jti: str, browser_key: str, user_id: str) -> OpenStream:
        """Admit a stream, or raise 503 ``overloaded`` (the process holds all it may) or
        401 ``invalid_token`` (this token's stream is open already)."""
        if jti in self._by_jti:
            raise PerkamoError(
                Code.INVALID_TOKEN, "This stream token is in use; open a stream with a fresh one."
            )
        if len(self._by_jti) >= self.max_streams:
            raise PerkamoError(
                Code.OVERLOADED, "This server holds all the live streams it can; retry shortly."
            )
        customer = (browser_key, user_id)
        streams = self._by_customer.setdefault(customer, OrderedDict())
        while len(streams) >= PER_CUSTOMER:
            _, oldest = streams.popitem(last=False)
            del self._by_jti[oldest.jti]
            self.evicted += 1
            oldest.tell("evicted")
        stream = OpenStream(jti, customer)
        streams[jti] = stream
        self._by_jti[jti] = stream
        self.opened += 1
        return stream

    def close(self, stream: OpenStream) -> None:
        if self._by_jti.get(stream.jti) is stream:
            del self._by_jti[stream.jti]
        streams = self._by_customer.get(stream.customer)
        if streams is not None and streams.get(stream.jti) is stream:
            del streams[stream.jti]
            if not streams:
                del self._by_customer[stream.customer]

    def statistics(self) -> StreamStatistics:
        return StreamStatistics(len(self._by_jti), self.opened, self.evicted)

    def tell_all(self, reason: str) -> None:
        """``closing`` (a shutdown: every stream ends now) or ``recheck``."""
        for stream in list(self._by_jti.values()):
            stream.tell(reason)
