"""The loyalty program: its compiled form and the pure evaluation engine."""

from .engine import apply
from .model import EMPTY_PROGRAM, Outcome, ProfileState, Program

__all__ = ["EMPTY_PROGRAM", "Outcome", "ProfileState", "Program", "apply"]
