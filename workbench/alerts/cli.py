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
    ac = asub.add_parser("check", help="validate a rules YAML file")
    ac.add_argument("rules")
    ac.set_defaults(func=_check)
    ab = asub.add_parser("backtest", help="run rules over stored windows: alerts, flap score, precision/recall/TTD")
    ab.add_argument("rules", help="rules YAML file")
    ab.add_argument("--compare", help="a second rules file, shown side by side")
    ab.add_argument("--lake", default="data/lake", help="lake folder with a windows output (default: data/lake)")
    ab.add_argument("--from", dest="start", help="ISO-8601 start (with offset)")
    ab.add_argument("--to", dest="end", help="ISO-8601 end (with offset)")
    ab.add_argument("--labels", help="incident labels (a simulator *.labels.json) for precision/recall/TTD")
    ab.add_argument("--json", action="store_true", help="print the whole report as JSON")
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

    _say(check_rules(args.rules))
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
    rows = report.get("compare", [])
    if rows:
        width = max(len(r["measure"]) for r in rows)
        _say("  ".join([f"{'measure':<{width}}", *(f"{k:>12}" for k in list(rows[0])[1:])]))
        for row in rows:
            values = list(row.values())
            _say("  ".join([f"{values[0]:<{width}}", *(f"{v:>12}" for v in values[1:])]))
    return 0


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
