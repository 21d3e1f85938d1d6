"""``GET /openapi.json`` is generated from the route table and the msgspec types; every route
is in it, and (tests/conftest.py) every response the suite sees conforms to it."""

from __future__ import annotations

import msgspec
import pytest

from perkamo.http import openapi
from perkamo.http.responses import EventOutcome, ProfileDocument
from perkamo.http.routes import build_router


async def test_every_route_is_documented_and_nothing_else(api):
    answer = await api.get("/openapi.json", key=None)
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    doc = answer.body
    assert doc["openapi"] == "3.1.0"
    routes = {(openapi.template(r.pattern), r.method.lower()) for r in build_router().routes}
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert routes == documented
    assert ("/v1/events:batch", "post") in documented
    assert ("/openapi.json", "get") in documented


async def test_operations_carry_scopes_bodies_and_errors(api):
    doc = (await api.get("/openapi.json", key=None)).body
    events = doc["paths"]["/v1/events"]["post"]
    assert events["security"] == [{"apiKey": []}]
    assert "events:write" in events["description"]
    body = events["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/EventBody"}
    assert set(events["responses"]) >= {"200", "400", "401", "403", "413", "415", "429", "503"}
    assert events["responses"]["503"]["headers"]["retry-after"]["required"] is True
    schemas = doc["components"]["schemas"]
    user_id = schemas["EventBody"]["properties"]["user_id"]
    assert (user_id["minLength"], user_id["maxLength"]) == (1, 256)
    assert schemas["Delta"]["properties"]["amount"] == {"type": "number"}
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    upload = schemas["ModuleUpload"]["properties"]["body"]["anyOf"]
    assert {"$ref": "#/components/schemas/WalletsModule"} in upload
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                assert response["headers"]["x-perkamo-request-id"]["required"], (path, status)
            if operation["security"]:
                assert {"401", "403", "429", "503"} <= set(operation["responses"]), (path, method)


def test_response_types_refuse_undeclared_fields():
    """The strictness conforms() relies on: a field the server adds without declaring it
    in responses.py fails every test that sees it."""
    outcome = {
        "applied": True,
        "duplicate": False,
        "delta": [{"wallet": "points", "amount": 1.5}],
        "leveled_up": False,
        "unlocked": [],
        "wallet_state": {"points": 1.5},
        "level": None,
        "event_id": "evt_1",
        "skipped": [],
        "breakdown": [],
        "program_versions": {"events": "v1"},
    }
    msgspec.convert(outcome, EventOutcome)
    with pytest.raises(msgspec.ValidationError, match="surprise"):
        msgspec.convert({**outcome, "surprise": 1}, EventOutcome)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"tenant": "t"}, ProfileDocument)


def test_published_event_pattern_is_exactly_whitespace_and_control_characters():
    """The regex published for event names (ECMA syntax) and enforced in Python refuses
    exactly whitespace (str.isspace()) and Unicode category Cc."""
    import re
    import unicodedata

    schema = openapi.document(build_router().routes)["components"]["schemas"]
    published = schema["EventBody"]["properties"]["event"]["pattern"]
    assert published.endswith("$")
    # ECMA's `$` is the end of input; Python's also matches before a final newline, which
    # wire._exact() refuses on the server (the bad-input table has that case).
    pattern = re.compile(published[:-1] + r"\Z")
    for code in range(0x110000):
        ch = chr(code)
        refused = ch.isspace() or unicodedata.category(ch) == "Cc"
        assert (pattern.search(ch) is None) == refused, hex(code)


def test_every_code_of_the_registry_is_in_the_document():
    """Every error code a client can meet is named in /openapi.json (405 and 500 too)."""
    from perkamo.errors import Code

    doc = msgspec.json.encode(openapi.document(build_router().routes)).decode()
    missing = [code.value for code in Code if code.value not in doc]
    assert missing == []


def test_every_handler_answers_the_type_its_route_declares():
    """A route's declared answer (and body) is the handler's own annotation: the OpenAPI
    document cannot drift from what the code returns."""
    import typing

    from perkamo.http.client_edge import ClientCall, StreamBody
    from perkamo.http.edge import Call, RawBody, Result

    for route in build_router().routes:
        hints = typing.get_type_hints(route.handler)
        answer = typing.get_args(hints["return"])[0]
        if route.response == "text/event-stream":  # a live stream (docs/api.md "The browser half")
            assert answer is StreamBody, route.pattern
        elif isinstance(route.response, str):  # a page, a file or a text format
            assert answer is RawBody, route.pattern
        else:
            assert hints["return"] == Result[route.response], route.pattern
        if route.scope is not None or route.client is not None:
            (parameter,) = [v for k, v in hints.items() if k != "return"]
            expected = Call if route.scope is not None else ClientCall
            assert typing.get_origin(parameter) is expected, route.pattern
            body = typing.get_args(parameter)[0]
            declared = type(None) if route.request is None else route.request
            assert declared == body or declared in typing.get_args(body), route.pattern
