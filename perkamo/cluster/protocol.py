"""The internal protocol between members: length-prefixed JSON frames (msgspec; exact
decimals both ways), a challenge-response handshake with the cluster secret, then requests
(a profile's message) and responses (its answer), matched by id and multiplexed on one
persistent connection per pair of members; and the subscriptions of live streams to the
profiles a member owns (subscribe, then pushed changes). Requests and responses travel many
to a frame (``Requests``, ``Responses``: whatever was ready when the link's writer woke), so
a frame's fixed costs — a header, a decode, a wake-up — are paid per batch, not per
message. Frames are a tagged union: a new kind of frame is one more tagged Struct in
``Frame``."""

from __future__ import annotations

import functools
import hashlib
import hmac
from decimal import Decimal

import msgspec
import trio

from perkamo.errors import Code, PerkamoError
from perkamo.profiles.commands import Message
from perkamo.program.json_walk import JsonObject

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
    message: Message  # the command itself (a tagged union: decoded once, here)
    seconds: float  # what is left of the caller's deadline


class WireError(msgspec.Struct):
    """A refusal, by its code: the receiving member builds the error (and, at its edge,
    the headers) from the registry."""

    code: str
    message: str
    details: list[JsonObject] | None = None
    retry_after: int | None = None


class Response(msgspec.Struct, tag="response"):
    id: int
    answer: msgspec.Raw  # the command's answer (its ``answer_type``), encoded once
    error: WireError | None = None


class Subscribe(msgspec.Struct, tag="subscribe"):
    """A live stream on the sending member watches a profile this member owns."""

    id: int
    space_id: int
    user_id: str


class Unsubscribe(msgspec.Struct, tag="unsubscribe"):
    id: int


class Push(msgspec.Struct, tag="push"):
    """A committed change of a watched profile (its stream's ``event: change``)."""

    id: int
    version: int
    change: msgspec.Raw


class Resnapshot(msgspec.Struct, tag="resnapshot"):
    """Changes were dropped (the link fell behind): the stream sends a fresh profile."""

    id: int


class Ended(msgspec.Struct, tag="ended"):
    """The profile left this member (its shard moved): subscribe again where it is."""

    id: int


class Charge(msgspec.Struct, tag="charge"):
    """Take a token from a customer's browser bucket, which lives at the profile's owner."""

    id: int
    bucket: str
    per_second: float
    burst: int


class Charged(msgspec.Struct, tag="charged"):
    id: int
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int


class Requests(msgspec.Struct, tag="requests"):
    """Requests sent together (each answered on its own, by id)."""

    items: list[Request]


class Responses(msgspec.Struct, tag="responses"):
    """Answers ready together."""

    items: list[Response]


Frame = (
    Challenge | Hello | Welcome | Request | Response | Requests | Responses | Subscribe
    | Unsubscribe | Push | Resnapshot | Ended | Charge | Charged
)  # fmt: skip
_frames = msgspec.json.Decoder(Frame, float_hook=Decimal)


def proof(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), nonce.encode(), hashlib.sha256).hexdigest()


def proof_matches(secret: str, nonce: str, given: str) -> bool:
    """Constant-time; compared as bytes, because ``hmac.compare_digest`` raises TypeError
    for a str holding anything but ASCII (an unauthenticated peer's "proof" once ended the
    process that way)."""
    return hmac.compare_digest(proof(secret, nonce).encode(), given.encode("utf-8", "replace"))


def encode_answer(answer: object) -> Response:
    """An answer for the wire: a refusal by its code, anything else encoded once (a
    logged write's answer is already JSON inside ``Written``)."""
    if isinstance(answer, PerkamoError):
        wire = WireError(answer.code.value, answer.message, answer.details, answer.retry_after)
        return Response(0, msgspec.Raw(b"null"), wire)
    return Response(0, msgspec.Raw(_encoder.encode(answer)))


def decode_answer(response: Response, answer_type: object) -> object:
    """What ``encode_answer`` sent, as ``answer_type`` (the command's) or its refusal."""
    if response.error is not None:
        wire = response.error
        code = next((c for c in Code if c.value == wire.code), Code.INTERNAL_ERROR)
        return PerkamoError(code, wire.message, details=wire.details, retry_after=wire.retry_after)
    return _answers(answer_type).decode(response.answer)


@functools.cache
def _answers(answer_type: object) -> msgspec.json.Decoder[object]:
    return msgspec.json.Decoder(answer_type, float_hook=Decimal)


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
