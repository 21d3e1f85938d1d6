"""The compiled active program of each Space, compiled once per activation and shared by
every profile actor; read again at least every CACHE_RELOAD_SECONDS (a notification of an
activation is a hint that may be missed)."""

from __future__ import annotations

from perkamo.program import EMPTY_PROGRAM, Program, compile_program
from perkamo.settings import CACHE_RELOAD_SECONDS
from storage import Database
from storage import config as config_store
from storage.cache import SharedCache
from storage.database import Conn


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
        return await self._cache.get(space_id, max_age=CACHE_RELOAD_SECONDS)

    def cached(self, space_id: int) -> Program | None:
        return self._cache.peek(space_id)

    def install(self, space_id: int, program: Program) -> None:
        self._cache.forget(space_id)
        self._cache.put(space_id, program)

    def forget(self, space_id: int | None = None) -> None:
        self._cache.forget(space_id)
