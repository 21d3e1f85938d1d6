"""A Space's program: upload module versions (drafts or activations), read a module's
versions, and the program document with its integration status, metrics and usage."""

from __future__ import annotations

from datetime import UTC, datetime

from perkamo.configuration import versions
from perkamo.configuration.versions import Stored
from perkamo.errors import Code, PerkamoError
from perkamo.http.program_document import program_document, usage_document
from perkamo.http.responses import ModuleDescription, ModuleVersion, ProgramDocument
from perkamo.profiles.paths import WALLETS
from perkamo.program import MODULES
from perkamo.program.json_walk import JsonObject
from perkamo.program.timefmt import format_rfc3339
from perkamo.runtime import Runtime
from storage.spaces import KeyRecord
from storage.stats import space_stats


async def upload(
    runtime: Runtime,
    space_id: int,
    version: str,
    bodies: JsonObject,
    *,
    active: bool,
    prefix: str,
    actor: str | None = None,
) -> list[Stored]:
    """Store module bodies under ``version`` and, when ``active``, activate them together
    (validated as one program; all or nothing). ``prefix``: the JSON path of the bodies in
    the request, for error details (``body`` or ``modules.{module}``). ``actor``: who
    activates, for the audit log (in the same transaction)."""
    stored, program = await runtime.db.run(
        versions.store, space_id, version, bodies, active, prefix, actor
    )
    if program is not None:
        runtime.programs.install(space_id, program)
    return list(stored)


async def describe(runtime: Runtime, space_id: int, module: str) -> ModuleDescription:
    if module not in MODULES:
        raise PerkamoError(Code.UNKNOWN_MODULE, f"Unknown configuration module {module!r}.")
    active, stored = await runtime.db.run(versions.describe_module, space_id, module)
    return ModuleDescription(
        module=module,
        active_version=active.version if active else None,
        versions=[
            ModuleVersion(v.version, v.checksum, format_rfc3339(v.created_at), time(v.activated_at))
            for v in stored
        ],
        body=active.body if active else None,
    )


async def document(runtime: Runtime, key: KeyRecord) -> ProgramDocument:
    now = datetime.now(UTC)
    program = await runtime.programs.get(key.space_id)
    stats = await runtime.db.run(space_stats, key.space_id, now, WALLETS)
    meters = await runtime.usage.meters(key.space_id, now, key.space_limits)
    usage = usage_document(key.space_slug, meters)
    return program_document(key, program, stats, usage, meters)


def time(value: datetime | None) -> str | None:
    return format_rfc3339(value) if value is not None else None
