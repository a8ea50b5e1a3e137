"""``workbench export`` and ``workbench report``: the argument parsers and what they run.

Importing this module imports neither Panel nor papermill (``workbench --help`` stays fast).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["export_command", "register", "report_command"]


def _say(text: object, *, err: bool = False) -> None:
    """One line for the user (the command's output, or a note on stderr)."""
    (sys.stderr if err else sys.stdout).write(f"{text}\n")


def _params(pairs: list[list[str]] | None) -> dict[str, Any]:
    from workbench.reports.notebook import parse_value

    return {key: parse_value(value) for key, value in pairs or []}


def register(sub: Any) -> None:
    """Add ``export`` and ``report`` to the ``workbench`` sub-parsers ``sub``."""
    _add_export(sub)
    _add_report(sub)


def _add_export(sub: Any) -> None:
    """``workbench export --view NAME … (--lake DIR | --simulate N) --out x.html|x.png``."""
    from workbench.reports import VIEWS  # no Panel import

    e = sub.add_parser("export", help="save views or the monitor page as one offline HTML file or a PNG")
    e.add_argument(
        "--view",
        action="append",
        choices=VIEWS,
        help="view to export (repeat for several, one under the other; default: dashboard)",
    )
    data = e.add_mutually_exclusive_group()
    data.add_argument("--lake", help="draw the windows of this lake (e.g. a `workbench replay` output)")
    data.add_argument("--simulate", type=int, metavar="EVENTS", help="draw a simulation of EVENTS events (default)")
    e.add_argument("--schema", help="schema name or file S.yaml of the lake's events: windows are per its entity")
    e.add_argument("--project", help="a project file (workbench.yaml): its output folder and schema")
    e.add_argument("--start", help="lake rows from this time (ISO-8601 with an offset)")
    e.add_argument("--end", help="lake rows before this time (ISO-8601 with an offset)")
    e.add_argument("--seed", type=int, default=0, help="simulation seed (default: 0)")
    e.add_argument("--hosts", type=int, default=20, help="simulated hosts (default: 20)")
    e.add_argument("--window", default="10s", help="simulation window size (default: 10s)")
    e.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="a view parameter")
    e.add_argument("--title", help="page title")
    e.add_argument("--width", type=int, default=1280, help="PNG viewport width (default: 1280)")
    e.add_argument("--out", required=True, help="x.html (self-contained, offline) or x.png")
    e.set_defaults(func=export_command)


def export_command(args: argparse.Namespace) -> int:
    """Run ``workbench export``."""
    from workbench.reports.daily import parse_time
    from workbench.reports.export import export_views
    from workbench.reports.frozen import lake_feed, simulated_feed

    if args.project:
        from workbench.project.config import Project

        project = Project.load(args.project)
        args.lake = args.lake or project.resolve(project.out)
        args.schema = args.schema or project.load_schema()
    if args.lake:
        from workbench.schema import get_schema

        by = (get_schema(args.schema).by or ["host"])[0] if args.schema else "host"
        start, end = parse_time(args.start, what="start"), parse_time(args.end, what="end")
        feed = lake_feed(args.lake, start=start, end=end, by=by)
    else:
        feed = simulated_feed(events=args.simulate or 20_000, seed=args.seed, hosts=args.hosts, window=args.window)
    path = export_views(args.view or ["dashboard"], feed, args.out, params=_params(args.param), title=args.title)
    from workbench.security.audit import audit_cli

    audit_cli(
        "export",
        f"{', '.join(args.view or ['dashboard'])} -> {path}",
        folder=args.lake or path.parent,
        after={"bytes": path.stat().st_size},
    )
    _say(f"exported {', '.join(args.view or ['dashboard'])} → {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _add_report(sub: Any) -> None:
    """``workbench report NOTEBOOK -p key value … --out reports/x.html``."""
    r = sub.add_parser("report", help="run a report notebook with parameters and render its outputs as HTML")
    r.add_argument("notebook", help="notebook with a cell tagged 'parameters'")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="a parameter")
    r.add_argument("--out", required=True, help="HTML file to write (outputs only, no code; opens offline)")
    r.add_argument("--timeout", type=float, default=600, help="seconds one cell may run (default: 600)")
    r.add_argument("--cwd", help="kernel working folder (default: the current folder)")
    r.add_argument("--keep-notebook", action="store_true", help="also keep the executed notebook (OUT.ipynb)")
    r.add_argument(
        "--notify-on-failure",
        metavar="URL",
        help="POST a JSON message to this webhook when the report fails (or set WORKBENCH_REPORT_WEBHOOK)",
    )
    r.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    """Run ``workbench report``; a failing cell exits 1 with the cell, the exception type and message."""
    import os
    from pathlib import Path

    from workbench.reports.errors import NotebookError
    from workbench.reports.notebook import run_report

    params = _params(args.param)
    try:
        result = run_report(
            args.notebook,
            args.out,
            params,
            timeout=args.timeout,
            cwd=args.cwd or Path.cwd(),
            keep_notebook=args.keep_notebook,
            progress=sys.stderr.isatty(),  # a bar on a terminal only, as tqdm's disable=None
        )
    except NotebookError as exc:
        _say(f"workbench report: {exc}", err=True)
        _say(f"workbench report: the executed notebook is kept at {exc.output}", err=True)
        url = args.notify_on_failure or os.environ.get("WORKBENCH_REPORT_WEBHOOK")
        if url:
            from workbench.schedule.notify import failure_message, notify_failure

            message = failure_message(
                job=Path(args.notebook).stem, notebook=args.notebook, error=str(exc), output=args.out, parameters=params
            )
            notify_failure(url, message, secret=os.environ.get("WORKBENCH_WEBHOOK_SECRET"))
        return 1
    _say(json.dumps(result, indent=2))
    return 0
