"""``GET /v1/profile/{user_id}`` (and its alias ``/v1/customer/{user_id}``)."""

from __future__ import annotations

from datetime import UTC, datetime

from perkamo.errors import Code, PerkamoError
from perkamo.http.bodies import check_user_id
from perkamo.http.edge import Call, Result
from perkamo.http.profile_document import profile_document
from perkamo.http.responses import ProfileDocument
from perkamo.profiles.commands import Read


async def profile(call: Call[None]) -> Result[ProfileDocument]:
    user_id = check_user_id(call.params["user_id"])
    key = (call.key.space_id, user_id)
    view = await call.runtime.gateway.ask(key, Read(received_at=call.received_at))
    if view is None:
        raise PerkamoError(Code.PROFILE_NOT_FOUND, f"No profile with user_id {user_id!r}.")
    program = await call.runtime.programs.get(call.key.space_id)
    now = datetime.now(UTC)
    return Result(profile_document(call.key.space_slug, user_id, view, program, now))
