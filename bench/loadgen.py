"""The load generator behind ``python -m bench load`` and ``python -m bench run``.

Worker processes (one per client core by default) each keep a set of HTTP/1.1 keep-alive
connections busy from a plain ``selectors`` loop: requests are pre-encoded bytes, responses
are parsed just enough to find their end and status. Two modes:

- closed loop (``rate=None``): each connection sends its next request when the previous
  answer arrives — the maximum the server sustains with that many connections;
- open loop (``rate=R``): requests are due at Poisson arrival times (R per second over all
  workers) whatever the server does, and a request's latency counts from when it was due,
  so a stalled server shows up as latency instead of silently lowering the offered rate
  (no coordinated omission).

Every half second each worker sends its counts and a latency histogram (about 2 % wide
buckets) to the parent, which merges them into the live progress line and the summary.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import re
import selectors
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

# A request maker: (random source, sequence number) -> (request bytes, items it carries).
Maker = Callable[[random.Random, int], tuple[bytes, int]]

_BUCKETS_PER_E = 50  # histogram resolution: e^(1/50) ≈ 2 % per bucket
_REPORT_EVERY = 0.5
_HEADER_END = b"\r\n\r\n"
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.I)
_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.I)
_ERROR_CODE = re.compile(rb'"error"\s*:\s*"([a-z_]{1,40})"')


def bucket(seconds: float) -> int:
    return max(0, int(math.log(max(seconds, 1e-6) * 1e6) * _BUCKETS_PER_E))


def bucket_seconds(index: int) -> float:
    return math.exp((index + 1) / _BUCKETS_PER_E) / 1e6  # the bucket's upper edge


@dataclass
class Tally:
    """What a run (or a half-second of it) observed."""

    requests: int = 0
    items: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "400 invalid_json", …
    errors: Counter[str] = field(default_factory=Counter)  # connect, reset, timeout
    histogram: Counter[int] = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # the generator's own CPU

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.items += other.items
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.histogram.update(other.histogram)
        self.cpu_seconds += other.cpu_seconds

    def percentile(self, q: float) -> float | None:
        total = sum(self.histogram.values())
        if not total:
            return None
        rank, seen = q * total, 0
        for index in sorted(self.histogram):
            seen += self.histogram[index]
            if seen >= rank:
                return bucket_seconds(index)
        return bucket_seconds(max(self.histogram))

    @property
    def failed(self) -> int:
        """Server errors (5xx), connection failures and timeouts."""
        server = sum(n for s, n in self.statuses.items() if s.startswith("5"))
        return server + sum(self.errors.values())

    @property
    def refused(self) -> int:
        """Answers in the 4xx range (the server refused the request as sent)."""
        return sum(n for s, n in self.statuses.items() if s.startswith("4"))


@dataclass(frozen=True)
class Plan:
    host: str
    port: int
    make: Maker
    seconds: float
    connections: int  # over all workers
    rate: float | None  # requests per second over all workers; None: closed loop
    workers: int = 2
    timeout: float = 10.0


class _Conn:
    __slots__ = ("buf", "due", "items", "sock", "started")

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.due = 0.0  # when its request was due (latency counts from here)
        self.started = 0.0  # when it was sent (for the timeout)
        self.items = 0


def _response_end(buf: bytearray) -> tuple[int, bool] | None:
    """(length of the complete response, connection: close) if ``buf`` holds one."""
    head = buf.find(_HEADER_END)
    if head < 0:
        return None
    header = bytes(buf[: head + 2])
    closing = _CLOSE.search(header) is not None
    match = _LENGTH.search(header)
    if match is not None:
        end = head + 4 + int(match.group(1))
        return (end, closing) if len(buf) >= end else None
    if _CHUNKED.search(header):
        at = head + 4
        while True:
            line_end = buf.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buf[at:line_end]).split(b";")[0], 16)
            at = line_end + 2 + size + 2
            if len(buf) < at:
                return None
            if size == 0:
                return at, closing
    return head + 4, closing  # no body (e.g. 204)


class _Worker:
    def __init__(self, plan: Plan, index: int, report: Connection) -> None:
        self.plan = plan
        self.report = report
        self.rng = random.Random(os.getpid() * 7919 + index)
        self.sequence = index * 1_000_000_000
        self.selector = selectors.DefaultSelector()
        self.tally = Tally()
        share = plan.connections // plan.workers + (index < plan.connections % plan.workers)
        self.conns = [_Conn() for _ in range(max(1, share))]
        self.idle: deque[_Conn] = deque()
        self.backlog: deque[float] = deque()  # due times waiting for a free connection
        self.broken: list[_Conn] = []  # could not connect: retried at each report
        self.rate = None if plan.rate is None else plan.rate / plan.workers

    def run(self) -> None:
        cpu0 = time.process_time()
        start = time.perf_counter()
        end = start + self.plan.seconds
        next_due = start
        next_report = start + _REPORT_EVERY
        for conn in self.conns:
            self._open(conn)
            if self.rate is None:
                self._send(conn, start)
            else:
                self.idle.append(conn)
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if self.rate is not None:
                while next_due <= now:
                    self._offer(next_due)
                    next_due += self.rng.expovariate(self.rate)
            wait = min(next_report, end, next_due if self.rate is not None else end) - now
            for key, _ in self.selector.select(max(0.0, wait)):
                self._readable(key.data)
            now = time.perf_counter()
            if now >= next_report:
                self._expire(now)
                self._retry(now)
                self._flush_report(cpu0)
                cpu0 = time.process_time()
                next_report += _REPORT_EVERY
        self._flush_report(cpu0)
        for conn in self.conns:
            self._close(conn)
        self.report.send(None)

    # -- sending -------------------------------------------------------------------------------

    def _offer(self, due: float) -> None:
        if self.idle:
            self._send(self.idle.popleft(), due)
        else:
            self.backlog.append(due)

    def _next(self, conn: _Conn, now: float) -> None:
        """The connection is free: closed loop sends again, open loop takes the backlog."""
        if self.rate is None:
            self._send(conn, now)
        elif self.backlog:
            self._send(conn, self.backlog.popleft())
        else:
            self.idle.append(conn)

    def _send(self, conn: _Conn, due: float) -> None:
        if conn.sock is None and not self._open(conn):
            if self.rate is not None:
                self.backlog.appendleft(due)
            self.broken.append(conn)
            return
        assert conn.sock is not None
        request, conn.items = self.plan.make(self.rng, self.sequence)
        self.sequence += 1
        conn.due, conn.started = due, time.perf_counter()
        try:
            conn.sock.sendall(request)
        except OSError:
            self.tally.errors["reset"] += 1
            self._close(conn)
            self._next(conn, time.perf_counter())

    # -- receiving -----------------------------------------------------------------------------

    def _readable(self, conn: _Conn) -> None:
        assert conn.sock is not None
        try:
            data = conn.sock.recv(262144)
        except OSError:
            data = b""
        if not data:
            self.tally.errors["reset"] += 1
            self._close(conn)
            self._next(conn, time.perf_counter())
            return
        conn.buf += data
        found = _response_end(conn.buf)
        if found is None:
            return
        length, closing = found
        now = time.perf_counter()
        self._record(bytes(conn.buf[:length]), now - conn.due, conn.items)
        del conn.buf[:length]
        if closing:
            self._close(conn)
        self._next(conn, now)

    def _record(self, response: bytes, latency: float, items: int) -> None:
        status = response[9:12].decode("ascii", "replace")
        if status >= "400":
            code = _ERROR_CODE.search(response)
            if code is not None:
                status = f"{status} {code.group(1).decode()}"
        t = self.tally
        t.requests += 1
        t.items += items
        t.statuses[status] += 1
        t.histogram[bucket(latency)] += 1

    def _expire(self, now: float) -> None:
        for conn in self.conns:
            busy = conn.sock is not None and conn not in self.idle
            if busy and conn.started and now - conn.started > self.plan.timeout:
                self.tally.errors["timeout"] += 1
                self._close(conn)
                self._next(conn, now)

    def _retry(self, now: float) -> None:
        broken, self.broken = self.broken, []
        for conn in broken:
            self._next(conn, now)

    # -- connections ---------------------------------------------------------------------------

    def _open(self, conn: _Conn) -> bool:
        try:
            sock = socket.create_connection((self.plan.host, self.plan.port), timeout=5)
        except OSError:
            self.tally.errors["connect"] += 1
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(True)
        sock.settimeout(self.plan.timeout)
        conn.sock, conn.buf, conn.started = sock, bytearray(), 0.0
        self.selector.register(sock, selectors.EVENT_READ, conn)
        return True

    def _close(self, conn: _Conn) -> None:
        if conn.sock is not None:
            self.selector.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None
        conn.started = 0.0

    def _flush_report(self, cpu0: float) -> None:
        self.tally.cpu_seconds = time.process_time() - cpu0
        self.report.send(self.tally)
        self.tally = Tally()


def _work(plan: Plan, index: int, report: Connection) -> None:
    _Worker(plan, index, report).run()


def run(plan: Plan, on_progress: Callable[[float, Tally, Tally], None] | None = None) -> Tally:
    """Run the plan; ``on_progress(elapsed, last_half_second, total)`` twice a second."""
    context = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for index in range(plan.workers):
        receive, send = context.Pipe(duplex=False)
        proc = context.Process(target=_work, args=(plan, index, send), daemon=True)
        proc.start()
        send.close()
        pipes.append(receive)
        procs.append(proc)
    total = Tally()
    started = time.perf_counter()
    live = list(pipes)
    deadline = started + plan.seconds + plan.timeout + 30
    while live and time.perf_counter() < deadline:
        window = Tally()
        for pipe in multiprocessing.connection.wait(live, timeout=1.0):
            assert isinstance(pipe, Connection)
            try:
                message = pipe.recv()
            except EOFError:
                message = None
            if message is None:
                live.remove(pipe)
            else:
                window.add(message)
        total.add(window)
        if on_progress is not None and window.requests:
            on_progress(time.perf_counter() - started, window, total)
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    return total
