"""The ``workbench`` command: thin wrappers over the package.

Sub-commands: ``replay``, ``simulate``, ``query``, ``bench engine``, ``bench ui``, ``detect``, ``nab``, ``serve``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from workbench.errors import WorkbenchError

__all__ = ["main"]


def _replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.replay import replay, window_spec

    size = Path(args.events).stat().st_size if Path(args.events).exists() else None
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="replay", disable=None, file=sys.stderr)

    def progress(offset: int) -> None:
        bar.update(offset - bar.n)

    try:
        summary = replay(
            args.events,
            args.out,
            schema=args.schema,
            spec=window_spec(args.window, slide=args.slide, session=args.session),
            by=args.by,
            lateness=args.lateness,
            max_rows=args.max_rows,
            checkpoint_every=args.checkpoint_every,
            max_batches=args.max_batches,
            progress=progress,
        )
    finally:
        bar.close()
    print(json.dumps(summary, indent=2))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from workbench.sources.simulator import write_simulation

    counts = write_simulation(args.out, events=args.events, seed=args.seed, schema=args.schema)
    print(json.dumps(counts, indent=2, default=str))
    return 0


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
            print(result)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from workbench.bench import bench_engine

    report = bench_engine(
        events=args.events, seed=args.seed, max_rows=args.max_rows, file=args.file, offline=not args.no_offline
    )
    print(json.dumps(report, indent=2, default=str))
    if "agree" in report and report["agree"] != "yes":
        print(f"streaming and offline results disagree: {report['agree']}", file=sys.stderr)
        return 1
    return 0


def _bench_ui(args: argparse.Namespace) -> int:
    from workbench.bench_ui import bench_ui

    report = bench_ui(
        rate=args.rate, seconds=args.seconds, sessions=args.sessions, hosts=args.hosts, refresh_hz=args.refresh
    )
    print(json.dumps(report, indent=2, default=str))
    if not report["p99_ok"]:
        print(f"event-to-screen p99 {report['latency_s']['p99']} s is over 1 s", file=sys.stderr)
        return 1
    return 0


def _detect(args: argparse.Namespace) -> int:
    from workbench.models.detect import DEFAULT_DETECTOR, detect_file

    result = detect_file(
        args.input, args.out, time_column=args.time_column, detector=args.detector or DEFAULT_DETECTOR
    )
    flagged = int(result["is_anomaly"].sum())
    print(f"{result.height:,} rows scored, {flagged:,} anomalies → {args.out}")
    return 0


def _nab(args: argparse.Namespace) -> int:
    from workbench.evaluate.run import DEFAULT_DETECTOR, run_nab

    report = run_nab(args.data, detector=args.detector or DEFAULT_DETECTOR, out=args.out)
    print(json.dumps(report, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from workbench.apps.serve import serve

    return serve(
        port=args.port, address=args.address, allow_origin=args.allow_origin, show=args.show, extra=args.panel_args
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    p = argparse.ArgumentParser(prog="workbench", description="Live monitoring workbench.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("replay", help="replay an event file into windows, dead letters and a summary")
    r.add_argument("events", help="JSONL, CSV or Parquet file of events")
    r.add_argument("--schema", default="server_metrics", help="event schema (default: server_metrics)")
    r.add_argument("--window", default="10s", help="window size (default: 10s)")
    r.add_argument("--slide", help="make windows sliding with this step")
    r.add_argument("--session", help="session windows with this inactivity gap instead")
    r.add_argument("--by", help="window key (default: the schema's entity, e.g. host)")
    r.add_argument("--lateness", default="5s", help="allowed lateness (default: 5s)")
    r.add_argument("--out", required=True, help="output folder (resumes when it holds a checkpoint)")
    r.add_argument("--max-rows", type=int, default=100_000, help="records per batch")
    r.add_argument("--checkpoint-every", default="10s", help="checkpoint interval (default: 10s)")
    r.add_argument("--max-batches", type=int, help=argparse.SUPPRESS)
    r.set_defaults(func=_replay)

    s = sub.add_parser("simulate", help="write simulated events (and their labels) to a file")
    s.add_argument("--events", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--schema", default="server_metrics")
    s.add_argument("--out", required=True, help="JSONL file; labels go beside it")
    s.set_defaults(func=_simulate)

    q = sub.add_parser("query", help="run DuckDB SQL over the Parquet lake")
    q.add_argument("sql")
    q.add_argument("--lake", default="data/lake", help="lake folder (default: data/lake)")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.add_argument("--limit", type=int, default=50, help="rows shown in table format")
    q.set_defaults(func=_query)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    be = bsub.add_parser("engine", help="streaming replay vs offline polars on the same file")
    be.add_argument("--events", type=int, default=2_000_000)
    be.add_argument("--seed", type=int, default=0)
    be.add_argument("--max-rows", type=int, default=200_000)
    be.add_argument("--file", help="use this JSONL file instead of simulating one")
    be.add_argument("--no-offline", action="store_true", help="skip the offline baseline (RSS runs)")
    be.set_defaults(func=_bench)
    bu = bsub.add_parser("ui", help="event-to-screen latency of the served monitor in chromium")
    bu.add_argument("--rate", type=float, default=100_000, help="simulated events/s (default: 100000)")
    bu.add_argument("--seconds", type=float, default=60, help="measurement time (default: 60)")
    bu.add_argument("--sessions", type=int, default=3, help="browser sessions (default: 3)")
    bu.add_argument("--hosts", type=int, default=120, help="simulated hosts (default: 120)")
    bu.add_argument("--refresh", type=float, default=4.0, help="updates per second per session (default: 4)")
    bu.set_defaults(func=_bench_ui)

    d = sub.add_parser("detect", help="score a CSV of numeric columns online: anomaly_score and is_anomaly")
    d.add_argument("input", help="CSV file with a time column and numeric columns")
    d.add_argument("--time-column", default="timestamp")
    d.add_argument("--detector", help="detector name (default: Workbench's best)")
    d.add_argument("--out", required=True, help="CSV: the input rows plus anomaly_score and is_anomaly")
    d.set_defaults(func=_detect)

    n = sub.add_parser("nab", help="score a detector on the Numenta Anomaly Benchmark (NAB's results layout)")
    n.add_argument("--data", default="../shared/data/nab", help="NAB folder with data/ and labels/")
    n.add_argument("--detector", help="detector name (default: Workbench's best)")
    n.add_argument("--out", help="results folder: OUT/<category>/<detector>_<file>.csv")
    n.set_defaults(func=_nab)

    v = sub.add_parser("serve", help="serve the monitoring app (panel serve with sensible defaults)")
    v.add_argument("--port", type=int, default=5006)
    v.add_argument("--address", default="localhost")
    v.add_argument("--allow-origin", default=None, help="extra websocket origin (host:port)")
    v.add_argument("--show", action="store_true", help="open a browser")
    v.add_argument("panel_args", nargs=argparse.REMAINDER, help="passed on to panel serve")
    v.set_defaults(func=_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except WorkbenchError as exc:
        print(f"workbench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
