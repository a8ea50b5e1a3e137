"""``workbench replay`` and ``workbench run``: a file or a live source through the standard pipeline.

Parsers only: the engine is imported when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``replay`` and ``run`` to the ``workbench`` sub-parsers ``sub``."""
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
    r.add_argument(
        "--max-future", default="5m", help="events this far ahead of the newest events are dead letters (default: 5m)"
    )
    r.add_argument("--max-rows", type=int, default=100_000, help="records per batch")
    r.add_argument("--checkpoint-every", default="10s", help="checkpoint interval (default: 10s)")
    r.add_argument("--max-batches", type=int, help=argparse.SUPPRESS)
    r.add_argument(
        "--max-dead-share",
        type=float,
        help="exit 3 when more than this share of the records is dead-lettered (default: 0.5)",
    )
    r.add_argument("--rules", help="alert rules file evaluated on the windows: output alerts (overrides a project's)")
    r.add_argument("--fresh", action="store_true", help="start over: drop the checkpoint and outputs in --out")
    r.add_argument(
        "--cluster",
        help="run dedupe and windows on Dask: local:N (N worker processes here) or tcp://HOST:8786 (a scheduler)",
    )
    r.add_argument(
        "--key-groups", type=int, default=128, help="key groups with --cluster (default 128; fixed once checkpointed)"
    )
    r.set_defaults(func=_replay)

    rs = sub.add_parser("run", help="run a live source URL into windows, the lake and PostgreSQL (resumes)")
    rs.add_argument(
        "--source",
        help="mqtt://…, redis://…, nats://…, kafka://…, http(s)://…, prometheus://…, remote-write://ADDR:PORT/api/v1/write",
    )
    rs.add_argument("--out", help="folder for checkpoint/ and lake/ (resumes from it)")
    rs.add_argument("--project", help="run a project file (workbench.yaml): its source, schema, windows, alerts …")
    rs.add_argument(
        "--schema",
        help="built-in schema name or schema file S.yaml "
        "(default: prom_samples for prometheus:// and remote-write://, else server_metrics)",
    )
    rs.add_argument("--window", default="10s")
    rs.add_argument("--by", help="window key (default: the schema's entity)")
    rs.add_argument("--lateness", default="5s")
    rs.add_argument(
        "--max-future", default="5m", help="events this far ahead of the wall clock are dead letters (default: 5m)"
    )
    rs.add_argument("--postgres", help="DSN: upsert window rows into PostgreSQL")
    rs.add_argument("--pg-schema", default="public")
    rs.add_argument("--table", help="PostgreSQL table (default: windows)")
    rs.add_argument("--checkpoint-every", default="2s", help="checkpoint (and ack) interval (default: 2s)")
    rs.add_argument("--max-rows", type=int, help="messages per batch")
    rs.add_argument("--max-delay", help="longest a message waits for its batch (e.g. 0.5 or 500ms)")
    rs.add_argument("--seconds", type=float, help="stop after this long")
    rs.add_argument("--rules", help="alert rules file evaluated on the windows: lake/alerts (overrides a project's)")
    rs.add_argument("--keep-events", action="store_true", help="also write every valid record to lake/events")
    rs.add_argument("--fresh", action="store_true", help="start over: drop the checkpoint and outputs in --out")
    rs.add_argument(
        "--alerts-schema", default="workbench_alerts", help="PostgreSQL schema of the alert store (with --postgres)"
    )
    rs.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on http://ADDR:PORT/metrics while running (0: any)"
    )
    rs.add_argument("--metrics-addr", default="127.0.0.1", help="address of --metrics-port (default: 127.0.0.1)")
    rs.add_argument(
        "--cluster",
        help="run dedupe and windows on Dask: local:N (N worker processes here) or tcp://HOST:8786 (a scheduler)",
    )
    rs.add_argument(
        "--key-groups", type=int, default=128, help="key groups with --cluster (default 128; fixed once checkpointed)"
    )
    rs.set_defaults(func=_run)


def _replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.pipeline.replay import replay, window_spec

    if args.project and args.cluster:
        raise ConfigError("replay: --cluster works with an events FILE, not with --project (yet)")
    if args.project:
        from workbench.project.cli import replay_project

        return replay_project(args)
    if args.events is None or args.out is None:
        raise ConfigError("replay: give an events FILE and --out DIR, or --project workbench.yaml")

    size = Path(args.events).stat().st_size if Path(args.events).exists() else None
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="replay", disable=None, file=sys.stderr)

    def progress(offset: int) -> None:
        bar.update(offset - bar.n)

    cluster = _cluster(args)
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
            rules=args.rules,
            cluster=cluster,
            max_future=args.max_future,
        )
    finally:
        bar.close()
        if cluster is not None:
            cluster.close()
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    from workbench.project.check import dead_share_error, read_dead_letters

    share = 0.5 if args.max_dead_share is None else args.max_dead_share
    failed = dead_share_error(summary, share, read_dead_letters(args.out))
    if failed:
        sys.stderr.write(f"workbench: {failed}\n")
        return 3
    return 0


def _run(args: argparse.Namespace) -> int:
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.project and args.cluster:
        raise ConfigError("run: --cluster works with --source, not with --project (yet)")
    if args.project:
        from workbench.project.cli import run_project

        return run_project(args, stop)
    if args.source is None or args.out is None:
        raise ConfigError("run: give --source URL and --out DIR, or --project workbench.yaml")
    options = {k: v for k, v in (("max_rows", args.max_rows), ("max_delay", args.max_delay)) if v is not None}
    cluster = _cluster(args)
    try:
        summary = _ingest(args, options, stop, cluster)
    finally:
        if cluster is not None:
            cluster.close()
    sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


def _cluster(args: argparse.Namespace) -> Any:
    """The ``--cluster`` (Dask is imported only when it is given)."""
    if not args.cluster:
        return None
    from workbench.cluster.client import Cluster

    return Cluster(args.cluster, key_groups=args.key_groups)


def _ingest(args: argparse.Namespace, options: dict[str, Any], stop: Any, cluster: Any) -> dict[str, Any]:
    from workbench.pipeline.ingest import ingest
    from workbench.pipeline.replay import window_spec

    schema = args.schema
    if schema is None:
        schema = "prom_samples" if args.source.startswith(("prometheus://", "remote-write://")) else "server_metrics"
    return ingest(
        args.source,
        args.out,
        schema=schema,
        spec=window_spec(args.window),
        by=args.by,
        lateness=args.lateness,
        postgres=args.postgres,
        pg_schema=args.pg_schema,
        table=args.table,
        checkpoint_every=args.checkpoint_every,
        seconds=args.seconds,
        stop=stop,
        source_options=options,
        metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
        rules=args.rules,
        alerts_schema=args.alerts_schema,
        keep_events=args.keep_events,
        fresh=args.fresh,
        cluster=cluster,
        max_future=args.max_future,
    )
