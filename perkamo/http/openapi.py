"""``GET /openapi.json``: the OpenAPI 3.1 document, generated from the route table and the
msgspec types the server decodes requests with and answers in (wire.py, configuration.py,
responses.py, program/schema.py). Nothing here is maintained by hand but prose."""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from perkamo import __version__
from perkamo.errors import codes_by_status
from perkamo.http.bodies import UserId
from perkamo.http.responses import ErrorBody
from perkamo.http.router import Route
from perkamo.program.json_walk import JsonObject
from perkamo.program.schema import MODULE_TYPES

_REF = "#/components/schemas/{name}"
_DECIMAL = {"type": "string", "format": "decimal"}
_STATUS_TEXT = {
    400: "Malformed JSON, schema violation, limit exceeded or a business rule",
    401: "Missing, unknown or revoked API key; bad or missing signature; an invalid browser token",
    403: "The key lacks the scope, or the body names another Space; a browser call's origin, "
    "event, token purpose or customer is not allowed",
    404: "Unknown profile, module, version, back-test, redemption or path",
    405: "The path exists but not with this method (the `allow` header lists its methods)",
    408: "The request's head and body did not arrive within the read timeout",
    409: "A back-test is already running for this Space",
    413: "Body larger than 1 MiB",
    415: "A body whose content type is not JSON",
    429: "Rate limit or usage limit exceeded",
    431: "The request line and headers are larger than 16 KiB",
    500: "A defect on the server's side (never details, never for committed writes)",
    501: "A transfer coding other than chunked",
    503: "Overloaded, storage unavailable or outcome unknown: retry with the same ids",
    505: "The request's HTTP version is not spoken here",
}
_CODES = {status: ", ".join(codes) for status, codes in codes_by_status().items()}
_KEYED_ERRORS = (401, 403, 429, 503)
# What any request can meet before or around its route: the wrong method, a request that
# does not arrive in time, a head too large, a defect, an HTTP version not spoken.
_ANY_ERRORS = (405, 408, 431, 500, 505)
_PATH_PARAMS: dict[str, JsonObject] = {
    "user_id": msgspec.json.schema(UserId),
    "module": {"type": "string", "enum": list(MODULE_TYPES)},
}
_SIGNING = (
    "Mutating requests may be signed: `x-perkamo-timestamp: <unix seconds>` and "
    "`x-perkamo-signature: v1=<hex HMAC-SHA256 keyed with the API key over "
    "v1.<timestamp>.<METHOD>.<raw path>.<hex sha256 of the body>>`; a Space can require it."
)


def render(routes: Sequence[Route]) -> bytes:
    """The document for ``routes`` (router.Route), encoded as JSON."""
    return msgspec.json.encode(document(routes))


def document(routes: Sequence[Route]) -> JsonObject:
    types: list[type] = [ErrorBody, *MODULE_TYPES.values()]
    for route in routes:
        types += [
            t for t in (route.request, route.response) if isinstance(t, type) and _is_struct(t)
        ]
    types = list(dict.fromkeys(types))
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    _link_modules(components)
    paths: dict[str, JsonObject] = {}
    for route in routes:
        path = template(route.pattern)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, path)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Perkamo API (self-hosted engine)",
            "version": __version__,
            "description": "Wire-compatible with Perkamo's SDKs. " + _SIGNING,
        },
        "paths": paths,
        "components": {
            "schemas": _numbers(components),
            "securitySchemes": {
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-perkamo-api-key",
                    "description": "A Space's key; scopes are listed on each operation.",
                },
                "browserToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A browser token minted by POST /v1/browser-tokens.",
                },
                "streamToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "A stream token (purpose: stream): EventSource sends no "
                    "headers.",
                },
            },
        },
    }


def _is_struct(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, msgspec.Struct)


def template(pattern: str) -> str:
    """``/v1/client/*/*`` → ``/v1/client/{p1}/{p2}`` (a wildcard is one path segment)."""
    count = iter(range(1, 100))
    return re.sub(r"\*", lambda _: f"{{p{next(count)}}}", pattern)


