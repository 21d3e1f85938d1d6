"""What a long move reports as it goes (the CLI draws it as a progress bar)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, what: str, total: int) -> None:
        """A phase of ``total`` lines begins."""

    def advance(self, lines: int) -> None:
        """``lines`` more are done."""

    def finish(self) -> None:
        """The phase is over."""


class Silent:
    """No report (tests, the bench)."""

    def start(self, what: str, total: int) -> None:
        pass

    def advance(self, lines: int) -> None:
        pass

    def finish(self) -> None:
        pass
