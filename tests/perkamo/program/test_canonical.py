"""Canonical JSON (docs/api.md (errors), defect D13): RFC 8785 with plain-notation decimals, so
checksums match an external computation, while hashes stored in the older form keep
matching their original requests."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import psycopg
import pytest

from perkamo.configuration import upgrade_checksums
from perkamo.program.canonical import canonical_json, legacy_canonical_json, request_hash


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (50, b"50"),
        (Decimal("5E+1"), b"50"),
        (Decimal("50.0"), b"50"),
        (Decimal("1.250"), b"1.25"),
        (Decimal("1e-7"), b"0.0000001"),
        (Decimal("-0"), b"0"),
        (Decimal("-0.50"), b"-0.5"),
        (Decimal("1e21"), b"1000000000000000000000"),
        ({"b": [1, {"d": None, "c": True}], "a": "x"}, b'{"a":"x","b":[1,{"c":true,"d":null}]}'),
        (
            '\u0000\b\t\n\f\r\u001f"\\/\u007f\u2028é',
            b'"\\u0000\\b\\t\\n\\f\\r\\u001f\\"\\\\/\x7f\xe2\x80\xa8\xc3\xa9"',
        ),
    ],
)
def test_canonical_form(value, expected):
    assert canonical_json(value) == expected


def test_keys_sort_by_utf16_code_units_as_rfc_8785_shows():
    """RFC 8785 §3.2.3's example: U+1F600 (a surrogate pair D83D DE00) sorts before U+FB33,
    although its code point is larger."""
    value = {
        "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }  # fmt: skip
    keys = list(__import__("json").loads(canonical_json(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


async def test_a_checksum_matches_an_external_computation(api):
    body = {"wallets": [{"name": "P", "key": "p", "precision": 2}], "rewards": []}
    answer = await api.post("/v1/admin/config/wallets", {"version": "v1", "body": body})
    external = b'{"rewards":[],"wallets":[{"key":"p","name":"P","precision":2}]}'
    assert answer.body["checksum"] == hashlib.sha256(external).hexdigest()
    cheap = {"wallets": [{"key": "p", "name": "P"}], "rewards": [{"key": "r", "name": "R", "cost": {"wallet": "p", "amount": 50}, "effect": {"type": "t"}}]}  # fmt: skip
    answer = await api.post("/v1/admin/config/wallets", {"version": "v2", "body": cheap})
    text = b'{"rewards":[{"cost":{"amount":50,"wallet":"p"},"effect":{"type":"t"},"key":"r","name":"R"}],"wallets":[{"key":"p","name":"P"}]}'
    assert answer.body["checksum"] == hashlib.sha256(text).hexdigest()


async def test_hashes_stored_in_the_older_form_keep_matching(api, space, pg_url):
    event = {"user_id": "u", "event": "e", "transaction_id": "old-1", "context": {"amount": 50}}
    first = await api.post("/v1/events", event)
    body = {"wallets": [{"key": "p", "name": "P"}], "rewards": [{"key": "r", "name": "R", "cost": {"wallet": "p", "amount": 50}, "effect": {"type": "t"}}]}  # fmt: skip
    await api.post("/v1/admin/config/wallets", {"version": "v1", "active": False, "body": body})
    # As a server before form 2 wrote them: 50 as 5E+1 inside every hash.
    old_event_hash = request_hash("u", "e", {"amount": 50}, form=1)
    assert old_event_hash != request_hash("u", "e", {"amount": 50})
    old_sum = hashlib.sha256(legacy_canonical_json(body)).hexdigest()
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "UPDATE events SET request_hash = %s, hash_form = 1 WHERE space_id = %s",
            (old_event_hash, space.space.id),
        )
        conn.execute(
            "UPDATE config_versions SET checksum = %s, checksum_form = 1 WHERE space_id = %s",
            (old_sum, space.space.id),
        )
    raw = b'{"user_id": "u", "event": "e", "transaction_id": "old-1", "context": {"amount": 50.0}}'
    retry = await api.post("/v1/events", data=raw, headers={"content-type": "application/json"})
    assert retry.body == {**first.body, "duplicate": True}
    changed = await api.post("/v1/events", {**event, "context": {"amount": 51}})
    assert (changed.status, changed.body["error"]) == (400, "idempotency_conflict")
    again = await api.post(
        "/v1/admin/config/wallets", {"version": "v1", "active": False, "body": body}
    )
    assert again.status == 200, again.body  # the same body: a no-op, not version_conflict
    with psycopg.connect(pg_url) as conn:
        assert upgrade_checksums(conn) >= 1
    described = await api.get("/v1/admin/config/wallets")
    assert (
        described.body["versions"][0]["checksum"]
        == hashlib.sha256(canonical_json(body)).hexdigest()
    )
