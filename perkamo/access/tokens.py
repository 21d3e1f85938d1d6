"""Browser tokens (docs/api.md "The browser half"): EdDSA (Ed25519) JWTs signed and checked with
PyJWT, never hand-rolled JOSE.

The signing keys live in PostgreSQL (``storage/signing_keys.py``) and every member holds
them in a :class:`KeyRing`: one signing key per environment (a leaked test server key never
mints a token a live Space accepts), every live key published in the JWKS. The ring is
reloaded when a notification says the keys changed, at least every CACHE_RELOAD_SECONDS,
and on a token naming a key it does not know — at most once a second, so a flood of made-up
``kid``s never reaches storage more often.

Verification is strict: ``EdDSA`` only, ``aud`` the string ``perkamo:client``, ``iss``
checked, every claim required, 5 s of leeway.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import jwt
import msgspec
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from msgspec import Meta

from perkamo.errors import Code, PerkamoError
from perkamo.settings import CACHE_RELOAD_SECONDS
from storage import Database
from storage import signing_keys as store
from storage.signing_keys import SigningKey

AUDIENCE = "perkamo:client"
DEFAULT_ISSUER = "perkamo"
DEFAULT_TTL = 600
MAX_TTL = 1800
STREAM_MAX_TTL = 300  # a stream token travels in a URL: short-lived
LEEWAY = 5
SIGNING_DELAY = 600.0  # a rotated-in key is published this long before it signs
KEEP_VERIFYING = float(MAX_TTL)  # a retired key verifies until its last token expired
UNKNOWN_KID_RELOAD = 1.0  # at most one reload per second for an unknown key id
ENVIRONMENTS = ("test", "live")
PURPOSES = ("client", "stream")
REQUIRED = ["iss", "aud", "sub", "space", "bk", "ak", "purpose", "iat", "exp", "jti"]


_UserId = Annotated[str, Meta(min_length=1, max_length=256, pattern="^[^\\x00-\\x1f\\x7f-\\x9f]*$")]


class Claims(msgspec.Struct, frozen=True):
    """What a verified token says."""

    iss: str
    aud: str
    # A user id as the API takes one (1–256 code points, no control character): a token
    # signed with anything else is refused like a forged one, never passed to storage.
    sub: _UserId
    space: str
    bk: str
    ak: str
    purpose: str
    iat: int
    exp: int
    jti: str


def new_key_pair() -> tuple[str, bytes, bytes]:
    """(kid, raw private seed, raw public key) of a fresh Ed25519 key."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "sk-" + secrets.token_hex(8), seed, public


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class _Loaded:
    key: SigningKey
    private: Ed25519PrivateKey
    public: Ed25519PublicKey


class KeyRing:
    """The live signing keys of every environment, as this member holds them."""

    def __init__(self, db: Database, issuer: str = DEFAULT_ISSUER) -> None:
        self._db = db
        self.issuer = issuer
        self._keys: dict[str, _Loaded] = {}  # kid -> key
        self._loaded_at = -float("inf")
        self._stale = True
        self._last_unknown_reload = -float("inf")
        self._lock = trio.Lock()

    async def start(self) -> None:
        """Make sure each environment has a key (race-free across members), then load."""
        for environment in ENVIRONMENTS:
            kid, private, public = new_key_pair()
            await self._db.run(store.ensure_first, environment, kid, private, public)
        await self.reload()

    def forget(self) -> None:
        """The keys changed elsewhere (a notification): reload before the next use."""
        self._stale = True

    async def reload(self) -> None:
        async with self._lock:
            rows = await self._db.run(store.live_keys)
            keys = {}
            for row in rows:
                private = Ed25519PrivateKey.from_private_bytes(row.private_key)
                keys[row.kid] = _Loaded(row, private, private.public_key())
            self._keys, self._stale = keys, False
            self._loaded_at = trio.current_time()

    async def _fresh(self) -> None:
        if self._stale or trio.current_time() - self._loaded_at > CACHE_RELOAD_SECONDS:
            await self.reload()

    async def signing_key(self, environment: str) -> tuple[str, Ed25519PrivateKey]:
        """The key that signs for ``environment`` now: the newest already signing."""
        await self._fresh()
        best = self._signing(environment)
        if best is None:  # every key of the environment retired (by hand): make one
            await self.start()
            best = self._signing(environment, any_live=True)
        if best is None:
            raise PerkamoError(Code.STORAGE_UNAVAILABLE, "No signing key is available; retry.")
        return best.key.kid, best.private

    def _signing(self, environment: str, *, any_live: bool = False) -> _Loaded | None:
        now = datetime.now(UTC)
        candidates = [
            k for k in self._keys.values()
            if k.key.environment == environment and (any_live or k.key.signs_from <= now)
            and (k.key.retired_at is None or k.key.retired_at > now)
        ]  # fmt: skip
        return max(candidates, key=lambda k: (k.key.signs_from, k.key.kid), default=None)

    async def verifying_key(self, kid: str) -> tuple[str, Ed25519PublicKey] | None:
        """(environment, public key) of a live key, reloading for an unknown ``kid`` at
        most once a second."""
        await self._fresh()
        found = self._keys.get(kid)
        now = trio.current_time()
        if found is None and now - self._last_unknown_reload >= UNKNOWN_KID_RELOAD:
            self._last_unknown_reload = now
            await self.reload()
            found = self._keys.get(kid)
        if found is None:
            return None
        retired = found.key.retired_at
        if retired is not None and retired <= datetime.now(UTC):
            return None
        return found.key.environment, found.public

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys that verify tokens now (RFC 7517, OKP/Ed25519)."""
        await self._fresh()
        now = datetime.now(UTC)
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64url(k.key.public_key),
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                }
                for kid, k in sorted(self._keys.items())
                if k.key.retired_at is None or k.key.retired_at > now
            ]
        }


async def mint(
    ring: KeyRing,
    *,
    environment: str,
    space: str,
    browser_key_id: str,
    api_key_id: str,
    user_id: str,
    purpose: str,
    ttl: int,
) -> tuple[str, int]:
    """A signed token and its ``exp`` (unix seconds)."""
    kid, private = await ring.signing_key(environment)
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": ring.issuer, "aud": AUDIENCE, "sub": user_id, "space": space,
        "bk": browser_key_id, "ak": api_key_id, "purpose": purpose, "iat": now,
        "exp": now + ttl, "jti": secrets.token_urlsafe(16),
    }  # fmt: skip
    return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid}), now + ttl


def invalid(message: str = "The browser token is invalid or expired.") -> PerkamoError:
    return PerkamoError(Code.INVALID_TOKEN, message)


async def verify(ring: KeyRing, token: str) -> tuple[Claims, str]:
    """The token's claims and the environment of the key that signed it; raises 401
    ``invalid_token`` for anything else."""
    if not token or len(token) > 4096:
        raise invalid()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise invalid() from None
    kid = header.get("kid")
    if not isinstance(kid, str) or header.get("alg") != "EdDSA":
        raise invalid()
    found = await ring.verifying_key(kid)
    if found is None:
        raise invalid()
    environment, public = found
    try:
        payload = jwt.decode(
            token, public, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ring.issuer,
            leeway=LEEWAY, options={"require": REQUIRED, "strict_aud": True},
        )  # fmt: skip
        claims = msgspec.convert(payload, Claims)
    except (jwt.PyJWTError, msgspec.ValidationError):
        raise invalid() from None
    if claims.purpose not in PURPOSES:
        raise invalid()
    return claims, environment
