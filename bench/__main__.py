"""``python -m bench run|load [options]``."""

from __future__ import annotations

import sys

from . import ab, backtest, console, failover, load, lots, moving, run, streams

COMMANDS = {
    "run": run.main,
    "ab": ab.main,
    "load": load.main,
    "backtest": backtest.main,
    "console": console.main,
    "failover": failover.main,
    "lots": lots.main,
    "moving": moving.main,
    "streams": streams.main,
}

if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    print(f"usage: python -m bench {{{'|'.join(COMMANDS)}}} [options]", file=sys.stderr)
    sys.exit(2)
COMMANDS[sys.argv[1]](sys.argv[2:])
