"""Webhooks against a real HTTP receiver started by the test; metrics; structured logs."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from perkamo.access import admin
from perkamo.configuration import activate_demo
from perkamo.runtime import open_runtime
from perkamo.server.logs import JsonFormatter
from perkamo.settings import Settings
from perkamo.webhooks import WebhookDispatcher, sign
from perkamo.webhooks.dispatcher import BREAKER_FAILURES, MAX_ATTEMPTS
from storage import Database, EventRow, OutboxRow, SnapshotWrite, Unit, Verdict
from storage.group_commit import GroupCommitWriter
from tests.api_client import Api, app_for
from tests.spaces import SpaceKey, make_space


class Receiver:
    """A minimal HTTP/1.1 server: records requests, answers the scripted statuses in turn
    (None: never answer), each with ``answer`` as its body."""

    answer = b""

    def __init__(self, script: list[int | None]) -> None:
        self.script = list(script)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.port = 0
        self.arrived = trio.Event()

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])
        }
        while len(body) < int(headers.get("content-length", 0)):
            body += await stream.receive_some(65536)
        self.requests.append((headers, body))
        self.arrived.set()
        status = self.script.pop(0) if self.script else 200
        if status is None:
            await trio.sleep_forever()
        head = f"HTTP/1.1 {status} Whatever\r\ncontent-length: {len(self.answer)}\r\n"
        await stream.send_all(head.encode() + b"connection: close\r\n\r\n" + self.answer)
        await stream.aclose()

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(10):
            while len(self.requests) < count:
                self.arrived = trio.Event()
                await self.arrived.wait()


def deliveries(pg_url: str, space_id: int) -> list[tuple]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT status, attempts, event_type, last_status_code, last_error"
            " FROM webhook_deliveries WHERE space_id = %s ORDER BY created_at, id",
            (space_id,),
        ).fetchall()


async def test_deliveries_carry_the_payload_headers_and_a_verifiable_signature(
    runtime, pg_url, nursery
):
    receiver = Receiver([])
    await nursery.start(receiver.serve)
    space = make_space(pg_url)
    with psycopg.connect(pg_url) as conn:
        secret = admin.set_webhook(conn, space.slug, receiver.url)
    assert await activate_demo(runtime.db, runtime.programs, space.space.id)
    api = Api(app_for(runtime), space.key)
    for n in range(2):  # 100 points: level 2
        event = {"user_id": "c", "event": "purchase.completed", "transaction_id": f"o{n}",
                 "context": {"amount": 12900}, "occurred_at": "2026-06-01T10:00:00Z"}  # fmt: skip
        assert (await api.post("/v1/events", event)).status == 200
    redeemed = await api.post(
        "/v1/rewards/redeem", {"user_id": "c", "reward_key": "free_shipping", "transaction_id": "r"}
    )
    assert redeemed.status == 200
    await receiver.wait_for(3)
    by_type = {}
    for headers, body in receiver.requests:
        assert headers["user-agent"] == "Perkamo-Webhook/1.0"
        assert headers["content-type"] == "application/json"
        assert headers["x-perkamo-space"] == space.slug
        assert headers["x-perkamo-attempt"] == "1"
        assert headers["x-perkamo-delivery"].startswith("dlv_")
        assert headers["x-perkamo-webhook-signature"] == sign(
            secret, headers["x-perkamo-delivery"], body
        )
        payload = json.loads(body)
        assert headers["x-perkamo-event"] == payload["type"]
        by_type.setdefault(payload["type"], []).append(payload)
    first, second = sorted(by_type["purchase.completed"], key=lambda p: p["data"]["transaction_id"])
    assert first["id"].startswith("evt_") and first["created_at"].endswith("Z")
    data = first["data"]
    assert data["space"] == {
        "slug": space.slug,
        "name": f"Space {space.slug}",
        "environment": "test",
    }
    assert (data["user_id"], data["transaction_id"], data["event"]) == (
        "c",
        "o0",
        "purchase.completed",
    )
    assert data["status"] == "applied" and data["occurred_at"] == "2026-06-01T10:00:00.000Z"
    assert data["context"] == {"amount": 12900}
    assert data["delta"] == [{"wallet": "points", "amount": 50}]
    assert data["effects"] == [{"type": "perk", "key": "welcome_member", "name": "Welcome member"}]
    assert data["wallet_state"] == {"points": 50}
    assert {"type": "level", "from": 1, "to": 2} in second["data"]["effects"]
    [redemption] = by_type["reward.redeemed"]
    assert redemption["data"]["reward_key"] == "free_shipping"
    assert redemption["data"]["cost"] == {"wallet": "points", "amount": 100}
    with trio.fail_after(5):
        while {row[0] for row in deliveries(pg_url, space.space.id)} != {"delivered"}:
            await trio.sleep(0.05)
    webhook = (await api.get("/v1/program")).body["integration"]["webhook"]
    assert webhook["status"] == "active" and webhook["url"] == receiver.url
    assert (webhook["queued"], webhook["failed_last_24h"]) == (0, 0)
    assert webhook["last_delivered_at"].endswith("Z")


async def test_a_failed_attempt_is_retried_and_survives_a_restart(pg_url, tmp_path, nursery):
    receiver = Receiver([500, 200])
    await nursery.start(receiver.serve)
    space = make_space(pg_url)
    with psycopg.connect(pg_url) as conn:
        admin.set_webhook(conn, space.slug, receiver.url)
    async with open_runtime(Settings(data_dir=tmp_path), pg_url) as runtime:
        api = Api(app_for(runtime), space.key)
        await api.post("/v1/events", {"user_id": "u", "event": "e", "transaction_id": "1"})
        await receiver.wait_for(1)
        with trio.fail_after(5):
            while deliveries(pg_url, space.space.id)[0][0] != "retrying":
                await trio.sleep(0.05)
    # The server is gone; the delivery waits in PostgreSQL. A new process delivers it once
    # its backoff (one minute after the first attempt) has passed.
    assert deliveries(pg_url, space.space.id)[0][:2] == ("retrying", 1)
    later = datetime.now(UTC) + timedelta(minutes=3)
    db = Database(pg_url)
    await trio.to_thread.run_sync(db.open)
    try:
        dispatcher = WebhookDispatcher(db, clock=lambda: later)
        async with httpx.AsyncClient() as client:
            # Other tests' deliveries (other Spaces, shared database) may be due as well.
            assert await dispatcher.run_once(client) >= 1
    finally:
        await trio.to_thread.run_sync(db.close)
    assert len(receiver.requests) == 2
    assert receiver.requests[1][0]["x-perkamo-attempt"] == "2"
    assert (
        receiver.requests[0][0]["x-perkamo-delivery"]
        == receiver.requests[1][0]["x-perkamo-delivery"]
    )
    assert deliveries(pg_url, space.space.id)[0][:4] == ("delivered", 2, "e", 200)


async def test_a_receiver_that_never_answers_is_failed_after_the_last_attempt(
    pg_url, autojump_clock, nursery
):
    receiver = Receiver([None] * MAX_ATTEMPTS)
    await nursery.start(receiver.serve)
    space = make_space(pg_url)
    with psycopg.connect(pg_url) as conn:
        admin.set_webhook(conn, space.slug, receiver.url)
    created = datetime(2026, 6, 1, tzinfo=UTC)
    row = OutboxRow("dlv_silent", space.space.id, "e", '{"id": "evt_1"}', created)
    writer = GroupCommitWriter(pg_url)
    event = EventRow(space.space.id, "t", "u", "e", "{}", created, created, b"h", "{}")
    unit = Unit(
        {"events": [event]},
        SnapshotWrite(space.space.id, "u", "{}", "{}", 0, created),
        outbox=[row],
    )
    assert (await writer._flush([unit]))[0].status.value == "committed"
    writer._close_connection()
    wall = [created]
    db = Database(pg_url)
    await trio.to_thread.run_sync(db.open)
    try:
        dispatcher = WebhookDispatcher(db, clock=lambda: wall[0])
        async with httpx.AsyncClient() as client:
            for _ in range(MAX_ATTEMPTS):
                assert await dispatcher.run_once(client) == 1  # each waits 5 virtual seconds
                wall[0] += timedelta(hours=13)  # past any backoff
            assert await dispatcher.run_once(client) == 0  # nothing left to try
    finally:
        await trio.to_thread.run_sync(db.close)
    status, attempts, _, code, error = deliveries(pg_url, space.space.id)[0]
    assert (status, attempts, code) == ("failed", MAX_ATTEMPTS, None)
    assert error == "no answer within 5 s"
    assert [h["x-perkamo-attempt"] for h, _ in receiver.requests] == [str(n) for n in range(1, 9)]
    with psycopg.connect(pg_url) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM webhook_attempts WHERE delivery_id = 'dlv_silent'"
        ).fetchone()
    assert count == MAX_ATTEMPTS


async def test_no_endpoint_no_outbox(api, space, pg_url):
    await api.post("/v1/events", {"user_id": "u", "event": "e", "transaction_id": "1"})
    assert deliveries(pg_url, space.space.id) == []
    webhook = (await api.get("/v1/program")).body["integration"]["webhook"]
    assert webhook == {"status": "not_configured"}


def test_live_spaces_need_https(pg_url):
    live = make_space(pg_url, environment="live")
    with psycopg.connect(pg_url) as conn, pytest.raises(admin.AdminError, match="https"):
        admin.set_webhook(conn, live.slug, "http://example.invalid/hook")
    with psycopg.connect(pg_url) as conn:
        assert admin.set_webhook(conn, live.slug, "https://example.invalid/hook").startswith(
            "whsec_"
        )


# -- metrics and logs ---------------------------------------------------------------------------


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def test_metrics_parse_and_move(api):
    text_before = await raw_metrics(api)
    for n in range(3):
        await api.post("/v1/events", {"user_id": f"u{n}", "event": "e", "transaction_id": str(n)})
    await api.post("/v1/events", {"user_id": 5})  # a 400
    text = await raw_metrics(api)
    route = {"route": "/v1/events"}
    assert (
        sample(text, "perkamo_http_requests_total", status="200", **route)
        - sample(text_before, "perkamo_http_requests_total", status="200", **route)
        == 3
    )
    assert sample(text, "perkamo_http_requests_total", status="400", **route) >= 1
    assert sample(text, "perkamo_http_request_duration_seconds_count", **route) >= 4
    assert sample(text, "perkamo_actors_resident") >= 3
    assert sample(text, "perkamo_group_commit_flushes_total") >= 3
    assert sample(text, "perkamo_group_commit_units_total") >= 3
    # Every series names its member (several members may share a port).
    members = {s.labels.get("member") for f in text_string_to_metric_families(text)
               for s in f.samples}  # fmt: skip
    assert len(members) == 1 and None not in members
    assert sample(text, "perkamo_cluster_members") == 1


async def raw_metrics(api: Api) -> str:
    response = await api._client.get("/metrics", scope_base={"raw_path": b"/metrics"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return (await response.get_data()).decode()


async def test_access_log_is_structured_and_never_holds_the_key(api, space, caplog):
    caplog.set_level(logging.INFO, logger="perkamo.access")
    await api.post("/v1/events", {"user_id": "u", "event": "e", "transaction_id": "secret-tx",
                                  "context": {"card": "4111"}})  # fmt: skip
    [record] = [r for r in caplog.records if r.name == "perkamo.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "request" and line["level"] == "info"
    assert line["route"] == "/v1/events" and line["status"] == 200
    assert line["space"] == space.slug and line["request_id"].startswith("req_")
    assert isinstance(line["latency_ms"], float)
    text = JsonFormatter().format(record)
    assert space.key not in text and "4111" not in text and "secret-tx" not in text


async def test_an_unauthenticated_access_line_has_a_null_space(api, caplog):
    caplog.set_level(logging.INFO, logger="perkamo.access")
    await api.get("/v1/usage", key=None)
    [record] = [r for r in caplog.records if r.name == "perkamo.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 401 and line["space"] is None


async def due_deliveries(
    pg_url: str, space: SpaceKey, url: str, count: int, created: datetime
) -> list[Verdict]:
    """Point the Space's webhook at ``url`` and commit ``count`` events (one user each), each
    with a due delivery, through the real group commit. Other tests' due deliveries are
    settled first: the database is shared, and they are not this test's to send."""
    with psycopg.connect(pg_url) as conn:
        admin.set_webhook(conn, space.slug, url)
        conn.execute(
            "UPDATE webhook_deliveries SET status = 'failed'"
            " WHERE status IN ('pending', 'retrying')"
        )
    sid, units = space.space.id, []
    for n in range(count):
        row = OutboxRow(f"dlv_{sid}_{n}", sid, "e", "{}", created)
        event = EventRow(sid, f"t{n}", f"u{n}", "e", "{}", created, created, b"h", "{}")
        snap = SnapshotWrite(sid, f"u{n}", "{}", "{}", 0, created)
        units.append(Unit({"events": [event]}, snap, outbox=[row]))
    writer = GroupCommitWriter(pg_url)
    try:
        return await writer._flush(units)
    finally:
        writer._close_connection()


