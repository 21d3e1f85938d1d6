"""Live streams (docs/api.md "The browser half"): ``GET /v1/client/stream`` over real HTTP, served in-process —
the snapshot, every committed change in commit order, resync, the bounds, the ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from perkamo.http import live
from perkamo.profiles.subscribers import Subscriber, Subscribers
from tests.browser import SHOP, Browser, EventStream, browser_setup, stream
from tests.inprocess_server import serving
from tests.notifications import notified


@pytest.fixture
async def browser(runtime, api, space) -> Browser:
    return await browser_setup(runtime, api, space)


@pytest.fixture
async def port(runtime, settings) -> AsyncIterator[int]:
    async with serving(runtime, settings) as bound:
        yield bound


async def _event(browser: Browser, user: str, tx: str, event: str = "page.viewed") -> None:
    body = {"user_id": user, "event": event, "transaction_id": tx}
    answer = await browser.api.post("/v1/events", body)
    assert answer.status == 200, answer.body


async def test_a_snapshot_then_every_committed_change_in_order(browser, port):
    token = await browser.token("c1", purpose="stream")
    async with stream(port, token) as events:
        assert events.status == 200
        assert events.headers["content-type"] == "text/event-stream"
        assert events.headers["access-control-allow-origin"] == SHOP
        first = await events.next_event()
        assert (first.event, first.data, first.id) == ("profile", None, 0)
        await _event(browser, "c1", "s1")
        await browser.api.post("/v1/identify", {"user_id": "c1", "traits": {"plan": "gold"}})
        client_token = await browser.token("c1")
        sent = await browser.call("POST", "/v1/client/events", client_token,
                                  json={"event": "lesson.finished", "transaction_id": "s1"})  # fmt: skip
        assert sent.status == 200
        changes = [await events.next_event() for _ in range(3)]
    assert [c.event for c in changes] == ["change"] * 3
    assert [c.id for c in changes] == [1, 2, 3]
    assert [c.data["version"] for c in changes] == [1, 2, 3]
    assert [c.data["type"] for c in changes] == [
        "event.applied", "profile.identified", "event.applied"
    ]  # fmt: skip
    assert changes[0].data["source"] == "server" and changes[2].data["source"] == "client"
    assert changes[0].data["transaction_id"] == "s1" and changes[0].data["event"] == "page.viewed"
    assert changes[2].data["wallet_state"]["points"] > changes[0].data["wallet_state"]["points"]
    for key in ("delta", "unlocked", "leveled_up", "wallet_state", "level"):
        assert key in changes[0].data


async def test_each_write_of_one_unit_is_its_own_change(browser, port):
    token = await browser.token("c2", purpose="stream")
    async with stream(port, token) as events:
        await events.next_event()
        items = [{"user_id": "c2", "event": "page.viewed", "transaction_id": f"b{i}"}
                 for i in range(5)]  # fmt: skip
        assert (await browser.api.post("/v1/events:batch", {"events": items})).status == 200
        changes = [await events.next_event() for _ in range(5)]
    assert [c.id for c in changes] == [1, 2, 3, 4, 5]
    assert [c.data["transaction_id"] for c in changes] == [f"b{i}" for i in range(5)]
    profile = await browser.api.get("/v1/profile/c2")
    assert profile.status == 200


async def test_a_reconnect_resyncs_from_last_event_id(browser, port):
    await _event(browser, "c3", "r1")
    await _event(browser, "c3", "r2")
    async with stream(port, await browser.token("c3", purpose="stream"), last_event_id=2) as ev:
        await _event(browser, "c3", "r3")
        first = await ev.next_event()  # nothing missed: no snapshot, the next change
        assert (first.event, first.id) == ("change", 3)
    async with stream(port, await browser.token("c3", purpose="stream"), last_event_id=1) as ev:
        first = await ev.next_event()  # missed one: the whole profile first
        assert (first.event, first.id) == ("profile", 3)
        assert first.data["wallets"]["points"] >= 0 and "traits" not in first.data


async def test_the_oldest_of_six_streams_of_a_customer_is_evicted(browser, port):
    async with trio.open_nursery() as nursery:
        opened: list[EventStream] = []
        done = trio.Event()

        async def hold() -> None:
            async with stream(port, await browser.token("c4", purpose="stream")) as events:
                await events.next_event()
                opened.append(events)
                await done.wait()

        nursery.start_soon(hold)
        with trio.fail_after(5):
            while len(opened) < 1:
                await trio.sleep(0.01)
        for _ in range(5):
            nursery.start_soon(hold)
        first = opened[0]
        evicted = await first.next_event()
        assert evicted.event == "evicted"
        assert await first.ended()
        with trio.fail_after(5):
            while len(opened) < 6:
                await trio.sleep(0.01)
        done.set()


async def test_one_stream_per_token_and_the_process_cap(runtime, browser, port):
    token = await browser.token("c5", purpose="stream")
    async with stream(port, token) as events:
        await events.next_event()
        async with stream(port, token) as again:
            assert again.status == 401
        runtime.streams.max_streams = 1
        async with stream(port, await browser.token("c6", purpose="stream")) as full:
            assert full.status == 503
            assert full.headers["retry-after"]
    runtime.streams.max_streams = 20_000


async def test_a_stream_ends_with_expired_at_the_tokens_exp(browser, port):
    answer = await browser.api.post(
        "/v1/browser-tokens",
        {"browser_key": browser.key, "user_id": "c7", "purpose": "stream", "ttl_seconds": 1},
    )
    async with stream(port, answer.body["token"]) as events:
        await events.next_event()
        expired = await events.next_event(within=4)
        assert expired.event == "expired"
        assert await events.ended()


async def test_revoking_the_browser_key_ends_its_streams_within_a_second(runtime, browser, port):
    async with stream(port, await browser.token("c8", purpose="stream")) as events:
        await events.next_event()
        async with notified(runtime):
            await browser.api.request("DELETE", f"/v1/admin/browser-keys/{browser.key_id}")
        assert await events.ended(within=1.5)


async def test_keep_alives_and_a_shutdown_closes_streams_at_once(
    runtime, browser, port, monkeypatch
):
    monkeypatch.setattr(live, "KEEP_ALIVE", 0.2)
    async with stream(port, await browser.token("c9", purpose="stream")) as events:
        await events.next_event()
        await _event(browser, "c9", "k1")
        change = await events.next_event()
        assert change.event == "change" and events.comments >= 0
        await trio.sleep(0.5)
        await _event(browser, "c9", "k2")
        await events.next_event()
        assert events.comments >= 1  # ": keep-alive" arrived in between
        runtime.streams.tell_all("closing")
        assert await events.ended(within=1)
    assert len(runtime.streams) == 0


async def test_a_stream_token_in_a_url_is_redacted_from_logs():
    from perkamo.server.logs import redact

    line = '{"msg":"GET /v1/client/stream?token=eyJh.eyJz.c2ln&last_event_id=3"}'
    assert redact(line) == '{"msg":"GET /v1/client/stream?token=REDACTED&last_event_id=3"}'


def test_a_slow_subscriber_is_dropped_to_a_resnapshot_never_waited_on():
    subscriber = Subscriber(capacity=3)
    for version in range(1, 4):
        subscriber.offer(version, b"{}")
    assert not subscriber.resnapshot
    subscriber.offer(4, b"{}")  # one too many: the queue goes, a snapshot comes instead
    assert subscriber.resnapshot and subscriber.take() == []
    assert not subscriber.resnapshot
    subscriber.offer(5, b"{}")
    assert subscriber.take() == [(5, b"{}")]


def test_subscribers_pin_what_they_watch_and_move_with_the_shard():
    pins: list[tuple[str, tuple[int, str]]] = []
    hub = Subscribers(lambda k: pins.append(("pin", k)), lambda k: pins.append(("unpin", k)))
    a, b = Subscriber(), Subscriber()
    hub.add((1, "u"), a)
    hub.add((1, "u"), b)
    hub.remove((1, "u"), a)
    assert pins == [("pin", (1, "u"))] and hub.watching((1, "u"))
    assert hub.end_matching(lambda key: key == (1, "u")) == 1
    assert b.ended and not hub.watching((1, "u")) and pins[-1] == ("unpin", (1, "u"))


async def test_a_return_is_a_change_of_its_own(browser, port):
    token = await browser.token("c9", purpose="stream")
    async with stream(port, token) as events:
        assert (await events.next_event()).event == "profile"
        await _event(browser, "c9", "r1", "lesson.finished")
        answer = await browser.api.post("/v1/admin/events/r1/reverse", {"reason": "refund"})
        assert answer.status == 200, answer.body
        changes = [await events.next_event() for _ in range(2)]
    assert [c.data["type"] for c in changes] == ["event.applied", "event.reversed"]
    assert [c.id for c in changes] == [1, 2]
    given, taken = changes[0].data["delta"], changes[1].data["delta"]
    assert given and taken == [{**d, "amount": -d["amount"]} for d in given]
    assert changes[1].data["transaction_id"] == "r1"
