"""A Space's program as configuration: versions uploaded, validated and activated, the compiled
active program every profile shares, and the demo program."""

from perkamo.configuration.catalog import ProgramCatalog, load_program
from perkamo.configuration.demo import activate_demo, demo_program
from perkamo.configuration.versions import (
    Stored,
    describe_module,
    invalid_config,
    store,
    upgrade_checksums,
)

__all__ = [
    "ProgramCatalog",
    "Stored",
    "activate_demo",
    "demo_program",
    "describe_module",
    "invalid_config",
    "load_program",
    "store",
    "upgrade_checksums",
]
