"""Headless live ingestion: a source URL into windows, the lake and (optionally) PostgreSQL.

``ingest`` is what ``workbench run --source URL`` runs: the standard pipeline over
:func:`workbench.sources.from_url`, checkpointed into ``OUT/checkpoint``, writing
``OUT/lake/<output>/…`` (with ``--rules``, the alert events too) and upserting the
window rows into PostgreSQL. It runs until the source ends, ``seconds`` pass or
``stop`` is set (SIGTERM / Ctrl-C in the CLI), and started again with the same ``OUT``
it resumes: a broker re-delivers what the last checkpoint did not cover, so after a
``kill -9`` nothing is lost, and the lake (epoch files) and PostgreSQL (upserts) hold
no duplicate rows.
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from workbench.operators.windows import WindowSpec
from workbench.pipeline import Pipeline
from workbench.pipeline.metrics import served
from workbench.project.infer import prime_schema, resolve_schema
from workbench.schema import Schema
from workbench.sources.factory import from_url
from workbench.sources.urls import masked
from workbench.storage.checkpoints import CheckpointStore
from workbench.storage.lake import Lake
from workbench.storage.ownership import OutputLock

__all__ = ["ingest"]


def ingest(
    url: str,
    out: str | Path,
    *,
    schema: str | Schema = "server_metrics",
    spec: WindowSpec | None = None,
    by: str | list[str] | None = None,
    lateness: str | float | timedelta = "5s",
    postgres: str | None = None,
    pg_schema: str = "public",
    table: str | None = None,
    checkpoint_every: str | float | timedelta = "2s",
    seconds: float | None = None,
    stop: threading.Event | None = None,
    source_options: dict[str, Any] | None = None,
    metrics_port: int | None = None,
    metrics_addr: str = "127.0.0.1",
    rules: str | Path | None = None,
    alerts_schema: str = "workbench_alerts",
    keep_events: bool = False,
    fresh: bool = False,
    cluster: Any = None,
    max_future: str | float | timedelta | None = "5m",
) -> dict[str, Any]:
    """Run ``url`` into ``out`` (and PostgreSQL) until it ends, ``seconds`` pass or ``stop`` is set.

    Parameters
    ----------
    url
        A source URL (see :func:`workbench.sources.from_url`).
    out
        Output folder: ``checkpoint/`` and ``lake/``.
    schema, spec, by, lateness
        As for :meth:`Pipeline.standard` (default spec: 10 s tumbling).
    postgres
        A libpq DSN: window rows are upserted into ``pg_schema.table``.
    pg_schema, table
        Target schema and table (default table: ``windows``).
    checkpoint_every
        Checkpoint interval; a broker acknowledges messages at checkpoints.
    seconds
        Stop after this long (``None``: run until the source ends or ``stop``).
    stop
        Set it to stop (the run then checkpoints and returns).
    source_options
        More keyword arguments for the source.
    rules
        An alert rules file (``workbench alerts check`` format): evaluated on the
        windows, its events written to the lake's ``alerts`` output (routes, inhibition
        and receivers come from the file too) and, with ``postgres``, to the alert
        store's tables in schema ``alerts_schema`` (:class:`~workbench.alerts.store.PostgresStore`).
    alerts_schema
        PostgreSQL schema of the alert store (created when missing).
    fresh
        Start over: remove the checkpoint, the lake and the notification log ``out`` holds.
    keep_events
        Also write every valid record (deduplicated, before windowing) to the lake's
        ``events`` output.
    metrics_port, metrics_addr
        Serve the pipeline's Prometheus metrics at ``http://metrics_addr:metrics_port/metrics``
        while it runs (see :mod:`workbench.pipeline.metrics`).
    cluster
        A :class:`workbench.cluster.Cluster`: dedupe and windows run on its workers (docs/scale-out.md).
    max_future
        Events stamped more than this ahead of the (wall) clock are dead letters
        (``future_timestamp``); see :mod:`workbench.operators.horizon`.

    ``out`` is locked for the run (:class:`~workbench.storage.ownership.OutputLock`): a
    second run on it is refused. A resume checks the source (broker, stream, consumer:
    the URL without its password) against the checkpoint's.

    Returns
    -------
    dict
        Counts, windows emitted, batches, seconds and the source's health.
    """
    out = Path(out)
    with OutputLock(out, what="workbench run"):  # one run at a time writes a folder
        if fresh:
            for part in ("checkpoint", "lake", "outbox.jsonl"):
                target = out / part
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        return _ingest(
            url,
            out,
            schema=schema,
            spec=spec,
            by=by,
            lateness=lateness,
            postgres=postgres,
            pg_schema=pg_schema,
            table=table,
            checkpoint_every=checkpoint_every,
            seconds=seconds,
            stop=stop,
            source_options=source_options,
            metrics_port=metrics_port,
            metrics_addr=metrics_addr,
            rules=rules,
            alerts_schema=alerts_schema,
            keep_events=keep_events,
            cluster=cluster,
            max_future=max_future,
        )


def _ingest(
    url: str,
    out: Path,
    *,
    schema: str | Schema,
    spec: WindowSpec | None,
    by: str | list[str] | None,
    lateness: str | float | timedelta,
    postgres: str | None,
    pg_schema: str,
    table: str | None,
    checkpoint_every: str | float | timedelta,
    seconds: float | None,
    stop: threading.Event | None,
    source_options: dict[str, Any] | None,
    metrics_port: int | None,
    metrics_addr: str,
    rules: str | Path | None,
    alerts_schema: str,
    keep_events: bool,
    cluster: Any,
    max_future: str | float | timedelta | None,
) -> dict[str, Any]:
    from workbench.operators.windows import Tumbling

    stop = stop or threading.Event()
    source = from_url(url, **(source_options or {}))
    # a schema file's extra: keep-numeric learns the undeclared numeric fields from the first batch
    source, s = prime_schema(source, resolve_schema(schema, None), wait=min(30.0, seconds or 30.0), stop=stop)
    pipe = Pipeline(
        source,
        name=f"ingest:{out.resolve()}",
        checkpoints=CheckpointStore(out / "checkpoint"),
        checkpoint_every=checkpoint_every,
        cluster=cluster,
    )
    pipe.identity = {"source": {"kind": "url", "url": masked(url)}}  # broker, stream, consumer; no password
    pipe.standard(s, spec or Tumbling("10s"), by=by, lateness=lateness, events=keep_events, max_future=max_future)
    store = None
    if rules is not None:
        if postgres:
            from workbench.alerts.store import PostgresStore

            store = PostgresStore(postgres, schema=alerts_schema)
        pipe.alerts(rules, store=store, outbox=out / "outbox.jsonl")
    pipe.to_lake(Lake(out / "lake"))
    if postgres:
        pipe.to_postgres(postgres, outputs=["windows"], schema=pg_schema, table=table or "windows")
    finished = threading.Event()
    t0 = time.perf_counter()

    def watch() -> None:  # the run stays on this thread, so its errors reach the caller
        while not finished.wait(0.1):
            if stop.is_set() or (seconds is not None and time.perf_counter() - t0 >= seconds):
                pipe.source.stop()
                return

    watcher = threading.Thread(target=watch, name="wb-ingest-watch", daemon=True)
    watcher.start()
    try:
        with served(pipe, metrics_port, metrics_addr):
            pipe.run()
    finally:
        finished.set()
        pipe.close()
        if store is not None:
            store.close()
    return {
        **pipe.counts(),
        "windows": pipe.outputs["windows"].metrics.rows_out,
        "batches": pipe.batches,
        "seconds": round(time.perf_counter() - t0, 3),
        "source": source.health(),
        **({"alerts": pipe.outputs["alerts"].metrics.rows_out} if rules is not None else {}),
        **({"recoveries": pipe.recoveries} if cluster is not None else {}),
    }
