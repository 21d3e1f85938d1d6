"""Configuration use cases: upload and activate modules, read them back, and the catalog of
compiled programs that the profile actors share.

A (module, version) pair is immutable. Activation validates the whole resulting program
(cross-module references included) and switches every listed module in one transaction;
nothing changes when anything is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import msgspec
import psycopg
import trio
from msgspec import Meta

from storage import Database
from storage import config as config_store

from .canonical import FORM, checksum
from .errors import Code, PerkamoError, validation_failed
from .program import EMPTY_PROGRAM, MODULES, InvalidConfig, Program, compile_program, parse_module
from .shared_cache import SharedCache
from .timefmt import format_rfc3339
from .validation import describe

Conn = psycopg.Connection[Any]
U = TypeVar("U", bound=msgspec.Struct)


def invalid_config(exc: InvalidConfig) -> PerkamoError:
    first = exc.problems[0]
    return PerkamoError(
        Code.INVALID_CONFIG,
        f"The configuration is invalid: {first.path}: {first.message}",
        details=[{"path": p.path, "message": p.message} for p in exc.problems],
    )


def load_program(conn: Conn, space_id: int) -> Program:
    rows = config_store.active_versions(conn, space_id)
    if not rows:
        return EMPTY_PROGRAM
    return compile_program({r.module: (r.version, r.body) for r in rows})


class ProgramCatalog:
    """Compiled active programs by Space, compiled once per activation and shared."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: SharedCache[int, Program] = SharedCache(self._compile)

    async def _compile(self, space_id: int) -> Program:
        return await self._db.run(load_program, space_id)

    @property
    def compilations(self) -> int:
        return self._cache.loads

    async def get(self, space_id: int) -> Program:
        """The Space's active program. Concurrent misses share one load and compilation."""
        return await self._cache.get(space_id)

    def cached(self, space_id: int) -> Program | None:
        return self._cache.peek(space_id)

    def install(self, space_id: int, program: Program) -> None:
        self._cache.forget(space_id)
        self._cache.put(space_id, program)

    def forget(self, space_id: int | None = None) -> None:
        self._cache.forget(space_id)


Version = Annotated[str, Meta(min_length=1, max_length=64)]


class ModuleUpload(msgspec.Struct):
    """``POST /v1/admin/config/{module}``: one module body under a version label."""

    version: Version
    body: dict[str, Any]
    active: bool = True


class ModulesUpload(msgspec.Struct):
    """``POST /v1/admin/config``: several module bodies (module → body) under one version."""

    version: Version
    modules: Annotated[dict[str, dict[str, Any]], Meta(min_length=1)]
    active: bool = True


@dataclass(frozen=True, slots=True)
class Stored:
    module: str
    version: str
    checksum: str
    active: bool
    activated_at: datetime | None


def envelope(value: Any, shape: type[U]) -> U:
    try:
        return msgspec.convert(value, shape)
    except msgspec.ValidationError as exc:
        path, message = describe(exc, "")
        raise validation_failed(path.lstrip("."), message) from None


def store(
    conn: Conn, space_id: int, version: str, bodies: dict[str, Any], active: bool, prefix: str
) -> tuple[list[Stored], Program | None]:
    """Store ``bodies`` (module → body) under ``version`` and, when ``active``, activate them
    together. All or nothing. Raises PerkamoError (invalid_config, version_conflict)."""
    unknown = [m for m in bodies if m not in MODULES]
    if unknown:
        raise PerkamoError(Code.UNKNOWN_MODULE, f"Unknown configuration module {unknown[0]!r}.")
    paths = {m: (prefix.format(module=m) if m in bodies else m) for m in MODULES}
    with conn.transaction():
        config_store.lock_space(conn, space_id)
        existing = _existing_versions(conn, space_id, version, bodies)
        program = _validate(conn, space_id, version, bodies, active, paths)
        stored = []
        for module, body in bodies.items():
            before = existing[module]
            if before is None:
                sum_ = checksum(body)
                config_store.insert_version(conn, space_id, module, version, body, sum_)
                activated_at = None
            else:
                sum_, activated_at = before.checksum, before.activated_at
            if active:
                activated_at = config_store.activate(conn, space_id, module, version)
            is_active = active or any(
                r.module == module and r.version == version
                for r in config_store.active_versions(conn, space_id)
            )
            stored.append(Stored(module, version, sum_, is_active, activated_at))
    return stored, program


