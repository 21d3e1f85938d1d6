"""The loyalty program: configuration modules, their compiled form, the pure engine."""

from perkamo.program.checks import InvalidConfig, Problem, parse_module
from perkamo.program.compiler import compile_program
from perkamo.program.engine import EngineEvent, apply, apply_identify, settle_at
from perkamo.program.model import EMPTY_PROGRAM, ProfileState, Program
from perkamo.program.outcome import Outcome, Redemption
from perkamo.program.schema import MODULES
from perkamo.program.traits import merge_traits

__all__ = [
    "EMPTY_PROGRAM",
    "MODULES",
    "EngineEvent",
    "InvalidConfig",
    "Outcome",
    "ProfileState",
    "Problem",
    "Program",
    "Redemption",
    "apply",
    "apply_identify",
    "compile_program",
    "merge_traits",
    "parse_module",
    "settle_at",
]
