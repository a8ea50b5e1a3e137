"""The ``workbench`` command: thin wrappers over the package (``workbench --help`` lists the sub-commands)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from workbench.errors import ConfigError, WorkbenchError

__all__ = ["main"]


def _replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.replay import replay, window_spec

    if args.project:
        from workbench.project.cli import replay_project

        return replay_project(args)
    if args.events is None or args.out is None:
        raise ConfigError("replay: give an events FILE and --out DIR, or --project workbench.yaml")

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
            fresh=args.fresh,
        )
    finally:
        bar.close()
    print(json.dumps(summary, indent=2))
    from workbench.project.check import dead_share_error, read_dead_letters

    share = 0.5 if args.max_dead_share is None else args.max_dead_share
    failed = dead_share_error(summary, share, read_dead_letters(args.out))
    if failed:
        print(f"workbench: {failed}", file=sys.stderr)
        return 3
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from workbench.sources.simulator import write_simulation

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
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
        events=args.events,
        seed=args.seed,
        max_rows=args.max_rows,
        file=args.file,
        offline=not args.no_offline,
        tuned=args.tuned_allocator,
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


def _bench_models(args: argparse.Namespace) -> int:
    from workbench.bench_models import bench_models, format_table

    pairs = [kv.split("=", 1) for kv in args.param or []]
    if any(len(p) != 2 for p in pairs):
        raise ConfigError(f"bench models: --param takes NAME=VALUE, not {args.param}")
    report = bench_models(
        schemas=tuple(args.schemas),
        rate=args.rate,
        hosts=args.hosts,
        cycles=args.cycles,
        warmup=args.warmup,
        window=args.window,
        detector=args.detector,
        params={k: json.loads(v) for k, v in pairs} if pairs else None,
        skip_anomalies=args.skip_anomalies,
        seed=args.seed,
    )
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if report["all_detected"] else 1


def _alerts(args: argparse.Namespace) -> int:
    from workbench.alerts import commands

    if args.alerts == "check":
        print(commands.check_rules(args.rules))
        return 0
    report = commands.backtest_report(
        args.rules, lake=args.lake, other=args.compare, start=args.start, end=args.end, labels=args.labels
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    for name in ("rules", "other"):
        if name in report:
            print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in report[name]["overall"].items()))
    rows = report.get("compare", [])
    if rows:
        width = max(len(r["measure"]) for r in rows)
        print("  ".join([f"{'measure':<{width}}", *(f"{k:>12}" for k in list(rows[0])[1:])]))
        for row in rows:
            values = list(row.values())
            print("  ".join([f"{values[0]:<{width}}", *(f"{v:>12}" for v in values[1:])]))
    return 0


def _bench_alerts(args: argparse.Namespace) -> int:
    from workbench.alerts.commands import bench_alerts

    report = bench_alerts(
        rules=args.rules, entities=args.entities, windows=args.windows, match=args.match, storm=args.storm
    )
    print(json.dumps(report, indent=2))
    return 0 if report["target_met"] else 1


def _detect(args: argparse.Namespace) -> int:
    from workbench.models.detect import DEFAULT_DETECTOR, detect_file

    time_column = args.time_column
    if args.schema:  # a schema names the time field
        from workbench.schema import get_schema

        time_column = get_schema(args.schema).time
    result = detect_file(args.input, args.out, time_column=time_column, detector=args.detector or DEFAULT_DETECTOR)
    flagged = int(result["is_anomaly"].sum())
    print(f"{result.height:,} rows scored, {flagged:,} anomalies → {args.out}")
    return 0


def _nab(args: argparse.Namespace) -> int:
    from workbench.evaluate.run import DEFAULT_DETECTOR, run_nab

    report = run_nab(args.data, detector=args.detector or DEFAULT_DETECTOR, out=args.out, jobs=args.jobs)
    print(json.dumps(report, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from workbench.apps.serve import serve

    options = {"port": args.port, "address": args.address, "source": args.source, "schema": args.schema}
    if args.project:
        from workbench.project.cli import project_serve_options

        options = project_serve_options(args.project)
    return serve(allow_origin=args.allow_origin, show=args.show, extra=args.panel_args, **options)


def _export(args: argparse.Namespace) -> int:
    from workbench.reports.cli import export_command

    return export_command(args)


def _report(args: argparse.Namespace) -> int:
    from workbench.reports.cli import report_command

    return report_command(args)


def _schedule(args: argparse.Namespace) -> int:
    from workbench.schedule.cli import schedule_command

    return schedule_command(args)


def _run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from workbench.ingest import ingest
    from workbench.replay import window_spec

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.project:
        from workbench.project.cli import run_project

        return run_project(args, stop)
    if args.source is None or args.out is None:
        raise ConfigError("run: give --source URL and --out DIR, or --project workbench.yaml")
    delay = args.max_delay
    delay = float(delay) if delay is not None and delay.replace(".", "", 1).isdigit() else delay
    options = {k: v for k, v in (("max_rows", args.max_rows), ("max_delay", delay)) if v is not None}
    summary = ingest(
        args.source,
        args.out,
        schema=args.schema,
        spec=window_spec(args.window),
        by=args.by,
        lateness=args.lateness,
        postgres=args.postgres,
        pg_schema=args.pg_schema,
        table=args.table,
        checkpoint_every=float(args.checkpoint_every)
        if args.checkpoint_every.replace(".", "", 1).isdigit()
        else args.checkpoint_every,
        seconds=args.seconds,
        stop=stop,
        source_options=options,
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _bench_connectors(args: argparse.Namespace) -> int:
    from workbench.bench_connectors import bench_connectors

    report = bench_connectors(events=args.events, connectors=args.connectors, backlog=args.backlog)
    print(json.dumps(report, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    p = argparse.ArgumentParser(prog="workbench", description="Live monitoring workbench.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("replay", help="replay an event file into windows, dead letters and a summary")
    r.add_argument("events", nargs="?", help="JSONL, CSV or Parquet file of events")
    r.add_argument("--project", help="run a project file (workbench.yaml) instead: its source, schema, windows …")
    r.add_argument(
        "--schema", default="server_metrics", help="schema name or schema file S.yaml (default: server_metrics)"
    )
    r.add_argument("--window", default="10s", help="window size (default: 10s)")
    r.add_argument("--slide", help="make windows sliding with this step")
    r.add_argument("--session", help="session windows with this inactivity gap instead")
    r.add_argument("--by", help="window key (default: the schema's entity, e.g. host)")
    r.add_argument("--lateness", default="5s", help="allowed lateness (default: 5s)")
    r.add_argument("--out", help="output folder (resumes when it holds a checkpoint)")
    r.add_argument("--max-rows", type=int, default=100_000, help="records per batch")
    r.add_argument("--checkpoint-every", default="10s", help="checkpoint interval (default: 10s)")
    r.add_argument("--max-batches", type=int, help=argparse.SUPPRESS)
    r.add_argument(
        "--max-dead-share",
        type=float,
        help="exit 3 when more than this share of the records is dead-lettered (default: 0.5)",
    )
    r.add_argument("--fresh", action="store_true", help="start over: drop the checkpoint and outputs in --out")
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
    be.add_argument("--tuned-allocator", action="store_true", help="both processes with bench.ALLOCATOR_ENV")
    be.set_defaults(func=_bench)
    bu = bsub.add_parser("ui", help="event-to-screen latency of the served monitor in chromium")
    bu.add_argument("--rate", type=float, default=100_000, help="simulated events/s (default: 100000)")
    bu.add_argument("--seconds", type=float, default=60, help="measurement time (default: 60)")
    bu.add_argument("--sessions", type=int, default=3, help="browser sessions (default: 3)")
    bu.add_argument("--hosts", type=int, default=120, help="simulated hosts (default: 120)")
    bu.add_argument("--refresh", type=float, default=4.0, help="updates per second per session (default: 4)")
    bu.set_defaults(func=_bench_ui)
    bm = bsub.add_parser("models", help="score nodes on the simulator's labelled incidents: per-class detection")
    bm.add_argument("--schemas", nargs="+", default=["server_metrics", "user_events", "network_flows"])
    bm.add_argument("--rate", type=float, default=1000.0, help="simulated events/s of event time (default: 1000)")
    bm.add_argument("--hosts", type=int, default=20)
    bm.add_argument("--cycles", type=int, default=3, help="10-minute cycles of incidents (default: 3)")
    bm.add_argument("--warmup", default="5m", help="event time before the first incident (default: 5m)")
    bm.add_argument("--window", default="10s")
    bm.add_argument("--detector", default="robust_z")
    bm.add_argument("--param", action="append", help="detector argument NAME=VALUE (JSON value), repeatable")
    bm.add_argument("--skip-anomalies", type=int, default=30, help="anomalous rows in a row not learned (default: 30)")
    bm.add_argument("--seed", type=int, default=0)
    bm.add_argument("--json", help="also write the whole report here")
    bm.set_defaults(func=_bench_models)
    ba = bsub.add_parser("alerts", help="rules x entities evaluated per second, beside plain polars filters")
    ba.add_argument("--rules", type=int, default=1000)
    ba.add_argument("--entities", type=int, default=10_000)
    ba.add_argument("--windows", type=int, default=5, help="10 s windows timed (default: 5)")
    ba.add_argument("--match", type=float, default=0.001, help="share of rule x entity pairs matching")
    ba.add_argument("--storm", action="store_true", help="redraw every value each window (all alerts churn)")
    ba.set_defaults(func=_bench_alerts)

    a = sub.add_parser("alerts", help="alert rules: check a rules file, backtest it over the lake")
    asub = a.add_subparsers(dest="alerts", required=True)
    ac = asub.add_parser("check", help="validate a rules YAML file")
    ac.add_argument("rules")
    ac.set_defaults(func=_alerts)
    ab = asub.add_parser("backtest", help="run rules over stored windows: alerts, flap score, precision/recall/TTD")
    ab.add_argument("rules", help="rules YAML file")
    ab.add_argument("--compare", help="a second rules file, shown side by side")
    ab.add_argument("--lake", default="data/lake", help="lake folder with a windows output (default: data/lake)")
    ab.add_argument("--from", dest="start", help="ISO-8601 start (with offset)")
    ab.add_argument("--to", dest="end", help="ISO-8601 end (with offset)")
    ab.add_argument("--labels", help="incident labels (a simulator *.labels.json) for precision/recall/TTD")
    ab.add_argument("--json", action="store_true", help="print the whole report as JSON")
    ab.set_defaults(func=_alerts)

    bc = bsub.add_parser("connectors", help="events/s from each broker into window results vs its publish rate")
    bc.add_argument("--events", type=int, default=100_000, help="events per connector (default: 100000)")
    bc.add_argument("--connectors", nargs="+", default=["mqtt", "redis", "nats"], help="mqtt redis nats kafka")
    bc.add_argument("--backlog", action="store_true", help="publish everything first, then drain it")
    bc.set_defaults(func=_bench_connectors)

    rs = sub.add_parser("run", help="run a live source URL into windows, the lake and PostgreSQL (resumes)")
    rs.add_argument("--source", help="mqtt://…, redis://…, nats://…, kafka://…, http(s)://…, prometheus://…")
    rs.add_argument("--out", help="folder for checkpoint/ and lake/ (resumes from it)")
    rs.add_argument("--project", help="run a project file (workbench.yaml): its source, schema, windows, alerts …")
    rs.add_argument("--schema", default="server_metrics", help="built-in schema name or schema file S.yaml")
    rs.add_argument("--window", default="10s")
    rs.add_argument("--by", help="window key (default: the schema's entity)")
    rs.add_argument("--lateness", default="5s")
    rs.add_argument("--postgres", help="DSN: upsert window rows into PostgreSQL")
    rs.add_argument("--pg-schema", default="public")
    rs.add_argument("--table", help="PostgreSQL table (default: windows)")
    rs.add_argument("--checkpoint-every", default="2s", help="checkpoint (and ack) interval (default: 2s)")
    rs.add_argument("--max-rows", type=int, help="messages per batch")
    rs.add_argument("--max-delay", help="longest a message waits for its batch (e.g. 0.5)")
    rs.add_argument("--seconds", type=float, help="stop after this long")
    rs.set_defaults(func=_run)

    d = sub.add_parser("detect", help="score a CSV of numeric columns online: anomaly_score and is_anomaly")
    d.add_argument("input", help="CSV file with a time column and numeric columns")
    d.add_argument("--time-column", default="timestamp")
    d.add_argument("--schema", help="schema name or file S.yaml: its time field is the time column")
    d.add_argument("--detector", help="detector name (default: Workbench's best)")
    d.add_argument("--out", required=True, help="CSV: the input rows plus anomaly_score and is_anomaly")
    d.set_defaults(func=_detect)

    n = sub.add_parser("nab", help="score a detector on the Numenta Anomaly Benchmark (NAB's results layout)")
    n.add_argument("--data", default="../shared/data/nab", help="NAB folder with data/ and labels/")
    n.add_argument("--detector", help="detector name (default: Workbench's best)")
    n.add_argument("--out", help="results folder: OUT/<category>/<detector>_<file>.csv")
    n.add_argument("--jobs", type=int, default=1, help="processes scoring files side by side (same result)")
    n.set_defaults(func=_nab)

    v = sub.add_parser("serve", help="serve the monitoring app (panel serve with sensible defaults)")
    v.add_argument("--port", type=int, default=5006)
    v.add_argument("--address", default="localhost")
    v.add_argument("--allow-origin", default=None, help="extra websocket origin (host:port)")
    v.add_argument("--show", action="store_true", help="open a browser")
    v.add_argument(
        "--source", help="live source URL instead of the simulator, e.g. prometheus://127.0.0.1:9100/metrics"
    )
    v.add_argument("--schema", help="built-in schema name or schema file S.yaml of the --source events")
    v.add_argument("--project", help="serve a project file's live source, schema, port and address")
    v.add_argument("panel_args", nargs=argparse.REMAINDER, help="passed on to panel serve")
    v.set_defaults(func=_serve)

    from workbench.reports.cli import add_export_parser, add_report_parser
    from workbench.schedule.cli import add_schedule_parser

    add_export_parser(sub, _export)
    add_report_parser(sub, _report)
    add_schedule_parser(sub, _schedule)
    from workbench.project.cli import register as register_project

    register_project(sub)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` console script.

    A user error is one line on stderr (``workbench: error: …``) and exit code 2;
    ``--debug`` (anywhere on the line) shows the traceback instead. Ctrl-C ends with 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        if debug:
            raise
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except (WorkbenchError, OSError) as exc:
        if debug:
            raise
        message = str(exc) if isinstance(exc, WorkbenchError) else _os_error(exc)
        print(f"workbench: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


def _os_error(exc: OSError) -> str:
    """An OS error as one line: what, which file."""
    where = f" {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}:{where}" if exc.strerror else str(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
