"""Browser keys and tokens (docs/api.md "The browser half"): ``/v1/admin/browser-keys`` (scope
``admin:config``), ``POST /v1/browser-tokens`` (scope ``browser:tokens``) and
``GET /.well-known/jwks.json`` (no key)."""

from __future__ import annotations

from perkamo.access.browser_keys import PolicyError
from perkamo.http.bodies import check_user_id
from perkamo.http.browser_shapes import (
    BrowserKeyBody,
    BrowserKeyDocument,
    BrowserKeyList,
    BrowserKeyPatch,
    BrowserToken,
    BrowserTokenBody,
    Jwk,
    Jwks,
)
from perkamo.http.edge import Call, Plain, Result, api_actor
from perkamo.usecases import browser

JWKS_MAX_AGE = 300  # seconds a verifier may cache the key set (a new key is published 600 s
# before it signs, so every verifier has it in time)


async def create_key(call: Call[BrowserKeyBody]) -> Result[BrowserKeyDocument]:
    key = call.key
    try:
        created = await call.runtime.db.run(
            browser.create_key, key.space_id, key.space_environment,
            browser.given_fields(call.body), api_actor(key),
        )  # fmt: skip
    except PolicyError as exc:
        raise browser.refused(exc) from None
    return Result(browser.document(created.record, created.key), status=201)


async def list_keys(call: Call[None]) -> Result[BrowserKeyList]:
    records = await call.runtime.db.run(browser.list_keys, call.key.space_id)
    return Result(BrowserKeyList([browser.document(r) for r in records]))


async def update_key(call: Call[BrowserKeyPatch]) -> Result[BrowserKeyDocument]:
    key_id = call.params["browser_key_id"]
    try:
        record = await call.runtime.db.run(
            browser.update_key, call.key.space_id, key_id, browser.given_fields(call.body),
            api_actor(call.key),
        )  # fmt: skip
    except PolicyError as exc:
        raise browser.refused(exc) from None
    if record is None:
        raise browser.not_found(key_id)
    return Result(browser.document(record))


async def revoke_key(call: Call[None]) -> Result[BrowserKeyDocument]:
    key_id = call.params["browser_key_id"]
    record = await call.runtime.db.run(
        browser.revoke_key, call.key.space_id, key_id, api_actor(call.key)
    )
    if record is None:
        raise browser.not_found(key_id)
    return Result(browser.document(record))


async def mint_token(call: Call[BrowserTokenBody]) -> Result[BrowserToken]:
    check_user_id(call.body.user_id)
    return Result(await browser.mint(call.runtime, call.key, call.body))


async def jwks(plain: Plain) -> Result[Jwks]:
    document = await plain.runtime.browser.ring.jwks()
    keys = Jwks([Jwk(**k) for k in document["keys"]])
    return Result(keys, headers={"cache-control": f"public, max-age={JWKS_MAX_AGE}"})
