"""The demo program (``shared/demo/program``, shipped in ``perkamo/demo``)."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import trio

from perkamo.configuration.catalog import ProgramCatalog
from perkamo.configuration.versions import store
from perkamo.program import MODULES
from perkamo.program.json_walk import JsonObject
from storage import Database
from storage import config as config_store


def demo_program() -> tuple[str, JsonObject]:
    """The demo program (``shared/demo/program``, shipped in ``perkamo/demo``): its version
    label and module → body. The product, the tests and the bench all load it here."""
    from importlib import resources

    bodies: JsonObject = {}
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
