"""``python -m bench <workload> [options]``."""

from __future__ import annotations

import sys

from . import ingest, run

WORKLOADS = {"run": run.main, "ingest": ingest.run}

if len(sys.argv) < 2 or sys.argv[1] not in WORKLOADS:
    print(f"usage: python -m bench {{{'|'.join(WORKLOADS)}}} [options]", file=sys.stderr)
    sys.exit(2)
WORKLOADS[sys.argv[1]](sys.argv[2:])