def _existing_versions(
    conn: Conn, space_id: int, version: str, bodies: dict[str, Any]
) -> dict[str, config_store.ConfigVersion | None]:
    """The stored versions of this label; raises version_conflict when one has another
    body (compared in the canonical form its checksum was computed in)."""
    existing = {}
    for module, body in bodies.items():
        found = config_store.get_version(conn, space_id, module, version)
        if found is not None and found.checksum != checksum(body, found.checksum_form):
            raise PerkamoError(
                Code.VERSION_CONFLICT,
                f"Version {version!r} of module {module!r} exists with a different body; "
                "versions are immutable, upload under a new version.",
            )
        existing[module] = found
    return existing


def _validate(
    conn: Conn,
    space_id: int,
    version: str,
    bodies: dict[str, Any],
    active: bool,
    paths: dict[str, str],
) -> Program | None:
    """The whole resulting program when activating; each module on its own for a draft."""
    try:
        if not active:
            for module, body in bodies.items():
                parse_module(module, body, paths[module])
            return None
        current = {
            r.module: (r.version, r.body) for r in config_store.active_versions(conn, space_id)
        }
        current.update({m: (version, b) for m, b in bodies.items()})
        return compile_program(current, paths)
    except InvalidConfig as exc:
        raise invalid_config(exc) from None


def upgrade_checksums(conn: Conn) -> int:
    """Recompute checksums stored in an older canonical form (module bodies are stored
    whole, so their checksums can be migrated); returns how many changed. Idempotent."""
    changed = 0
    for row in config_store.versions_before_form(conn, FORM):
        config_store.set_checksum(
            conn, row.space_id, row.module, row.version, checksum(row.body), FORM
        )
        changed += 1
    return changed


def describe_module(conn: Conn, space_id: int, module: str) -> dict[str, Any]:
    if module not in MODULES:
        raise PerkamoError(Code.UNKNOWN_MODULE, f"Unknown configuration module {module!r}.")
    versions = config_store.list_versions(conn, space_id, module)
    active = next(
        (r for r in config_store.active_versions(conn, space_id) if r.module == module), None
    )
    return {
        "module": module,
        "active_version": active.version if active else None,
        "versions": [
            {
                "version": v.version,
                "checksum": v.checksum,
                "created_at": format_rfc3339(v.created_at),
                "activated_at": format_rfc3339(v.activated_at) if v.activated_at else None,
            }
            for v in versions
        ],
        "body": active.body if active else None,
    }


def demo_program() -> tuple[str, dict[str, Any]]:
    """The demo program (``shared/demo/program``, shipped in ``perkamo/demo``): its version
    label and module → body. The product, the tests and the bench all load it here."""
    from importlib import resources

    bodies: dict[str, Any] = {}
    version = ""
    decoder = msgspec.json.Decoder(float_hook=Decimal)
    for module in MODULES:
        raw = resources.files("perkamo").joinpath("demo", f"{module}.json").read_bytes()
        document = decoder.decode(raw)
        bodies[module] = document["body"]
        version = document["version"]
    return version, bodies


async def activate_demo(db: Database, catalog: ProgramCatalog, space_id: int) -> bool:
    """Load the demo program into a Space that has no active program yet."""
    active = await db.run(config_store.active_versions, space_id)
    if active:
        return False
    version, bodies = demo_program()
    _, program = await db.run(store, space_id, version, bodies, True, "modules.{module}")
    assert program is not None
    catalog.install(space_id, program)
    await trio.lowlevel.checkpoint()
    return True