async def test_an_unreachable_endpoint_is_paused_then_tried_again(pg_url):
    """A dead receiver (connection refused) trips the breaker after BREAKER_FAILURES
    attempts: the Space's other deliveries stay due, unclaimed and unattempted, until the
    pause is over."""
    space = make_space(pg_url)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    created = datetime.now(UTC)
    await due_deliveries(pg_url, space, f"http://127.0.0.1:{closed}/hooks", 20, created)
    wall = [created]
    db = Database(pg_url)
    await trio.to_thread.run_sync(db.open)

    def attempted() -> int:
        return sum(row[1] for row in deliveries(pg_url, space.space.id))

    try:
        dispatcher = WebhookDispatcher(db, clock=lambda: wall[0], batch=BREAKER_FAILURES)
        async with httpx.AsyncClient() as client:
            await dispatcher.run_once(client)
            assert attempted() == BREAKER_FAILURES
            wall[0] += timedelta(seconds=5)
            for _ in range(3):  # paused: nothing of this Space is claimed
                await dispatcher.run_once(client)
            assert attempted() == BREAKER_FAILURES
            statuses = {row[0] for row in deliveries(pg_url, space.space.id)}
            assert statuses == {"pending", "retrying"}
            wall[0] += timedelta(seconds=30)  # the pause is over: tried again
            await dispatcher.run_once(client)
            assert attempted() > BREAKER_FAILURES
    finally:
        await trio.to_thread.run_sync(db.close)


