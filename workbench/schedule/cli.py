"""``workbench schedule run|list``: the argument parser and what it runs (no Panel, no papermill at import)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

__all__ = ["register", "schedule_command"]


def _say(text: object, *, err: bool = False) -> None:
    """One line for the user (the command's output, or a note on stderr)."""
    (sys.stderr if err else sys.stdout).write(f"{text}\n")


def register(sub: Any) -> None:
    """``workbench schedule run FILE`` and ``workbench schedule list FILE``."""
    s = sub.add_parser("schedule", help="run report notebooks on cron schedules; list their run history")
    ssub = s.add_subparsers(dest="schedule", required=True)
    r = ssub.add_parser("run", help="the scheduler: a long-running process that runs the jobs of FILE")
    r.add_argument("file", help="schedule file (YAML)")
    r.add_argument("--workers", type=int, default=2, help="runs of different jobs at once (default: 2)")
    r.add_argument(
        "--now",
        action="append",
        metavar="JOB",
        help="run this job now, wait for it and exit (repeat for several); exit 1 when a run failed",
    )
    r.set_defaults(func=schedule_command)
    ls = ssub.add_parser("list", help="the run history: job, scheduled, start, end, status, output, error")
    ls.add_argument("file", help="schedule file (YAML), or its history file (.duckdb)")
    ls.add_argument("--job", help="only this job")
    ls.add_argument("--status", help="only runs with this status (ok, failed, skipped, running, interrupted)")
    ls.add_argument("--limit", type=int, default=20, help="newest runs shown (default: 20)")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    ls.set_defaults(func=schedule_command)


def _history(path: str) -> Any:
    from workbench.schedule.jobs import load_schedule
    from workbench.storage.runs import RunHistory

    if path.endswith(".duckdb"):
        return RunHistory(path)
    return RunHistory(load_schedule(path).history)


def _list(args: argparse.Namespace) -> int:
    import polars as pl

    runs = _history(args.file).runs(args.job, limit=args.limit, status=args.status)
    if args.format == "json":
        sys.stdout.write(runs.write_json() + "\n")
        return 0
    shown = runs.select(
        "job",
        pl.col("scheduled").dt.strftime("%Y-%m-%d %H:%M:%S"),
        pl.col("started").dt.strftime("%H:%M:%S"),
        pl.col("ended").dt.strftime("%H:%M:%S"),
        "seconds",
        "status",
        "coalesced",
        "output",
        "error",
    )
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        fmt_str_lengths=160,
        tbl_width_chars=2000,
        tbl_formatting="ASCII_MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
    ):
        _say(shown)
    return 0


def _run(args: argparse.Namespace) -> int:
    from workbench.schedule.jobs import load_schedule
    from workbench.schedule.scheduler import Scheduler
    from workbench.storage.runs import RunHistory

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    schedule = load_schedule(args.file)
    scheduler = Scheduler(schedule.jobs, RunHistory(schedule.history), workers=args.workers)
    if args.now:
        events = [scheduler.trigger(name) for name in args.now]
        scheduler.close(wait_for_runs=True)
        runs = scheduler.history.runs(limit=len(events) * 4)
        done = runs.filter(runs["id"].is_in([e.get("run") for e in events if "run" in e]))
        _say(done.select("id", "job", "status", "output", "error").write_json())
        return 1 if (done["status"] != "ok").any() or len(done) < len(events) else 0
    scheduler.tick()
    nxt = scheduler.next_fire()
    _say(f"scheduler: {len(schedule.jobs)} job(s), history {schedule.history}, next fire {nxt}", err=True)
    try:
        scheduler.run()
    except KeyboardInterrupt:
        _say("scheduler: stopping; waiting for the runs going on", err=True)
    finally:
        scheduler.close(wait_for_runs=True)
    return 0


def schedule_command(args: argparse.Namespace) -> int:
    """Run ``workbench schedule run|list``."""
    return _list(args) if args.schedule == "list" else _run(args)
