"""The workloads, as request makers for the load generator (bench/loadgen.py).

``bench run`` fills a :class:`Target` from the bench program it loads; ``bench load`` fills
one from the server's own ``GET /v1/program`` (event names from its earning rules, the
cheapest reward), so the same workloads run against any deployment.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .loadgen import Maker


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    key: str
    users: int = 100_000
    events: tuple[str, ...] = ("purchase.completed",)  # cycled by the event workloads
    context: dict[str, Any] = field(default_factory=lambda: {"amount": 12900, "currency": "CZK"})
    reward: str | None = None  # for the redemption workload
    run: str = "run"  # makes transaction ids unique to this run
    browser_key: str | None = None  # for the tokens workload (docs/api.md "The browser half")


def _request(target: Target, method: str, path: str, body: Any = None) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: {target.host}:{target.port}\r\n"
        f"x-perkamo-api-key: {target.key}\r\n"
    )
    if body is None:
        return (head + "\r\n").encode()
    data = json.dumps(body, separators=(",", ":")).encode()
    head += f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
    return head.encode() + data


def _event(
    target: Target, user: str, n: int, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": user,
        "event": target.events[n % len(target.events)],
        "transaction_id": f"{target.run}-{n}",
    }
    if context is None:
        context = target.context
    if context:
        body["context"] = context
    return body


def single(target: Target) -> Maker:
    """One event per request, users uniform over ``users``."""

    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        body = _event(target, f"user-{rng.randrange(target.users)}", n)
        return _request(target, "POST", "/v1/events", body), 1

    return make


def zipf(target: Target) -> Maker:
    """Log-uniform users: a Zipf-like skew (s ≈ 1) where a few profiles are very hot."""

    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        user = math.floor(math.exp(rng.random() * math.log(target.users)))
        body = _event(target, f"user-{user}", n)
        return _request(target, "POST", "/v1/events", body), 1

    return make


def one_user(target: Target) -> Maker:
    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        return _request(target, "POST", "/v1/events", _event(target, "the-one", n)), 1

    return make


def batch(target: Target, size: int = 100) -> Maker:
    """Batches of ``size`` events for as many distinct users (uniform)."""

    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        items = [
            _event(target, f"user-{rng.randrange(target.users)}", n * size + j) for j in range(size)
        ]
        return _request(target, "POST", "/v1/events:batch", {"events": items}), size

    return make


def batch_one_user(target: Target, size: int = 100) -> Maker:
    """Batches of ``size`` events of one user each (users uniform over ``users``)."""

    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        user = f"buyer-{rng.randrange(target.users)}"
        items = [_event(target, user, n * size + j) for j in range(size)]
        return _request(target, "POST", "/v1/events:batch", {"events": items}), size

    return make


def mixed(target: Target, readers: int = 1000) -> Maker:
    """90 % events, 10 % profile reads, over ``readers`` users."""

    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        user = f"reader-{rng.randrange(min(readers, target.users))}"
        if n % 10 == 0:
            return _request(target, "GET", f"/v1/profile/{user}"), 1
        return _request(target, "POST", "/v1/events", _event(target, user, n, {})), 1

    return make


def redeem(target: Target, spenders: int = 100) -> Maker:
    """Redemptions of ``reward`` by ``spenders`` users (who need the balance for it)."""
    if target.reward is None:
        raise ValueError("the program has no reward to redeem")

    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        body = {
            "user_id": f"spender-{rng.randrange(min(spenders, target.users))}",
            "reward_key": target.reward,
            "transaction_id": f"{target.run}-{n}",
        }
        return _request(target, "POST", "/v1/rewards/redeem", body), 1

    return make


def echo(target: Target) -> Maker:
    """The framework ceiling's request: an event body posted to the echo app."""

    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        body = _event(target, "user-1", n)
        return _request(target, "POST", "/echo", body), 1

    return make


def tokens(target: Target) -> Maker:
    """Browser tokens minted for customers uniform over ``users`` (``POST
    /v1/browser-tokens``: no profile actor involved)."""
    if target.browser_key is None:
        raise ValueError("the tokens workload needs a browser key")
    key = target.browser_key

    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        body = {"browser_key": key, "user_id": f"user-{rng.randrange(target.users)}"}
        return _request(target, "POST", "/v1/browser-tokens", body), 1

    return make


def streamed(target: Target, customers: int) -> Maker:
    """Events for the customers the streams bench watches (``stream-0`` …); the transaction
    id carries the send time, so a stream can tell how long its change took."""
    import time

    def make(rng: random.Random, n: int) -> tuple[bytes, int]:
        body = {
            "user_id": f"stream-{rng.randrange(customers)}",
            "event": target.events[n % len(target.events)],
            "transaction_id": f"lat-{time.time_ns()}-{target.run}-{n}",
            "context": target.context,
        }
        return _request(target, "POST", "/v1/events", body), 1

    return make


WORKLOADS: dict[str, Callable[[Target], Maker]] = {
    "single": single,
    "zipf": zipf,
    "batch": batch,
    "mixed": mixed,
    "redeem": redeem,
    "tokens": tokens,
}
