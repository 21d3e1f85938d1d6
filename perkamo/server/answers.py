"""Answers written below the app (by the connection code, not by a route): the JSON error
body docs/api.md (conventions) gives every error, and its headers."""

from __future__ import annotations

import msgspec

from perkamo.errors import PerkamoError
from perkamo.http.errors import error_body, new_request_id

_STATUS_TEXT = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}
_encoder = msgspec.json.Encoder()


def error_bytes(exc: PerkamoError) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The JSON error body and its headers; they close the connection (over HTTP/2 the
    ``connection`` header is dropped by the h2 library, and the stream is reset instead)."""
    request_id = new_request_id(None)
    body = _encoder.encode(error_body(exc, request_id))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"x-perkamo-request-id", request_id.encode()),
        *((k.encode(), v.encode()) for k, v in exc.headers.items()),
    ]
    return body, headers


def raw_response(exc: PerkamoError) -> bytes:
    """The whole HTTP/1.1 answer, for a socket no protocol object speaks on."""
    body, headers = error_bytes(exc)
    head = f"HTTP/1.1 {exc.status} {_STATUS_TEXT.get(exc.status, 'Error')}\r\n".encode()
    return head + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body
