"""A progress bar on stderr for long operator commands (export, import, opening balances):
lines done of the total and the rate. Redrawn in place at most five times a second on a
terminal; elsewhere (a log, a pipe) a line every five seconds and one at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

_WIDTH = 24


class ProgressBar:
    def __init__(
        self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream or sys.stderr
        self._clock = clock
        self._tty = self._stream.isatty()
        self._every = 0.2 if self._tty else 5.0
        self._what, self._total, self._done = "", 0, 0
        self._started = self._shown = 0.0

    def start(self, what: str, total: int) -> None:
        self._what, self._total, self._done = what, total, 0
        self._started = self._shown = self._clock()

    def advance(self, lines: int) -> None:
        self._done += lines
        now = self._clock()
        if now - self._shown >= self._every:
            self._shown = now
            self._draw(now, final=False)

    def finish(self) -> None:
        self._draw(self._clock(), final=True)

    def _draw(self, now: float, *, final: bool) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed
        if self._total:
            share = min(self._done / self._total, 1.0)
            filled = round(share * _WIDTH)
            bar = f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {share:4.0%} "
            count = f"{self._done:,}/{self._total:,}"
        else:
            bar, count = "", f"{self._done:,}"
        text = f"{self._what} {bar}{count} lines, {rate:,.0f} lines/s, {elapsed:.1f} s"
        if self._tty:
            self._stream.write("\r" + text + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
