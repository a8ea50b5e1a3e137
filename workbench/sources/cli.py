"""``workbench simulate``: write simulated events, their incident labels and the fault log.

``workbench check-mqtt mosquitto.conf``: the broker settings that prevent loss (exit 1 when one is missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``simulate`` and ``check-mqtt`` to the ``workbench`` sub-parsers ``sub``."""
    s = sub.add_parser("simulate", help="write simulated events (and their labels) to a file")
    s.add_argument("--events", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--schema", default="server_metrics")
    s.add_argument("--out", required=True, help="JSONL file; labels go beside it")
    s.set_defaults(func=_simulate)

    c = sub.add_parser("check-mqtt", help="check a Mosquitto config for the settings that prevent message loss")
    c.add_argument("conf", help="mosquitto.conf")
    c.set_defaults(func=_check_mqtt)


def _check_mqtt(args: argparse.Namespace) -> int:
    from workbench.sources.mqtt import check_broker

    problems = check_broker(args.conf)
    for p in problems:
        sys.stdout.write(f"{args.conf}: {p}\n")
    if not problems:
        sys.stdout.write(f"{args.conf}: ok (persistence on, max_queued_messages sized, $SYS published)\n")
    return 1 if problems else 0


def _simulate(args: argparse.Namespace) -> int:
    from workbench.sources.simulator import write_simulation

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    counts = write_simulation(args.out, events=args.events, seed=args.seed, schema=args.schema)
    sys.stdout.write(json.dumps(counts, indent=2, default=str) + "\n")
    return 0