async def test_an_adjustment_announces_every_documented_field(runtime, api, space, pg_url):
    """``adjustment.created``'s data: the fields docs/api.md lists, ``created_at`` too."""
    await activate_demo(runtime.db, runtime.programs, space.space.id)
    with psycopg.connect(pg_url) as conn:  # deliveries to a closed port: only their bodies
        admin.set_webhook(conn, space.slug, "http://127.0.0.1:9/hooks")
    body = {"user_id": "u", "wallet": "points", "amount": 5, "reason": "goodwill",
            "transaction_id": "adj-1", "actor": "ann"}  # fmt: skip
    with trio.fail_after(10):
        while (await api.get("/v1/program")).body["integration"]["webhook"]["status"] == (
            "not_configured"
        ):
            await trio.sleep(0.05)  # the endpoint reaches the runtime by notification
    await api.post("/v1/identify", {"user_id": "u", "traits": {}})  # adjustments need a profile
    answer = await api.post("/v1/admin/adjustments", body)
    assert answer.status == 200, answer.body
    with psycopg.connect(pg_url) as conn:
        [(text,)] = conn.execute(
            "SELECT body FROM webhook_deliveries WHERE space_id = %s AND event_type = %s",
            (space.space.id, "adjustment.created"),
        ).fetchall()
    data = json.loads(text)["data"]
    assert set(data) >= {"space", "user_id", "transaction_id", "adjustment_id", "wallet",
                         "amount", "reason", "actor", "counts_toward_level", "delta", "effects",
                         "wallet_state", "created_at"}  # fmt: skip
    assert (
        data["created_at"].endswith("Z") and data["adjustment_id"] == answer.body["adjustment_id"]
    )
