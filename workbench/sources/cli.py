"""``workbench simulate``: write simulated events, their incident labels and the fault log."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``simulate`` to the ``workbench`` sub-parsers ``sub``."""
    s = sub.add_parser("simulate", help="write simulated events (and their labels) to a file")
    s.add_argument("--events", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--schema", default="server_metrics")
    s.add_argument("--out", required=True, help="JSONL file; labels go beside it")
    s.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from workbench.sources.simulator import write_simulation

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    counts = write_simulation(args.out, events=args.events, seed=args.seed, schema=args.schema)
    sys.stdout.write(json.dumps(counts, indent=2, default=str) + "\n")
    return 0
