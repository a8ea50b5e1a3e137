"""The alerts wing's command line: ``workbench alerts test FILE.yaml``.

:func:`register` adds the sub-commands to the top ``workbench`` parser (or to an
``alerts`` sub-parser group that already exists); the work is in
:mod:`workbench.alerts.promtest`.

Examples
--------
>>> import argparse
>>> top = argparse.ArgumentParser(prog="workbench")
>>> register(top.add_subparsers(dest="command"))
>>> args = top.parse_args(["alerts", "test", "tests.yml"])
>>> args.files, args.func.__name__
(['tests.yml'], 'run_tests_command')
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "run_tests_command"]


def run_tests_command(args: argparse.Namespace) -> int:
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


def register(sub: Any, *, alerts: Any = None) -> None:
    """Add ``alerts test`` to ``alerts`` (an ``alerts`` sub-parser group), else an ``alerts`` command to ``sub``."""
    if alerts is None:
        parser = sub.add_parser("alerts", help="alert rules: test them against promtool unit-test files")
        alerts = parser.add_subparsers(dest="alerts", required=True)
    t = alerts.add_parser(
        "test", help="run promtool rule unit-test files (rule_files, input_series, exp_alerts) through Workbench"
    )
    t.add_argument("files", nargs="+", metavar="FILE.yaml", help="promtool test file(s)")
    t.set_defaults(func=run_tests_command)
