"""The internal protocol between members: length-prefixed JSON frames (msgspec; exact
decimals both ways), a challenge-response handshake with the cluster secret, then requests
(a profile's message) and responses (its answer), matched by id and multiplexed on one
persistent connection per pair of members."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any

import msgspec
import trio

from perkamo.errors import Code, PerkamoError
from perkamo.profiles import (
    Adjust,
    Answer,
    Identify,
    IdentifyResult,
    Ingest,
    Message,
    ProfileView,
    Read,
    Redeem,
    Reverse,
)
from perkamo.profiles.answers import (
    AdjustResponse,
    EventOutcome,
    RedeemResponse,
    ReverseResponse,
)

MAX_FRAME = 16 * 1024 * 1024
_encoder = msgspec.json.Encoder(decimal_format="number")


class Challenge(msgspec.Struct, tag="challenge"):
    nonce: str


class Hello(msgspec.Struct, tag="hello"):
    member: str
    proof: str  # HMAC-SHA256(secret, nonce), hex


class Welcome(msgspec.Struct, tag="welcome"):
    member: str


class Request(msgspec.Struct, tag="request"):
    id: int
    space_id: int
    user_id: str
    kind: str  # the message's class name
    message: msgspec.Raw
    seconds: float  # what is left of the caller's deadline


class Response(msgspec.Struct, tag="response"):
    id: int
    kind: str  # the answer's kind (see _ANSWERS), or "error"
    answer: msgspec.Raw


Frame = Challenge | Hello | Welcome | Request | Response
_frames = msgspec.json.Decoder(Frame, float_hook=Decimal)


def proof(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), nonce.encode(), hashlib.sha256).hexdigest()


def proof_matches(secret: str, nonce: str, given: str) -> bool:
    """Constant-time; compared as bytes, because ``hmac.compare_digest`` raises TypeError
    for a str holding anything but ASCII (an unauthenticated peer's "proof" once ended the
    process that way)."""
    return hmac.compare_digest(proof(secret, nonce).encode(), given.encode("utf-8", "replace"))


class WireError(msgspec.Struct):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None
    headers: dict[str, str] = {}


_MESSAGES: dict[str, type] = {
    t.__name__: t for t in (Ingest, Identify, Redeem, Adjust, Reverse, Read)
}
_ANSWER_TYPES: dict[str, Any] = {
    "event": EventOutcome,
    "redemption": RedeemResponse,
    "adjustment": AdjustResponse,
    "reversal": ReverseResponse,
    "identify": IdentifyResult,
    "profile": ProfileView,
    "error": WireError,
}
_decoders = {
    name: msgspec.json.Decoder(shape, float_hook=Decimal)
    for name, shape in {**_MESSAGES, **_ANSWER_TYPES}.items()
}


_KINDS: dict[type, str] = {
    EventOutcome: "event",
    RedeemResponse: "redemption",
    AdjustResponse: "adjustment",
    ReverseResponse: "reversal",
    IdentifyResult: "identify",
    ProfileView: "profile",
}


def encode_message(message: Message) -> tuple[str, msgspec.Raw]:
    return type(message).__name__, msgspec.Raw(_encoder.encode(message))


def decode_message(kind: str, raw: msgspec.Raw) -> Message:
    if kind not in _MESSAGES:
        raise ValueError(f"unknown message kind {kind!r}")
    return _decoders[kind].decode(raw)  # type: ignore[no-any-return]


def encode_answer(answer: Answer) -> tuple[str, msgspec.Raw]:
    """An answer for the wire. An applied write's answer is already JSON (msgspec.Raw)."""
    if isinstance(answer, msgspec.Raw):
        return "raw", answer
    if answer is None:
        return "none", msgspec.Raw(b"null")
    if isinstance(answer, PerkamoError):
        wire = WireError(answer.code.value, str(answer), answer.details, dict(answer.headers))
        return "error", msgspec.Raw(_encoder.encode(wire))
    kind = _KINDS[type(answer)]
    return kind, msgspec.Raw(_encoder.encode(answer))


def decode_answer(kind: str, raw: msgspec.Raw) -> Answer:
    if kind == "raw":
        return msgspec.Raw(bytes(raw))
    if kind == "none":
        return None
    value = _decoders[kind].decode(raw)
    if isinstance(value, WireError):
        code = next((c for c in Code if c.value == value.code), Code.INTERNAL_ERROR)
        return PerkamoError(code, value.message, details=value.details, headers=value.headers)
    return value  # type: ignore[no-any-return]


def encode_frame(frame: Frame) -> bytes:
    body = _encoder.encode(frame)
    return len(body).to_bytes(4, "big") + body


async def send(stream: trio.abc.SendStream, frame: Frame) -> None:
    await stream.send_all(encode_frame(frame))


class FrameReader:
    """Frames from a byte stream (None at a clean end of stream)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def next(self) -> Frame | None:
        while True:
            if len(self._buffer) >= 4:
                size = int.from_bytes(self._buffer[:4], "big")
                if size > MAX_FRAME:
                    raise ValueError("frame too large")
                if len(self._buffer) >= 4 + size:
                    body = bytes(self._buffer[4 : 4 + size])
                    del self._buffer[: 4 + size]
                    frame: Frame = _frames.decode(body)
                    return frame
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                if self._buffer:
                    raise ValueError("the stream ended inside a frame")
                return None
            self._buffer += chunk
