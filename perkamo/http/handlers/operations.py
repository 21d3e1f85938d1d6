"""Operational endpoints (no key): ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from perkamo.errors import Code, PerkamoError
from perkamo.http.edge import Plain, RawBody, Result
from perkamo.http.responses import Health


async def healthz(plain: Plain) -> Result[Health]:
    return Result(Health("ok"))


async def readyz(plain: Plain) -> Result[Health]:
    """Ready: accepting work and storage answering (a background probe's latest verdict,
    so this never waits behind the load it reports on)."""
    runtime = plain.runtime
    if runtime.stopping or runtime.actors.closed:
        raise PerkamoError(Code.SHUTTING_DOWN, "The server is shutting down.")
    if not runtime.health.ready():
        raise PerkamoError(Code.STORAGE_UNAVAILABLE, "Storage is unavailable.")
    return Result(Health("ready"))


async def metrics(plain: Plain) -> Result[RawBody]:
    return Result(RawBody(plain.metrics.render(), plain.metrics.content_type))
