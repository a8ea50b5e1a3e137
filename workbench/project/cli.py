"""``workbench schema infer FILE`` and ``workbench schema check FILE --schema S``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``schema`` sub-commands to the ``workbench`` parser's sub-parsers."""
    s = sub.add_parser("schema", help="bring your own data: draft a schema from a file, check a file against one")
    ssub = s.add_subparsers(dest="schema_command", required=True)
    i = ssub.add_parser("infer", help="write a commented draft schema (YAML) for a JSONL, CSV or Parquet file")
    i.add_argument("file", help="JSONL, CSV or Parquet file")
    i.add_argument("--out", help="schema file to write (default: print it)")
    i.add_argument("--rows", type=int, default=10_000, help="records read to infer from (default: 10000)")
    i.set_defaults(func=_infer)
    c = ssub.add_parser("check", help="count the records a schema rejects, per reason, with one example each")
    c.add_argument("file", help="JSONL, CSV or Parquet file")
    c.add_argument("--schema", required=True, help="built-in schema name or schema file S.yaml")
    c.add_argument(
        "--max-dead-share", type=float, default=0.5, help="exit 3 when more than this share is rejected (default: 0.5)"
    )
    c.set_defaults(func=_check)


def _say(text: object) -> None:
    sys.stdout.write(f"{text}\n")


def _infer(args: argparse.Namespace) -> int:
    from workbench.project.infer import infer_schema

    draft = infer_schema(args.file, rows=args.rows)
    if args.out is None:
        sys.stdout.write(draft)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(draft)
    _say(f"draft schema for {args.file} → {out}; read it, then: workbench schema check {args.file} --schema {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from workbench.project.check import check_file, format_reasons

    report = check_file(args.file, args.schema)
    records, rejected = report["records"], report["rejected"]
    share = rejected / records if records else 0.0
    _say(
        f"{args.file}: {records:,} records, {report['valid']:,} valid, {rejected:,} rejected "
        f"({share:.1%}) by schema {report['schema']!r}".replace("%)", " %)")
    )
    if report["extra_fields"]:
        _say(f"undeclared numeric fields kept as metrics: {', '.join(report['extra_fields'])}")
    if rejected:
        _say("rejected, per reason (count, reason code, field, an example, its record):")
        _say(format_reasons(report["reasons"], raw=True))
    if not 0 <= args.max_dead_share <= 1:
        from workbench.errors import ConfigError

        raise ConfigError(f"--max-dead-share must be within [0, 1], not {args.max_dead_share}")
    return 3 if share > args.max_dead_share else 0
