"""``workbench bench …``: every benchmark, each measured against a baseline in the same run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``bench`` and its sub-commands to the ``workbench`` sub-parsers ``sub``."""
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    be = bsub.add_parser("engine", help="streaming replay vs offline polars on the same file")
    be.add_argument("--events", type=int, default=2_000_000)
    be.add_argument("--seed", type=int, default=0)
    be.add_argument("--max-rows", type=int, default=200_000)
    be.add_argument("--file", help="use this JSONL file instead of simulating one")
    be.add_argument("--no-offline", action="store_true", help="skip the offline baseline (RSS runs)")
    be.add_argument("--tuned-allocator", action="store_true", help="both processes with bench.ALLOCATOR_ENV")
    be.add_argument(
        "--session", help="session windows with this gap against tumbling, on a file of --keys hosts (e.g. 1h)"
    )
    be.add_argument("--keys", type=int, default=1_000_000, help="hosts in the --session file (default: 1000000)")
    be.set_defaults(func=_engine)
    bu = bsub.add_parser("ui", help="event-to-screen latency of the served monitor in chromium")
    bu.add_argument("--rate", type=float, default=100_000, help="simulated events/s (default: 100000)")
    bu.add_argument("--seconds", type=float, default=60, help="measurement time (default: 60)")
    bu.add_argument("--sessions", type=int, default=3, help="browser sessions (default: 3)")
    bu.add_argument("--hosts", type=int, default=120, help="simulated hosts (default: 120)")
    bu.add_argument("--refresh", type=float, default=4.0, help="updates per second per session (default: 4)")
    bu.set_defaults(func=_ui)
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
    bm.add_argument(
        "--cpu-streams", type=int, nargs="+", default=[1, 100], help="streams scored side by side (default: 1 100)"
    )
    bm.add_argument("--cpu-warm", type=int, default=100, help="rows each stream learns before timing (default: 100)")
    bm.add_argument("--cpu-rows", type=int, default=50, help="rows per stream timed (default: 50)")
    bm.add_argument(
        "--cpu-detectors",
        nargs="+",
        default=["context", "river_hst"],
        help="default: context river_hst (context_python: context on its pure-Python memory)",
    )
    bm.add_argument("--cpu-only", action="store_true", help="only the CPU-per-value table, no incident simulation")
    bm.set_defaults(func=_models)
    ba = bsub.add_parser("alerts", help="rules x entities evaluated per second, beside plain polars filters")
    ba.add_argument("--rules", type=int, default=1000)
    ba.add_argument("--entities", type=int, default=10_000)
    ba.add_argument("--windows", type=int, default=5, help="10 s windows timed (default: 5)")
    ba.add_argument("--match", type=float, default=0.001, help="share of rule x entity pairs matching")
    ba.add_argument("--storm", action="store_true", help="redraw every value each window (all alerts churn)")
    ba.set_defaults(func=_alerts)
    bc = bsub.add_parser("connectors", help="events/s from each broker into window results vs its publish rate")
    bc.add_argument("--events", type=int, default=100_000, help="events per connector (default: 100000)")
    bc.add_argument("--connectors", nargs="+", default=["mqtt", "redis", "nats"], help="mqtt redis nats kafka")
    bc.add_argument("--backlog", action="store_true", help="publish everything first, then drain it")
    bc.set_defaults(func=_connectors)
    bx = bsub.add_parser("metrics", help="Prometheus scrape time of a pipeline against Pipeline.metrics()")
    bx.add_argument("--nodes", type=int, nargs="+", default=[4, 20, 100], help="nodes (default: 4 20 100)")
    bx.add_argument("--reasons", type=int, nargs="+", default=[0, 15, 100], help="dead-letter reason codes")
    bx.add_argument("--repeat", type=int, default=50, help="timed scrapes per case (default: 50)")
    bx.set_defaults(func=_metrics)
    bk = bsub.add_parser("scale", help="events/s in one process and on 1, 2 … Dask workers; a model of more")
    bk.add_argument("--events", type=int, default=2_000_000)
    bk.add_argument("--seed", type=int, default=0)
    bk.add_argument("--max-rows", type=int, default=100_000, help="records per batch (= per epoch)")
    bk.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes per run (default: 1 2)")
    bk.add_argument("--checkpoint-batches", type=int, default=5, help="checkpoint every N batches (default: 5)")
    bk.add_argument("--file", help="use this JSONL file instead of simulating one")
    bk.add_argument("--model", type=int, nargs="+", default=[8, 32], help="worker counts to model (default: 8 32)")
    bk.add_argument("--detector", help="also score each host's windows with this detector (on the shard hosts)")
    bk.set_defaults(func=_scale)
    bs = bsub.add_parser("startup", help="start-up time of workbench commands against python -c 'import polars'")
    bs.add_argument("--repeat", type=int, default=7, help="timed runs of each command (default: 7)")
    bs.set_defaults(func=_startup)
    bo = bsub.add_parser("export", help="size of each static export and copies of BokehJS / Panel in it")
    bo.add_argument("--events", type=int, default=20_000, help="simulated events per page (default: 20000)")
    bo.add_argument("--hosts", type=int, default=20)
    bo.add_argument("--seed", type=int, default=0)
    bo.add_argument("--report", help="also run this report notebook (notebooks/reports/daily-report.ipynb)")
    bo.set_defaults(func=_export)
    bp = bsub.add_parser(
        "checkpoint", help="bytes and seconds of a full checkpoint of a big dedupe table, then of later ones"
    )
    bp.add_argument("--keys", type=int, default=1_000_000, help="dedupe keys held (default: 1000000)")
    bp.add_argument("--batch", type=int, default=10_000, help="new keys between two saves (default: 10000)")
    bp.add_argument("--saves", type=int, default=7, help="saves after the first (default: 7)")
    bp.add_argument("--full-every", type=int, default=8, help="every N-th save rewrites everything (default: 8)")
    bp.set_defaults(func=_checkpoint)


