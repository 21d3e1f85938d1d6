"""The load ``python -m bench failover`` (and tests/storage/test_failover.py) runs through a
failover: 16 clients sending single events, batches and redemptions to hot and cold
profiles, each retrying every transaction with its same id until it has a final answer —
what a careful client does. Every answer is recorded with its latency, so the gap's answers
can be checked against the 5 s bound."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import trio

HOT_USERS = [f"hot{i}" for i in range(4)]
RETRY_PAUSE = 0.2  # a client's pause after a 503 (retry-after says 1 s; the test is impatient)

# A program where every purchase earns points and a coupon costs some: redemptions succeed
# often, and are refused (insufficient balance) now and then.
PROGRAM = {
    "wallets": {
        "wallets": [{"key": "points", "name": "Points"}],
        "rewards": [
            {"key": "coupon", "name": "Coupon", "cost": {"wallet": "points", "amount": 10},
             "effect": {"type": "coupon"}},
        ],
    },
    "events": {"rules": [
        {"key": "buy", "name": "Buy", "event": "buy", "award": [{"wallet": "points", "amount": 5}]},
    ]},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Answer:
    started: float  # time.monotonic()
    finished: float
    status: int  # 0: no HTTP answer (the connection failed)
    code: str | None  # the error code of a refusal (a batch's first failed item's)
    retry_after: str | None

    @property
    def latency(self) -> float:
        return self.finished - self.started


@dataclass
class FailoverLoad:
    """Run ``clients`` until ``stop`` is set; every transaction ends answered."""

    client: httpx.AsyncClient
    name: str = "l"  # prefixes its transaction ids and cold users: loads never collide
    answers: list[Answer] = field(default_factory=list)
    events: set[str] = field(default_factory=set)  # acknowledged event transaction ids
    redemptions: set[str] = field(default_factory=set)  # acknowledged redemptions
    refused: dict[str, int] = field(default_factory=dict)  # final 4xx codes
    stop: trio.Event = field(default_factory=trio.Event)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def prepare(self) -> None:
        """The program, and the hot profiles created."""
        answer = await self.client.post(
            "/v1/admin/config", json={"version": "failover", "modules": PROGRAM}
        )
        assert answer.status_code == 200, answer.text
        for user in HOT_USERS:
            await self._final("/v1/events", self._event(user), self.events)

    async def run(self, clients: int = 16) -> None:
        kinds = [self._hot, self._cold, self._batches, self._redeem]
        async with trio.open_nursery() as nursery:
            for n in range(clients):
                nursery.start_soon(kinds[n % len(kinds)], n)

    # -- the clients ---------------------------------------------------------------------------

    async def _hot(self, n: int) -> None:
        while not self.stop.is_set():
            user = HOT_USERS[next(self._ids) % len(HOT_USERS)]
            await self._final("/v1/events", self._event(user), self.events)

    async def _cold(self, n: int) -> None:
        while not self.stop.is_set():
            user = f"{self.name}-cold-{n}-{next(self._ids)}"
            await self._final("/v1/events", self._event(user), self.events)

    async def _batches(self, n: int) -> None:
        while not self.stop.is_set():
            items = [
                self._event(HOT_USERS[i % len(HOT_USERS)] if i % 3 == 0 else f"{self.name}-b{i}")
                for i in (next(self._ids) for _ in range(10))
            ]
            pending = {item["transaction_id"]: item for item in items}
            while pending:  # the items not yet final go again, with their ids
                response = await self._post("/v1/events:batch", {"events": list(pending.values())})
                if response is None or response.status_code != 200:
                    await trio.sleep(RETRY_PAUSE)
                    continue
                sent = list(pending)
                for tx, result in zip(sent, response.json()["results"], strict=True):
                    if "error" not in result:
                        self.events.add(tx)
                        del pending[tx]
                    else:
                        assert result["error"]["error"] in _RETRIED, result
                if pending:
                    await trio.sleep(RETRY_PAUSE)

    async def _redeem(self, n: int) -> None:
        while not self.stop.is_set():
            user = HOT_USERS[next(self._ids) % len(HOT_USERS)]
            tx = f"{self.name}-r{next(self._ids)}"
            body = {"user_id": user, "reward_key": "coupon", "transaction_id": tx}
            await self._final("/v1/rewards/redeem", body, self.redemptions)

    # -- one transaction -----------------------------------------------------------------------

    def _event(self, user: str) -> dict[str, Any]:
        return {
            "user_id": user,
            "event": "buy",
            "transaction_id": f"{self.name}-e{next(self._ids)}",
        }

    async def _final(self, path: str, body: dict[str, Any], acked: set[str]) -> None:
        """Send until a final answer: a 200 acknowledges it; a 4xx refuses it."""
        while True:
            response = await self._post(path, body)
            if response is not None and response.status_code < 500:
                if response.status_code == 200:
                    acked.add(body["transaction_id"])
                else:
                    code = response.json()["error"]
                    self.refused[code] = self.refused.get(code, 0) + 1
                return
            await trio.sleep(RETRY_PAUSE)

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await self.client.post(path, json=body)
        except httpx.TransportError:
            self.answers.append(Answer(started, time.monotonic(), 0, None, None))
            return None
        answer = response.json()
        code = answer.get("error") if response.status_code != 200 else None
        if "results" in answer:  # a batch: its items fail alone, inside the 200
            failed = [r["error"]["error"] for r in answer["results"] if "error" in r]
            code = failed[0] if failed else None
        self.answers.append(
            Answer(
                started, time.monotonic(), response.status_code, code,
                response.headers.get("retry-after"),
            )
        )  # fmt: skip
        return response

    # -- what happened -------------------------------------------------------------------------

    def first_success_after(self, moment: float) -> float | None:
        """When the first wholly successful answer to a request sent after ``moment``
        arrived."""
        times = [
            a.finished
            for a in self.answers
            if a.status == 200 and a.code is None and a.started >= moment
        ]
        return min(times, default=None)

    def between(self, start: float, end: float) -> list[Answer]:
        """The answers that arrived in [start, end)."""
        return [a for a in self.answers if start <= a.finished < end]


_RETRIED = {"storage_unavailable", "outcome_unknown", "overloaded"}


def stored(url: str, space_id: int) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """transaction id → copies in the event log; the same for redemptions; the month's meters."""
    with psycopg.connect(url) as conn:
        events = conn.execute(
            "SELECT transaction_id, count(*) FROM events WHERE space_id = %s"
            " GROUP BY transaction_id",
            (space_id,),
        ).fetchall()
        redemptions = conn.execute(
            "SELECT transaction_id, count(*) FROM redemptions WHERE space_id = %s"
            " GROUP BY transaction_id",
            (space_id,),
        ).fetchall()
        meters = conn.execute(
            "SELECT meter, sum(used) FROM usage_counters WHERE space_id = %s GROUP BY meter",
            (space_id,),
        ).fetchall()
    return dict(events), dict(redemptions), {m: int(n) for m, n in meters}
