"""Configuration versions: upload, validate and activate modules; read them back.

A (module, version) pair is immutable. Activation validates the whole resulting program
(cross-module references included) and switches every listed module in one transaction;
nothing changes when anything is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from perkamo.errors import Code, PerkamoError
from perkamo.program import (
    EMPTY_PROGRAM,
    MODULES,
    InvalidConfig,
    Program,
    compile_program,
    parse_module,
)
from perkamo.program.canonical import FORM, checksum
from perkamo.program.json_walk import JsonObject
from storage import config as config_store
from storage import console as audit_log
from storage.database import Conn


def invalid_config(exc: InvalidConfig) -> PerkamoError:
    first = exc.problems[0]
    return PerkamoError(
        Code.INVALID_CONFIG,
        f"The configuration is invalid: {first.path}: {first.message}",
        details=[{"path": p.path, "message": p.message} for p in exc.problems],
    )


@dataclass(frozen=True, slots=True)
class Stored:
    module: str
    version: str
    checksum: str
    active: bool
    activated_at: datetime | None


def store(
    conn: Conn,
    space_id: int,
    version: str,
    bodies: JsonObject,
    active: bool,
    prefix: str,
    actor: str | None = None,
) -> tuple[list[Stored], Program | None]:
    """Store ``bodies`` (module → body) under ``version`` and, when ``active``, activate them
    together. All or nothing; an activation by ``actor`` is in the audit log in the same
    transaction. Raises PerkamoError (invalid_config, version_conflict)."""
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
        if active and actor is not None:
            _audit_activation(conn, actor, space_id, {m: version for m in bodies}, None)
    return stored, program


def _audit_activation(
    conn: Conn, actor: str, space_id: int, chosen: dict[str, str], reason: str | None
) -> None:
    target = ", ".join(f"{m}@{v}" for m, v in chosen.items())
    audit_log.audit(conn, actor, "program.activate", space_id, target, reason)


def _existing_versions(
    conn: Conn, space_id: int, version: str, bodies: JsonObject
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
    bodies: JsonObject,
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


def candidate_program(conn: Conn, space_id: int, overrides: dict[str, str]) -> Program:
    """The active program with some modules at other versions (drafts included), validated
    as on activation. Raises PerkamoError: unknown_module, unknown_version (details name
    ``program.<module>``), invalid_config."""
    for module in overrides:
        if module not in MODULES:
            raise PerkamoError(
                Code.UNKNOWN_MODULE,
                f"Unknown configuration module {module!r}.",
                details=[{"path": f"program.{module}", "message": "no such module"}],
            )
    current = {r.module: (r.version, r.body) for r in config_store.active_versions(conn, space_id)}
    for module, version in overrides.items():
        found = config_store.get_version(conn, space_id, module, version)
        if found is None:
            raise PerkamoError(
                Code.UNKNOWN_VERSION,
                f"Module {module!r} has no version {version!r}.",
                details=[{"path": f"program.{module}", "message": "no such version"}],
            )
        current[module] = (version, found.body)
    if not current:
        return EMPTY_PROGRAM
    paths = {m: f"program.{m}" for m in MODULES}
    try:
        return compile_program(current, paths)
    except InvalidConfig as exc:
        raise invalid_config(exc) from None


def activate_versions(
    conn: Conn,
    space_id: int,
    chosen: dict[str, str],
    actor: str | None = None,
    reason: str | None = None,
) -> Program:
    """Activate stored versions of several modules together (drafts included), validated
    as one program first; all or nothing, the audit row (by ``actor``, with ``reason``)
    included. Raises PerkamoError like candidate_program."""
    with conn.transaction():
        config_store.lock_space(conn, space_id)
        program = candidate_program(conn, space_id, chosen)
        for module, version in chosen.items():
            config_store.activate(conn, space_id, module, version)
        if actor is not None:
            _audit_activation(conn, actor, space_id, chosen, reason)
    return program


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


def describe_module(
    conn: Conn, space_id: int, module: str
) -> tuple[config_store.ConfigVersion | None, list[config_store.ConfigVersion]]:
    """(the active version or None, every version in upload order)."""
    if module not in MODULES:
        raise PerkamoError(Code.UNKNOWN_MODULE, f"Unknown configuration module {module!r}.")
    versions = config_store.list_versions(conn, space_id, module)
    active = next(
        (r for r in config_store.active_versions(conn, space_id) if r.module == module), None
    )
    return active, versions
