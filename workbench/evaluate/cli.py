"""``workbench nab``: score a detector on the Numenta Anomaly Benchmark."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``nab`` to the ``workbench`` sub-parsers ``sub``."""
    n = sub.add_parser("nab", help="score a detector on the Numenta Anomaly Benchmark (NAB's results layout)")
    n.add_argument("--data", default="../shared/data/nab", help="NAB folder with data/ and labels/")
    n.add_argument("--detector", help="detector name (default: Workbench's best)")
    n.add_argument("--out", help="results folder: OUT/<category>/<detector>_<file>.csv")
    n.add_argument("--jobs", type=int, default=1, help="processes scoring files side by side (same result)")
    n.add_argument(
        "--split",
        action="store_true",
        help="settings and thresholds chosen on the odd files, scored on the even ones, and the reverse",
    )
    n.set_defaults(func=_nab)


def _nab(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.evaluate.run import DEFAULT_DETECTOR, run_nab

    if args.split:
        from workbench.evaluate.split import split_nab

        steps = tqdm(unit=" settings", desc="nab --split", disable=None, file=sys.stderr)
        try:
            report = split_nab(args.data, detector=args.detector or DEFAULT_DETECTOR, progress=lambda _: steps.update())
        finally:
            steps.close()
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    bar = tqdm(unit=" files", desc="nab", disable=None, file=sys.stderr)  # a bar on a terminal only

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = run_nab(
            args.data, detector=args.detector or DEFAULT_DETECTOR, out=args.out, jobs=args.jobs, progress=progress
        )
    finally:
        bar.close()
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0
