"""The program: ``GET /v1/program``, module uploads and reads under ``/v1/admin/config``,
and ``GET /v1/usage``."""

from __future__ import annotations

from perkamo.http.admin_bodies import ModulesUpload, ModuleUpload
from perkamo.http.edge import Call, Result, api_actor
from perkamo.http.program_document import usage_document
from perkamo.http.responses import (
    ModuleActivation,
    ModuleDescription,
    ModulesUploaded,
    ModuleUploaded,
    ProgramDocument,
    UsageResponse,
)
from perkamo.usecases import program


async def upload_module(call: Call[ModuleUpload]) -> Result[ModuleUploaded]:
    module, request = call.params["module"], call.body
    stored = await program.upload(
        call.runtime, call.key.space_id, request.version, {module: request.body},
        active=request.active, prefix="body", actor=api_actor(call.key),
    )  # fmt: skip
    item = stored[0]
    return Result(ModuleUploaded(
        module, item.version, item.active, item.checksum, program.time(item.activated_at), []
    ))  # fmt: skip


async def upload_modules(call: Call[ModulesUpload]) -> Result[ModulesUploaded]:
    request = call.body
    stored = await program.upload(
        call.runtime, call.key.space_id, request.version, request.modules,
        active=request.active, prefix="modules.{module}", actor=api_actor(call.key),
    )  # fmt: skip
    activations = {
        item.module: ModuleActivation(item.checksum, program.time(item.activated_at))
        for item in stored
    }
    return Result(ModulesUploaded(request.version, request.active, activations, []))


async def read_module(call: Call[None]) -> Result[ModuleDescription]:
    return Result(await program.describe(call.runtime, call.key.space_id, call.params["module"]))


async def read_program(call: Call[None]) -> Result[ProgramDocument]:
    return Result(await program.document(call.runtime, call.key))


async def usage(call: Call[None]) -> Result[UsageResponse]:
    meters = await call.runtime.usage.meters(
        call.key.space_id, call.received_at, call.key.space_limits
    )
    return Result(usage_document(call.key.space_slug, meters))
