"""``workbench query``: DuckDB SQL over the Parquet lake (every output is a view)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``query`` to the ``workbench`` sub-parsers ``sub``."""
    q = sub.add_parser("query", help="run DuckDB SQL over the Parquet lake")
    q.add_argument("sql")
    q.add_argument("--lake", default="data/lake", help="lake folder (default: data/lake)")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.add_argument("--limit", type=int, default=50, help="rows shown in table format")
    q.set_defaults(func=_query)


def _query(args: argparse.Namespace) -> int:
    import polars as pl

    from workbench.storage.lake import Lake

    result = Lake(args.lake).query(args.sql)
    if args.format == "csv":
        sys.stdout.write(result.write_csv())
    elif args.format == "json":
        sys.stdout.write(result.write_json() + "\n")
    else:
        with pl.Config(tbl_rows=args.limit, tbl_cols=-1, fmt_str_lengths=60):
            sys.stdout.write(f"{result}\n")
    return 0
