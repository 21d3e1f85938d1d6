"""The loyalty program: configuration modules, their compiled form, the pure engine."""

from .compiler import InvalidConfig, Problem, compile_program, parse_module
from .engine import EngineEvent, apply, apply_identify
from .model import EMPTY_PROGRAM, Outcome, ProfileState, Program
from .schema import MODULES
from .traits import merge_traits

__all__ = [
    "EMPTY_PROGRAM",
    "MODULES",
    "EngineEvent",
    "InvalidConfig",
    "Outcome",
    "ProfileState",
    "Problem",
    "Program",
    "apply",
    "apply_identify",
    "compile_program",
    "merge_traits",
    "parse_module",
]