def _operation(route: Route, path: str) -> JsonObject:
    operation: JsonObject = {
        "operationId": _operation_id(route.method, path),
        "summary": route.summary,
        "responses": _responses(route),
    }
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _PATH_PARAMS.get(name, {"type": "string", "minLength": 1}),
        }
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    if route.client is not None:
        scheme = "streamToken" if route.client == "stream" else "browserToken"
        operation["security"] = [{scheme: []}]
        operation["description"] = (
            f"A browser call: a browser token with the `{route.client}` capability, and CORS "
            "for the origins its browser key allows."
        )
    elif route.scope is not None:
        operation["security"] = [{"apiKey": []}]
        operation["description"] = f"Requires an API key with the `{route.scope}` scope."
        if route.method == "GET":
            parameters += [
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "description": "If given, must equal the key's Space slug (else 403).",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                }
                for name in ("tenant", "space")
            ]
    else:
        operation["security"] = []
    if parameters:
        operation["parameters"] = parameters
    if route.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.request)}},
        }
    return operation


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{method.lower()}_{words}"


def _responses(route: Route) -> JsonObject:
    request_id = {
        "x-perkamo-request-id": {
            "required": True,
            "description": "The request's id (the caller's `x-request-id` when sane).",
            "schema": {"type": "string"},
        }
    }
    answers: JsonObject = {}
    if route.response is not None:
        answers[str(route.success)] = {
            "description": "Accepted" if route.success == 202 else "OK",
            "headers": request_id,
            "content": _content(route.response),
        }
        fields = getattr(route.request, "__struct_fields__", ())
        if "user_id" in fields:
            # A write names a profile that can then be read (schemathesis' stateful phase
            # follows these links).
            answers[str(route.success)]["links"] = {
                "ReadProfile": {
                    "operationId": "get_v1_profile_user_id",
                    "parameters": {"user_id": "$request.body#/user_id"},
                }
            }
    statuses = set(route.errors) | set(_ANY_ERRORS)
    if "{" in route.pattern:  # a path parameter with control characters or bad escapes
        statuses.add(400)
    if route.scope is not None or route.client is not None:
        statuses |= set(_KEYED_ERRORS)
    for status in sorted(statuses):
        headers = dict(request_id)
        if status in (429, 503):
            headers["retry-after"] = {
                "required": True,
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        answers[str(status)] = {
            "description": f"{_STATUS_TEXT[status]}. Codes: {_CODES[status]}.",
            "headers": headers,
            "content": {"application/json": {"schema": _ref(ErrorBody)}},
        }
    return answers


def _content(shape: type | str | None) -> JsonObject:
    if isinstance(shape, str):  # a media type: a page or a file, not JSON (GET /docs)
        return {shape: {"schema": {"type": "string"}}}
    if shape is str:
        return {"text/plain": {"schema": {"type": "string"}}}
    if isinstance(shape, type) and _is_struct(shape):
        return {"application/json": {"schema": _ref(shape)}}
    return {"application/json": {"schema": {"type": "object"}}}


def _ref(shape: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=shape.__name__)}


def _link_modules(components: JsonObject) -> None:
    """An upload's ``body`` (and each entry of ``modules``) is one of the six module bodies;
    the server takes them as JSON objects and validates them with those Structs."""
    bodies = [_ref(t) for t in MODULE_TYPES.values()]
    components["ModuleUpload"]["properties"]["body"] = {"anyOf": bodies}
    components["ModulesUpload"]["properties"]["modules"] = {
        "type": "object",
        "minProperties": 1,
        "properties": {name: _ref(t) for name, t in MODULE_TYPES.items()},
        "additionalProperties": False,
    }


def _numbers(value: object) -> object:
    """Decimals travel as JSON numbers (the server encodes them so)."""
    if value == _DECIMAL:
        return {"type": "number"}
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value
