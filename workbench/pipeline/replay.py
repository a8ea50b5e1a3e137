"""Headless replay of an event file into windows, dead letters and a summary.

``replay`` is what ``workbench replay`` runs: a standard pipeline over a
:class:`~workbench.sources.files.FileSource`, checkpointed into ``OUT/checkpoint``,
so an interrupted replay started again resumes and produces identical output.

Output layout::

    OUT/windows/part-<epoch>.parquet      window rows
    OUT/dead_letter/part-<epoch>.parquet  rejected records: node, reason, raw bytes
    OUT/late/part-<epoch>.parquet         events past the allowed lateness
    OUT/summary.json                      ingested, valid, dead_lettered, duplicates, late, windows, seconds
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from workbench.operators.windows import Session, Sliding, Tumbling, WindowSpec
from workbench.pipeline import Pipeline
from workbench.schema import Schema
from workbench.sources.files import FileSource
from workbench.storage.checkpoints import CheckpointStore
from workbench.storage.lake import Lake
from workbench.storage.ownership import OutputLock

__all__ = ["replay", "window_spec"]


def window_spec(size: str | None = "10s", *, slide: str | None = None, session: str | None = None) -> WindowSpec:
    """Build a window spec from CLI-style options.

    Examples
    --------
    >>> window_spec("1m", slide="10s")
    Sliding(size='1m', step='10s', offset=0)
    >>> window_spec(None, session="30s")
    Session(gap='30s')
    """
    if session:
        return Session(session)
    if slide:
        return Sliding(size or "10s", slide)
    return Tumbling(size or "10s")


def replay(
    path: str | Path,
    out: str | Path,
    *,
    schema: str | Path | Schema = "server_metrics",
    spec: WindowSpec | None = None,
    by: str | list[str] | None = None,
    aggs: list[pl.Expr] | None = None,
    lateness: str | float | timedelta = "5s",
    max_rows: int = 100_000,
    checkpoint_every: str | float | timedelta = "10s",
    checkpoint_batches: int | None = 20,
    max_batches: int | None = None,
    progress: Callable[[int], None] | None = None,
    fresh: bool = False,
    rules: str | Path | None = None,
    cluster: Any = None,
    max_future: str | float | timedelta | None = "5m",
) -> dict[str, Any]:
    """Replay ``path`` into ``out``; resume when ``out`` holds a checkpoint.

    Parameters
    ----------
    path
        JSONL, CSV or Parquet events.
    out
        Output folder.
    schema
        Event schema: a built-in name, a schema file (YAML) or a value.
    spec
        Window spec (default: 10 s tumbling).
    by
        Window key (default: the schema's entity).
    aggs
        Aggregations (default: the schema's standard set).
    lateness
        Allowed lateness.
    max_rows
        Records per batch.
    checkpoint_every, checkpoint_batches
        Checkpoint interval (time, batches).
    max_batches
        Stop after this many batches without finishing (a partial run).
    progress
        Called with the source offset after each batch.
    fresh
        Start over: remove the checkpoint and the outputs ``out`` holds.
    rules
        An alert rules file evaluated on the windows: output ``alerts``.
    cluster
        A :class:`workbench.cluster.Cluster`: dedupe and windows run on its workers,
        sharded by key group (same outputs; see docs/scale-out.md).
    max_future
        Events stamped more than this ahead of the newest events are dead letters
        (``future_timestamp``); see :mod:`workbench.operators.horizon`.

    Returns
    -------
    dict
        The summary also written to ``out/summary.json``.
    """
    out = Path(out)
    with OutputLock(out, what="workbench replay"):  # one run at a time writes a folder
        if fresh:
            for part in ("checkpoint", "windows", "dead_letter", "late", "alerts", "outbox.jsonl", "summary.json"):
                target = out / part
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        return _replay(
            path,
            out,
            schema,
            spec,
            by,
            aggs,
            lateness,
            max_rows,
            checkpoint_every,
            checkpoint_batches,
            max_batches,
            progress,
            rules,
            max_future,
            cluster,
        )


def _replay(
    path: str | Path,
    out: Path,
    schema: str | Path | Schema,
    spec: WindowSpec | None,
    by: str | list[str] | None,
    aggs: list[pl.Expr] | None,
    lateness: str | float | timedelta,
    max_rows: int,
    checkpoint_every: str | float | timedelta,
    checkpoint_batches: int | None,
    max_batches: int | None,
    progress: Callable[[int], None] | None,
    rules: str | Path | None,
    max_future: str | float | timedelta | None,
    cluster: Any,
) -> dict[str, Any]:
    from workbench.project.check import read_dead_letters, top_reasons
    from workbench.project.infer import resolve_schema

    s = resolve_schema(schema, path)  # a schema file's undeclared numeric fields become metrics
    source = FileSource(path, max_rows=max_rows)
    pipe = Pipeline(
        source,
        name=f"replay:{out.resolve()}",
        checkpoints=CheckpointStore(out / "checkpoint"),
        checkpoint_every=checkpoint_every,
        checkpoint_batches=checkpoint_batches,
        cluster=cluster,
    )
    pipe.identity = {"source": source.identity(out)}  # paths relative to out: a moved folder resumes
    pipe.standard(s, spec or Tumbling("10s"), by=by, aggs=aggs, lateness=lateness, max_future=max_future)
    if rules is not None:
        pipe.alerts(rules, outbox=out / "outbox.jsonl")
    pipe.to_lake(Lake(out, partition=False))
    if progress is not None:
        pipe.subscribe_raw(lambda _: progress(source.offset))
    t0 = time.perf_counter()
    try:
        pipe.run(max_batches=max_batches)
    finally:
        pipe.close()
    pipe.check_invariant()
    window_node = pipe.outputs["windows"]
    summary = {
        **pipe.counts(),
        "windows": window_node.metrics.rows_out,
        "seconds": round(time.perf_counter() - t0, 3),
        "complete": source.exhausted,
        "batches": pipe.batches,
        "offset": pipe.offset,
    }
    if cluster is not None:
        summary["cluster"] = {
            "address": cluster.address,
            "key_groups": cluster.key_groups,
            "recoveries": pipe.recoveries,
        }
    if rules is not None:
        summary["alerts"] = pipe.outputs["alerts"].metrics.rows_out
    summary["events_per_s"] = round(summary["ingested"] / summary["seconds"]) if summary["seconds"] else None
    if summary["dead_lettered"]:
        reasons = top_reasons(read_dead_letters(out), 5).drop("raw")
        summary["dead_letter_reasons"] = reasons.to_dicts()
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
