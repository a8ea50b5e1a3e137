"""``workbench detect``: score a file of numeric columns online."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``detect`` to the ``workbench`` sub-parsers ``sub``."""
    d = sub.add_parser("detect", help="score a file of numeric columns online: anomaly_score and is_anomaly")
    d.add_argument("input", help="JSONL, CSV or Parquet file with a time column and numeric columns")
    d.add_argument("--time-column", default="timestamp")
    d.add_argument("--schema", help="schema name or file S.yaml: its time field is the time column")
    d.add_argument("--detector", help="detector name (default: Workbench's best)")
    d.add_argument("--columns", help="numeric columns scored, comma-separated (default: every numeric column)")
    d.add_argument("--by", help="entity column (long format): one model per entity and column")
    d.add_argument(
        "--out", required=True, help="JSONL, CSV or Parquet (by extension): the input rows, anomaly_score, is_anomaly"
    )
    d.set_defaults(func=_detect)


def _detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.models.detect import DEFAULT_DETECTOR, detect_file

    time_column = args.time_column
    if args.schema:  # a schema names the time field
        from workbench.schema import get_schema

        time_column = get_schema(args.schema).time
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    bar = tqdm(unit=" rows", unit_scale=True, desc="detect", disable=None, file=sys.stderr)

    def progress(done: int, total: int) -> None:  # a bar on a terminal only (disable=None)
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = detect_file(
            args.input,
            args.out,
            time_column=time_column,
            detector=args.detector or DEFAULT_DETECTOR,
            columns=columns,
            by=args.by,
            progress=progress,
        )
    finally:
        bar.close()
    flagged = int(result["is_anomaly"].sum())
    per = f" ({result[args.by].n_unique():,} entities, one model per entity and column)" if args.by else ""
    sys.stdout.write(f"{result.height:,} rows scored{per}, {flagged:,} anomalies → {args.out}\n")
    return 0
