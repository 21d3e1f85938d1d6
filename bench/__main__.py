"""``python -m bench <workload> [options]``."""

from __future__ import annotations

import sys

from . import run

WORKLOADS = {"run": run.main}

if len(sys.argv) < 2 or sys.argv[1] not in WORKLOADS:
    print(f"usage: python -m bench {{{'|'.join(WORKLOADS)}}} [options]", file=sys.stderr)
    sys.exit(2)
WORKLOADS[sys.argv[1]](sys.argv[2:])
