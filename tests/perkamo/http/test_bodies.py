"""The event routes' one-pass typed decode must agree with the two-phase path it shortcuts:
whatever it accepts, the two phases accept with the same result; whatever it refuses, they
refuse (and find the documented error)."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from perkamo.errors import PerkamoError
from perkamo.http.bodies import EventBody, TypedBatch, decode_json, event_input, typed

_fast_event = typed(EventBody)
_fast_batch = typed(TypedBatch)

_text = st.one_of(
    st.sampled_from(["u-1", "purchase.completed", "", "a\n", "tx 1", "\x00", "é" * 3]),
    st.text(max_size=6),
)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), _text,
    st.sampled_from(["1e2", "1.50", "1e999999", "-0.0"]).map(lambda n: json.loads(n)),
)  # fmt: skip
_value = st.recursive(
    _scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3)
)
_body = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.one_of(_text, _value),
        "event": st.one_of(_text, _value),
        "transaction_id": st.one_of(_text, _value),
        "context": _value,
        "occurred_at": st.one_of(
            st.sampled_from(["2026-06-01T10:00:00Z", "2026-06-01", "x"]), _value
        ),
        "tenant": st.one_of(_text, _value),
        "surplus": _value,
    },
)


def _two_phase(raw: bytes) -> object:
    try:
        return event_input(decode_json(raw))
    except PerkamoError as exc:
        return exc.code


@settings(max_examples=400, deadline=None)
@given(_body)
def test_the_fast_event_decode_agrees_with_the_two_phases(body):
    raw = json.dumps(body).encode()
    fast = _fast_event(raw)
    if fast is None:
        assert not isinstance(_two_phase(raw), msgspec.Struct) or _has_nul(raw)
        return
    slow = _two_phase(raw)
    try:
        quick: object = event_input(fast, body_size=len(raw))
    except PerkamoError as exc:
        quick = exc.code
    assert quick == slow


@settings(max_examples=200, deadline=None)
@given(st.lists(_body, max_size=3))
def test_a_batch_decodes_fast_only_when_every_item_would(items):
    raw = json.dumps({"events": items}).encode()
    fast = _fast_batch(raw)
    each = [_fast_event(json.dumps(item).encode()) for item in items]
    assert (fast is not None) == all(e is not None for e in each)


def _has_nul(raw: bytes) -> bool:
    return b"\\u0000" in raw
