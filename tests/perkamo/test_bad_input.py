"""Ugly input: each case gets its documented status and stable code, never a 500."""

from __future__ import annotations

import msgspec
import pytest

E = {"user_id": "u", "event": "app.opened", "transaction_id": "t"}


def enc(value: object) -> bytes:
    return msgspec.json.encode(value)


def deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


JSON = {"content-type": "application/json"}

# (id, method, path, raw body, extra headers, status, code, detail path or None)
CASES = [
    # Found by schemathesis: a NUL in any field (here a config version) reached PostgreSQL.
    (
        "config-version-nul",
        "POST",
        "/v1/admin/config/wallets",
        enc({"version": "v\u00001", "body": {}}),
        JSON,
        400,
        "validation_error",
        "version",
    ),
    (
        "event-nul-deep-in-batch",
        "POST",
        "/v1/events:batch",
        enc({"events": [{**E, "context": {"a": {"b": ["\u0000"]}}}]}),
        JSON,
        400,
        "validation_error",
        "events[0].context.a.b[0]",
    ),
    (
        "identify-user-id-trailing-newline",
        "POST",
        "/v1/identify",
        enc({"user_id": "ab\n"}),
        JSON,
        400,
        "validation_error",
        "user_id",
    ),
    (
        "identify-many-traits",
        "POST",
        "/v1/identify",
        enc({"user_id": "u", "traits": {f"t{i}": i for i in range(5000)}}),
        JSON,
        400,
        "validation_error",
        "traits",
    ),
    (
        "event-long-string-in-context",
        "POST",
        "/v1/events",
        enc({**E, "context": {"note": "x" * 20000}}),
        JSON,
        400,
        "validation_error",
        "context",
    ),
    (
        "event-huge-number",
        "POST",
        "/v1/events",
        b'{"user_id":"u","event":"e","transaction_id":"t","context":{"n":1e999999}}',
        JSON,
        400,
        "validation_error",
        None,
    ),
    (
        "event-long-mantissa",
        "POST",
        "/v1/events",
        b'{"user_id":"u","event":"e","transaction_id":"t","context":{"n":1.' + b"1" * 200 + b"}}",
        JSON,
        400,
        "validation_error",
        None,
    ),
    (
        "event-deep-raw-nesting",
        "POST",
        "/v1/events",
        b'{"user_id":"u","context":' + b"[" * 100000 + b"]" * 100000 + b"}",
        JSON,
        400,
        None,
        None,
    ),
    (
        "event-lone-surrogate",
        "POST",
        "/v1/events",
        b'{"user_id":"\\ud800","event":"e","transaction_id":"t"}',
        JSON,
        400,
        "invalid_json",
        None,
    ),
    ("event-bom", "POST", "/v1/events", b"\xef\xbb\xbf" + enc(E), JSON, 400, "invalid_json", None),
    (
        "profile-empty-query-tenant",
        "GET",
        "/v1/profile/u?tenant=",
        b"",
        {},
        403,
        "tenant_mismatch",
        None,
    ),
    (
        "program-other-space-query",
        "GET",
        "/v1/program?space=someone-else",
        b"",
        {},
        403,
        "tenant_mismatch",
        None,
    ),
    (
        "identify-user-id-int",
        "POST",
        "/v1/identify",
        enc({"user_id": 5}),
        JSON,
        400,
        "validation_error",
        "user_id",
    ),
    (
        "identify-user-id-missing",
        "POST",
        "/v1/identify",
        enc({"traits": {}}),
        JSON,
        400,
        "validation_error",
        "user_id",
    ),
    (
        "identify-user-id-empty",
        "POST",
        "/v1/identify",
        enc({"user_id": ""}),
        JSON,
        400,
        "validation_error",
        "user_id",
    ),
    (
        "identify-user-id-long",
        "POST",
        "/v1/identify",
        enc({"user_id": "x" * 257}),
        JSON,
        400,
        "validation_error",
        "user_id",
    ),
    (
        "identify-user-id-newline",
        "POST",
        "/v1/identify",
        enc({"user_id": "a\nb"}),
        JSON,
        400,
        "validation_error",
        "user_id",
    ),
    (
        "identify-user-id-nul",
        "POST",
        "/v1/identify",
        enc({"user_id": "a\u0000b"}),
        JSON,
        400,
        "validation_error",
        "user_id",
    ),
    (
        "identify-user-id-c1-control",
        "POST",
        "/v1/identify",
        enc({"user_id": "a\u0085b"}),
        JSON,
        400,
        "validation_error",
        "user_id",
    ),
    (
        "identify-traits-string",
        "POST",
        "/v1/identify",
        enc({"user_id": "u", "traits": "x"}),
        JSON,
        400,
        "validation_error",
        "traits",
    ),
    (
        "identify-traits-list",
        "POST",
        "/v1/identify",
        enc({"user_id": "u", "traits": [1]}),
        JSON,
        400,
        "validation_error",
        "traits",
    ),
    (
        "identify-traits-huge",
        "POST",
        "/v1/identify",
        enc({"user_id": "u", "traits": {"a": "x" * 17000}}),
        JSON,
        400,
        "validation_error",
        "traits",
    ),
    (
        "identify-traits-nul-key",
        "POST",
        "/v1/identify",
        enc({"user_id": "u", "traits": {"a\u0000": 1}}),
        JSON,
        400,
        "validation_error",
        "traits",
    ),
    (
        "identify-traits-nul-value",
        "POST",
        "/v1/identify",
        enc({"user_id": "u", "traits": {"a": ["\u0000"]}}),
        JSON,
        400,
        "validation_error",
        "traits.a[0]",
    ),
    (
        "identify-tenant-int",
        "POST",
        "/v1/identify",
        enc({"user_id": "u", "tenant": 7}),
        JSON,
        400,
        "validation_error",
        "tenant",
    ),
    (
        "identify-array-body",
        "POST",
        "/v1/identify",
        enc([1, 2]),
        JSON,
        400,
        "validation_error",
        None,
    ),
    (
        "identify-string-body",
        "POST",
        "/v1/identify",
        enc("hello"),
        JSON,
        400,
        "validation_error",
        None,
    ),
    ("identify-empty-body", "POST", "/v1/identify", b"", JSON, 400, "invalid_json", None),
    (
        "identify-invalid-json",
        "POST",
        "/v1/identify",
        b'{"user_id": ',
        JSON,
        400,
        "invalid_json",
        None,
    ),
    (
        "identify-nan",
        "POST",
        "/v1/identify",
        b'{"user_id": "u", "traits": {"a": NaN}}',
        JSON,
        400,
        "invalid_json",
        None,
    ),
    (
        "identify-infinity",
        "POST",
        "/v1/identify",
        b'{"user_id": "u", "traits": {"a": Infinity}}',
        JSON,
        400,
        "invalid_json",
        None,
    ),
    (
        "identify-invalid-utf8",
        "POST",
        "/v1/identify",
        b'{"user_id": "\xff\xfe"}',
        JSON,
        400,
        "invalid_json",
        None,
    ),
    (
        "identify-deep-nesting",
        "POST",
        "/v1/identify",
        b"[" * 100000 + b"]" * 100000,
        JSON,
        400,
        "validation_error",
        None,
    ),
    (
        "identify-text-plain",
        "POST",
        "/v1/identify",
        enc({"user_id": "u"}),
        {"content-type": "text/plain"},
        415,
        "unsupported_media_type",
        None,
    ),
    (
        "identify-form",
        "POST",
        "/v1/identify",
        b"user_id=u",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
        None,
    ),
    (
        "identify-huge-body",
        "POST",
        "/v1/identify",
        enc({"user_id": "u", "traits": {"a": "x" * (1024 * 1024)}}),
        JSON,
        413,
        "payload_too_large",
        None,
    ),
    (
        "event-missing-transaction",
        "POST",
        "/v1/events",
        enc({"user_id": "u", "event": "e"}),
        JSON,
        400,
        "validation_error",
        "transaction_id",
    ),
    (
        "event-long-transaction",
        "POST",
        "/v1/events",
        enc({**E, "transaction_id": "t" * 257}),
        JSON,
        400,
        "validation_error",
        "transaction_id",
    ),
    (
        "event-name-with-space",
        "POST",
        "/v1/events",
        enc({**E, "event": "app opened"}),
        JSON,
        400,
        "validation_error",
        "event",
    ),
    (
        "event-name-with-tab",
        "POST",
        "/v1/events",
        enc({**E, "event": "app\topened"}),
        JSON,
        400,
        "validation_error",
        "event",
    ),
    (
        "event-name-long",
        "POST",
        "/v1/events",
        enc({**E, "event": "e" * 129}),
        JSON,
        400,
        "validation_error",
        "event",
    ),
    (
        "event-context-string",
        "POST",
        "/v1/events",
        enc({**E, "context": "x"}),
        JSON,
        400,
        "validation_error",
        "context",
    ),
    (
        "event-context-too-deep",
        "POST",
        "/v1/events",
        enc({**E, "context": deep(9)}),
        JSON,
        400,
        "validation_error",
        None,
    ),
    (
        "event-context-too-big",
        "POST",
        "/v1/events",
        enc({**E, "context": {"k": "v" * 16400}}),
        JSON,
        400,
        "validation_error",
        "context",
    ),
    (
        "event-reserved-key",
        "POST",
        "/v1/events",
        enc({**E, "context": {"XP": 5}}),
        JSON,
        400,
        "reserved_context_key",
        "context.XP",
    ),
    (
        "event-reserved-wallets",
        "POST",
        "/v1/events",
        enc({**E, "context": {"wallets": {}}}),
        JSON,
        400,
        "reserved_context_key",
        "context.wallets",
    ),
    (
        "event-occurred-at-no-zone",
        "POST",
        "/v1/events",
        enc({**E, "occurred_at": "2026-06-01T10:00:00"}),
        JSON,
        400,
        "validation_error",
        "occurred_at",
    ),
    (
        "event-occurred-at-leap",
        "POST",
        "/v1/events",
        enc({**E, "occurred_at": "2026-06-30T23:59:60Z"}),
        JSON,
        400,
        "validation_error",
        "occurred_at",
    ),
    (
        "event-occurred-at-feb-30",
        "POST",
        "/v1/events",
        enc({**E, "occurred_at": "2026-02-30T10:00:00Z"}),
        JSON,
        400,
        "validation_error",
        "occurred_at",
    ),
    (
        "event-occurred-at-number",
        "POST",
        "/v1/events",
        enc({**E, "occurred_at": 1700000000}),
        JSON,
        400,
        "validation_error",
        "occurred_at",
    ),
    (
        "event-occurred-at-future",
        "POST",
        "/v1/events",
        enc({**E, "occurred_at": "2999-01-01T00:00:00Z"}),
        JSON,
        400,
        "occurred_at_in_future",
        "occurred_at",
    ),
    ("batch-not-object", "POST", "/v1/events:batch", enc([E]), JSON, 400, "validation_error", None),
    (
        "batch-events-not-list",
        "POST",
        "/v1/events:batch",
        enc({"events": {}}),
        JSON,
        400,
        "validation_error",
        "events",
    ),
    (
        "batch-empty",
        "POST",
        "/v1/events:batch",
        enc({"events": []}),
        JSON,
        400,
        "batch_empty",
        None,
    ),
    (
        "batch-too-large",
        "POST",
        "/v1/events:batch",
        enc({"events": [E] * 101}),
        JSON,
        400,
        "batch_too_large",
        None,
    ),
    (
        "profile-id-too-long",
        "GET",
        "/v1/profile/" + "x" * 257,
        b"",
        {},
        400,
        "validation_error",
        "user_id",
    ),
    ("profile-id-control", "GET", "/v1/profile/a%0Ab", b"", {}, 400, "validation_error", "user_id"),
    (
        "profile-id-bad-utf8",
        "GET",
        "/v1/profile/%FF%FE",
        b"",
        {},
        400,
        "validation_error",
        "user_id",
    ),
    ("profile-unknown", "GET", "/v1/profile/nobody-here", b"", {}, 404, "profile_not_found", None),
    (
        "customer-unknown",
        "GET",
        "/v1/customer/nobody-here",
        b"",
        {},
        404,
        "profile_not_found",
        None,
    ),
    ("unknown-route", "GET", "/v1/unknown", b"", {}, 404, "not_found", None),
    ("unknown-version", "POST", "/v2/events", enc(E), JSON, 404, "not_found", None),
    ("trailing-slash", "POST", "/v1/events/", enc(E), JSON, 404, "not_found", None),
    ("profile-without-id", "GET", "/v1/profile/", b"", {}, 404, "not_found", None),
    ("wrong-method-events", "GET", "/v1/events", b"", {}, 405, "method_not_allowed", None),
    (
        "wrong-method-profile",
        "POST",
        "/v1/profile/u",
        enc({}),
        JSON,
        405,
        "method_not_allowed",
        None,
    ),
    ("wrong-method-patch", "PATCH", "/v1/identify", enc({}), JSON, 405, "method_not_allowed", None),
    ("browser-tokens", "POST", "/v1/browser-tokens", enc({}), JSON, 501, "not_supported", None),
    ("client-preview", "GET", "/v1/client/profile", b"", {}, 501, "not_supported", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code", "detail"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_bad_input(api, method, path, body, headers, status, code, detail):
    answer = await api.request(method, path, data=body or None, headers=headers)
    assert answer.status == status, answer.body
    if code is not None:
        assert answer.body["error"] == code
    assert isinstance(answer.body["message"], str) and answer.body["message"]
    assert "Traceback" not in answer.body["message"] and "SELECT" not in answer.body["message"]
    assert answer.headers["content-type"] == "application/json"
    if detail is not None:
        assert answer.body["details"][0]["path"] == detail
    if status == 405:
        assert answer.headers["allow"]


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "application/vnd.api+json"],
)
async def test_json_content_types_are_accepted(api, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    answer = await api.request("POST", "/v1/identify", data=enc({"user_id": "u"}), headers=headers)
    assert answer.status == 200, answer.body


@pytest.mark.parametrize("empty", [None, [], {}])
async def test_empty_traits_and_context_forms(api, empty):
    assert (await api.post("/v1/identify", {"user_id": "u", "traits": empty})).status == 200
    answer = await api.post("/v1/events", {**E, "transaction_id": f"t-{empty!r}", "context": empty})
    assert answer.status == 200, answer.body


async def test_limits_at_the_edge_are_accepted(api):
    assert (await api.post("/v1/identify", {"user_id": "x" * 256})).status == 200
    assert (await api.post("/v1/identify", {"user_id": "ü" * 256})).status == 200  # code points
    edge = {**E, "event": "e" * 128, "transaction_id": "t" * 256, "context": deep(8)}
    assert (await api.post("/v1/events", edge)).status == 200
    ok_time = {**E, "transaction_id": "t2", "occurred_at": "2026-06-04T12:00:00.123456789+02:00"}
    assert (await api.post("/v1/events", ok_time)).status == 200


async def test_unknown_fields_are_ignored_and_duplicate_keys_take_the_last(api):
    body = b'{"user_id": "first", "user_id": "dup", "traits": {"a": 1, "a": 2}, "future": true}'
    answer = await api.request("POST", "/v1/identify", data=body, headers=JSON)
    assert answer.status == 200
    assert answer.body["user_id"] == "dup"
    assert answer.body["traits"] == {"a": 2}
