"""``workbench alerts check|backtest|test``: check a rules file, backtest it over the lake, run promtool tests.

Examples
--------
>>> import argparse
>>> top = argparse.ArgumentParser(prog="workbench")
>>> register(top.add_subparsers(dest="command"))
>>> args = top.parse_args(["alerts", "test", "tests.yml"])
>>> args.files, args.func.__name__
(['tests.yml'], '_test')
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``alerts`` and its sub-commands to the ``workbench`` sub-parsers ``sub``."""
    a = sub.add_parser("alerts", help="alert rules: check a rules file, backtest it over the lake")
    asub = a.add_subparsers(dest="alerts", required=True)
    ac = asub.add_parser(
        "check", help="validate a rules YAML file: fields, and every metric and label against the windows"
    )
    ac.add_argument("rules")
    ac.add_argument("--schema", help="schema name or file S.yaml of the events (default: server_metrics)")
    ac.add_argument("--project", help="a project file: its schema, aggregations, window key and window")
    ac.add_argument("--window", help="window size (or --slide step): absence rules must wait longer than it")
    ac.add_argument("--slide", help="sliding windows' step")
    ac.add_argument("--by", help="window key, comma-separated (default: the schema's entity)")
    ac.set_defaults(func=_check)
    ab = asub.add_parser("backtest", help="run rules over stored windows: alerts, flap score, precision/recall/TTD")
    ab.add_argument("rules", help="rules YAML file")
    ab.add_argument("--compare", help="a second rules file, shown side by side")
    ab.add_argument("--lake", default="data/lake", help="lake folder with a windows output (default: data/lake)")
    ab.add_argument("--from", dest="start", help="ISO-8601 start (with offset)")
    ab.add_argument("--to", dest="end", help="ISO-8601 end (with offset)")
    ab.add_argument("--labels", help="incident labels (a simulator *.labels.json) for precision/recall/TTD")
    ab.add_argument("--json", action="store_true", help="print the whole report as JSON (with every fired alert)")
    ab.add_argument("--limit", type=int, default=50, help="fired alerts listed per rule set (default: 50)")
    ab.set_defaults(func=_backtest)
    at = asub.add_parser(
        "test", help="run promtool rule unit-test files (rule_files, input_series, exp_alerts) through Workbench"
    )
    at.add_argument("files", nargs="+", metavar="FILE.yaml", help="promtool test file(s)")
    at.set_defaults(func=_test)


def _say(text: object) -> None:
    sys.stdout.write(f"{text}\n")


def _check(args: argparse.Namespace) -> int:
    from workbench.alerts.commands import check_rules

    by = args.by.split(",") if args.by else None
    if args.project:  # a wing's CLI is entry code: it may read a project file (pyproject's ignore_imports)
        from workbench.errors import ConfigError
        from workbench.operators.windows import Sliding, Tumbling
        from workbench.project.config import Project

        if args.schema:
            raise ConfigError("alerts check: give --schema or --project, not both")
        project = Project.load(args.project)
        schema = project.load_schema()
        w = project.window
        every = w.step if isinstance(w, Sliding) else w.size if isinstance(w, Tumbling) else None
        _say(
            check_rules(
                args.rules,
                schema=schema,
                aggs=project.aggs(schema),
                by=by or (list(project.by) if project.by else None),
                every=args.slide or args.window or every,
                against=f"project {args.project} (schema {schema.name!r})",
            )
        )
        return 0
    _say(check_rules(args.rules, schema=args.schema, by=by, every=args.slide or args.window))
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from workbench.alerts.commands import backtest_report

    report = backtest_report(
        args.rules, lake=args.lake, other=args.compare, start=args.start, end=args.end, labels=args.labels
    )
    if args.json:
        _say(json.dumps(report, indent=2, default=str))
        return 0
    for name in ("rules", "other"):
        if name in report:
            _say(f"{name}: " + ", ".join(f"{k}={v}" for k, v in report[name]["overall"].items()))
            _fired(report[name]["fired"], limit=args.limit)
    rows = report.get("compare", [])
    if rows:
        width = max(len(r["measure"]) for r in rows)
        _say("  ".join([f"{'measure':<{width}}", *(f"{k:>12}" for k in list(rows[0])[1:])]))
        for row in rows:
            values = list(row.values())
            _say("  ".join([f"{values[0]:<{width}}", *(f"{v:>12}" for v in values[1:])]))
    return 0


def _fired(rows: list[dict[str, Any]], *, limit: int) -> None:
    """The fired alerts as a table: rule, labels, start, end, peak."""
    _say(f"  fired: {len(rows)}" + (" (rule, labels, start, end, peak)" if rows else ""))
    for row in rows[: max(limit, 0)]:
        labels = ",".join(f"{k}={v}" for k, v in row["labels"].items() if k != "alertname")
        end = "firing" if row["end"] is None else row["end"].isoformat()
        peak = "-" if row["peak"] is None else f"{row['peak']:.6g}"
        _say(f"  {row['rule']}  {{{labels}}}  {row['start'].isoformat()}  {end}  {peak}")
    if len(rows) > limit:
        _say(f"  … and {len(rows) - limit} more (--limit N, or --json for all)")


def _test(args: argparse.Namespace) -> int:
    """Run each promtool test file; print promtool's report; 0 when all pass, 1 otherwise."""
    from workbench.alerts.promtest import run_rule_tests

    ok = True
    for name in args.files:
        result = run_rule_tests(name)
        sys.stdout.write(result.head)
        sys.stdout.flush()
        (sys.stdout if result.passed else sys.stderr).write(result.body)
        sys.stdout.write("\n" * (len(result.errors) + 1))  # promtool's layout, byte for byte
        ok = ok and result.passed
    return 0 if ok else 1
