"""Rebuild a profile from its log: every write in processing order, each replayed by its
command with the program versions it saw. Because the engine is pure, the result equals
the stored snapshot; ``perkamo verify`` style checks and tests rely on it."""

from __future__ import annotations

import msgspec

from perkamo.profiles.commands import COMMANDS, Replay
from perkamo.program import ProfileState, Program, compile_program
from perkamo.program.json_walk import JsonObject
from storage.database import Conn
from storage.history import config_bodies, profile_history


def replay_profile(conn: Conn, space_id: int, user_id: str) -> tuple[JsonObject, ProfileState]:
    """(traits, state) recomputed from an empty profile."""
    programs: dict[tuple[tuple[str, str], ...], Program] = {}

    def program_for(versions: dict[str, str | None]) -> Program:
        key = tuple(sorted((m, v) for m, v in versions.items() if v is not None))
        if key not in programs:
            bodies = config_bodies(conn, space_id, dict(key))
            programs[key] = compile_program({m: (v, bodies[m]) for m, v in key})
        return programs[key]

    run = Replay(ProfileState(), {}, program_for({}))
    for row in profile_history(conn, space_id, user_id):
        run.program = program_for(_versions(row.program_versions))
        COMMANDS[row.kind].replay(row, run)
    return run.traits, run.state


_versions_decoder = msgspec.json.Decoder(dict[str, str | None])


def _versions(text: str | None) -> dict[str, str | None]:
    return _versions_decoder.decode(text) if text else {}