def _scale(args: argparse.Namespace) -> int:
    from workbench.bench.scale import bench_scale

    if any(w < 1 for w in args.workers):
        raise ConfigError(f"bench scale: --workers must be >= 1, not {args.workers}")
    _print(
        bench_scale(
            events=args.events,
            seed=args.seed,
            max_rows=args.max_rows,
            workers=args.workers,
            checkpoint_batches=args.checkpoint_batches,
            file=args.file,
            model_at=args.model,
            detector=args.detector,
        )
    )
    return 0


def _print(report: Any) -> None:
    sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")


def _engine(args: argparse.Namespace) -> int:
    from workbench.bench.engine import bench_engine, bench_sessions

    if args.session:
        _print(bench_sessions(events=args.events, keys=args.keys, gap=args.session, max_rows=args.max_rows))
        return 0
    report = bench_engine(
        events=args.events,
        seed=args.seed,
        max_rows=args.max_rows,
        file=args.file,
        offline=not args.no_offline,
        tuned=args.tuned_allocator,
    )
    _print(report)
    if "agree" in report and report["agree"] != "yes":
        sys.stderr.write(f"streaming and offline results disagree: {report['agree']}\n")
        return 1
    return 0


def _ui(args: argparse.Namespace) -> int:
    from workbench.bench.ui import bench_ui

    report = bench_ui(
        rate=args.rate, seconds=args.seconds, sessions=args.sessions, hosts=args.hosts, refresh_hz=args.refresh
    )
    _print(report)
    if not report["p99_ok"]:
        sys.stderr.write(f"event-to-screen p99 {report['latency_s']['p99']} s is over 1 s\n")
        return 1
    return 0


def _models(args: argparse.Namespace) -> int:
    from workbench.bench.models import bench_models, cpu_per_value, format_cpu_table, format_table

    cpu = cpu_per_value(
        detectors=tuple(args.cpu_detectors), streams=tuple(args.cpu_streams), warm=args.cpu_warm, rows=args.cpu_rows
    )
    sys.stdout.write(format_cpu_table(cpu) + "\n")
    if args.cpu_only:
        if args.json:
            Path(args.json).write_text(json.dumps({"cpu": cpu}, indent=2) + "\n")
        return 0
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
    sys.stdout.write(format_table(report) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({**report, "cpu": cpu}, indent=2, default=str) + "\n")
    return 0 if report["all_detected"] else 1


def _alerts(args: argparse.Namespace) -> int:
    from workbench.bench.alerts import bench_alerts

    report = bench_alerts(
        rules=args.rules, entities=args.entities, windows=args.windows, match=args.match, storm=args.storm
    )
    _print(report)
    return 0 if report["target_met"] else 1


def _connectors(args: argparse.Namespace) -> int:
    from workbench.bench.connectors import bench_connectors

    _print(bench_connectors(events=args.events, connectors=args.connectors, backlog=args.backlog))
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from workbench.bench.metrics import bench_metrics

    _print(bench_metrics(nodes=args.nodes, reasons=args.reasons, repeat=args.repeat))
    return 0


def _checkpoint(args: argparse.Namespace) -> int:
    from workbench.bench.checkpoint import bench_checkpoint

    for name in ("keys", "batch", "saves", "full_every"):
        if getattr(args, name) < 1:
            raise ConfigError(f"bench checkpoint: --{name.replace('_', '-')} must be >= 1, not {getattr(args, name)}")
    _print(bench_checkpoint(keys=args.keys, batch=args.batch, saves=args.saves, full_every=args.full_every))
    return 0


def _startup(args: argparse.Namespace) -> int:
    from workbench.bench.startup import bench_startup

    report = bench_startup(repeat=args.repeat)
    _print(report)
    return 0 if report["all_met"] else 1


def _export(args: argparse.Namespace) -> int:
    from workbench.bench.export import bench_export

    report = Path(args.report) if args.report else None
    if report is not None and not report.is_file():
        raise ConfigError(f"bench export: --report {args.report!r} is not a notebook file")
    _print(bench_export(events=args.events, hosts=args.hosts, seed=args.seed, report=report))
    return 0
