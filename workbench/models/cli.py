"""``workbench detect``: score a file of numeric columns online."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``detect`` to the ``workbench`` sub-parsers ``sub``."""
    d = sub.add_parser("detect", help="score a CSV of numeric columns online: anomaly_score and is_anomaly")
    d.add_argument("input", help="CSV file with a time column and numeric columns")
    d.add_argument("--time-column", default="timestamp")
    d.add_argument("--schema", help="schema name or file S.yaml: its time field is the time column")
    d.add_argument("--detector", help="detector name (default: Workbench's best)")
    d.add_argument("--out", required=True, help="CSV: the input rows plus anomaly_score and is_anomaly")
    d.set_defaults(func=_detect)


def _detect(args: argparse.Namespace) -> int:
    from workbench.models.detect import DEFAULT_DETECTOR, detect_file

    time_column = args.time_column
    if args.schema:  # a schema names the time field
        from workbench.schema import get_schema

        time_column = get_schema(args.schema).time
    result = detect_file(args.input, args.out, time_column=time_column, detector=args.detector or DEFAULT_DETECTOR)
    flagged = int(result["is_anomaly"].sum())
    sys.stdout.write(f"{result.height:,} rows scored, {flagged:,} anomalies → {args.out}\n")
    return 0
