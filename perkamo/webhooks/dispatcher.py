"""Delivering the outbox: due rows are claimed (leased, so a crash only delays them),
POSTed with bounded concurrency, and retried with exponential backoff — 8 attempts over
about a day, then ``failed``. Delivery is at-least-once and survives restarts.

An endpoint that cannot be reached (connection refused, no answer) for BREAKER_FAILURES
attempts in a row is paused: its Space's deliveries stay due, unclaimed, for BREAKER_PAUSE
(doubling while it stays down, up to BREAKER_MAX_PAUSE), so that a dead receiver does not
cost an attempt and a write per event (measured: it halved ingestion; bench/notes.md). Any
HTTP answer, even an error status, closes the breaker: the endpoint is reachable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import trio

from perkamo.webhooks.payloads import sign
from storage import Database, is_outage
from storage import webhooks as store

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 8


# Waits after attempts 1..7: about 22 hours in all.
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
)


ATTEMPT_TIMEOUT = 5.0


LEASE = timedelta(minutes=2)


USER_AGENT = "Perkamo-Webhook/1.0"
RESPONSE_KEPT = 4096  # bytes of each answer's body kept for the inspector


BREAKER_FAILURES = 5
BREAKER_PAUSE = timedelta(seconds=30)
BREAKER_MAX_PAUSE = timedelta(minutes=5)


@dataclass
class _Breaker:
    failures: int = 0  # unreachable attempts in a row
    pause: timedelta = BREAKER_PAUSE  # the next pause
    paused_until: datetime | None = None


@dataclass
class DispatcherStatistics:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    attempts: int = 0


class WebhookDispatcher:
    """Delivers due outbox rows. ``clock`` gives the wall-clock time deliveries are due by
    (injectable, so tests can walk through a day of backoff instantly)."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        concurrency: int = 8,
        batch: int = 100,
        poll_seconds: float = 1.0,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
    ) -> None:
        self._db = db
        self._clock = clock
        self._limiter = trio.CapacityLimiter(concurrency)
        self._batch = batch
        self._poll = poll_seconds
        self._timeout = attempt_timeout
        self._wake = trio.Event()
        self.stats = DispatcherStatistics()
        self._breakers: dict[int, _Breaker] = {}  # by Space

    def kick(self) -> None:
        """New deliveries were committed: look now rather than at the next poll."""
        self._wake.set()

    def forget_breaker(self, space_id: int) -> None:
        """The operator enabled or changed the endpoint: attempt it again now."""
        self._breakers.pop(space_id, None)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=None, follow_redirects=False) as client:
            while True:
                try:
                    handled = await self.run_once(client)
                except Exception as exc:
                    if is_outage(exc):  # expected, and said once per poll
                        log.warning("webhook dispatch paused: storage unavailable (%s)", exc)
                    else:  # anything else is a defect: keep its traceback
                        log.exception("webhook dispatch failed; retrying")
                    handled = 0
                if handled < self._batch:
                    with trio.move_on_after(self._poll):
                        await self._wake.wait()
                    self._wake = trio.Event()

    async def run_once(self, client: httpx.AsyncClient) -> int:
        """Claim what is due now and attempt each once; returns how many were attempted."""
        now = self._clock()
        paused = sorted(
            space
            for space, b in self._breakers.items()
            if b.paused_until is not None and b.paused_until > now
        )
        due = await self._db.run(store.claim_due, now, now + LEASE, self._batch, paused)
        if not due:
            return 0
        hooks = await self._db.run(store.endpoints, sorted({d.space_id for d in due}))
        async with trio.open_nursery() as nursery:
            for delivery in due:
                nursery.start_soon(self._attempt, client, delivery, hooks.get(delivery.space_id))
        return len(due)

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: store.DueDelivery, hook: store.Endpoint | None
    ) -> None:
        async with self._limiter:
            attempt = delivery.attempts + 1
            at = self._clock()
            started = time.perf_counter()
            code: int | None = None
            text: str | None = None
            error: str | None = None
            answer: str | None = None
            headers: dict[str, str] = {}
            if hook is None or not hook.enabled:
                error = "no enabled webhook endpoint for this Space"
            else:
                body = delivery.body.encode()
                headers = request_headers(hook, delivery, attempt, body, at)
                with trio.move_on_after(self._timeout) as scope:
                    try:
                        response = await client.post(hook.url, content=body, headers=headers)
                        code, text = response.status_code, response.reason_phrase
                        answer = response.content[:RESPONSE_KEPT].decode("utf-8", "replace")
                    except httpx.HTTPError as exc:
                        error = f"{type(exc).__name__}: {exc}"[:500]
                if scope.cancelled_caught:
                    error = f"no answer within {self._timeout:g} s"
            duration_ms = int((time.perf_counter() - started) * 1000)
            if hook is not None and hook.enabled:
                await self._reached(delivery.space_id, code is not None, at)
            ok = code is not None and 200 <= code < 300
            if ok:
                status, next_at = "delivered", at
                self.stats.delivered += 1
            elif attempt >= MAX_ATTEMPTS or hook is None or not hook.enabled:
                status, next_at = "failed", at
                self.stats.failed += 1
            else:
                status, next_at = "retrying", at + BACKOFF[attempt - 1]
                self.stats.retrying += 1
            if error is None and not ok:
                error = f"HTTP {code}"
            self.stats.attempts += 1
            record = store.AttemptRecord(
                delivery.id,
                attempt,
                at,
                code,
                text,
                duration_ms,
                None if ok else error,
                headers,
                answer,
            )
            await self._db.run(store.record_attempt, record, status, next_at)

    async def _reached(self, space_id: int, answered: bool, at: datetime) -> None:
        """Count an attempt on the Space's breaker; pause the endpoint when it trips. The
        breaker's state is written where every process's console reads it (a paused
        endpoint says so, never "enabled"), only when it changes: tripped or closed."""
        breaker = self._breakers.setdefault(space_id, _Breaker())
        if answered:
            was_open = breaker.failures >= BREAKER_FAILURES
            self._breakers.pop(space_id, None)
            if was_open:
                await self._db.run(store.record_breaker, space_id, 0, None)
            return
        breaker.failures += 1
        if breaker.failures >= BREAKER_FAILURES and (
            breaker.paused_until is None or breaker.paused_until <= at
        ):
            breaker.paused_until = at + breaker.pause
            log.warning(
                "webhook endpoint unreachable %d times in a row; pausing its deliveries",
                breaker.failures,
                extra={"space_id": space_id, "seconds": breaker.pause.total_seconds()},
            )
            breaker.pause = min(breaker.pause * 2, BREAKER_MAX_PAUSE)
            await self._db.run(
                store.record_breaker, space_id, breaker.failures, breaker.paused_until
            )


def request_headers(
    hook: store.Endpoint, delivery: store.DueDelivery, attempt: int, body: bytes, at: datetime
) -> dict[str, str]:
    """The headers of one attempt (docs/api.md (webhooks)), kept with it for the inspector. For 24 h
    after a rotation the signature header lists one ``v1=`` per secret, comma-separated,
    the new secret's first: a receiver accepts the delivery when any of them matches."""
    signatures = ",".join(sign(secret, delivery.id, body) for secret in hook.secrets(at))
    return {
        "user-agent": USER_AGENT,
        "content-type": "application/json",
        "x-perkamo-delivery": delivery.id,
        "x-perkamo-event": delivery.event_type,
        "x-perkamo-space": hook.slug,
        "x-perkamo-attempt": str(attempt),
        "x-perkamo-webhook-signature": signatures,
    }
