"""Health and per-node metrics of a pipeline: what its status page and metrics views read."""

from __future__ import annotations

from typing import Any

import polars as pl

from workbench.operators.base import Operator
from workbench.sources.base import Source

__all__ = ["health", "node_metrics"]

_METRICS_SCHEMA: dict[str, pl.DataType] = {
    **dict.fromkeys(("node", "kind"), pl.String()),
    **dict.fromkeys(("batches", "rows_in", "rows_out", "rejected", "errors", "state_size"), pl.Int64()),
    **dict.fromkeys(("seconds", "last_batch_ms", "rows_per_s"), pl.Float64()),
    "watermark": pl.Datetime("ms", "UTC"),
}


def health(
    source: Source,
    *,
    now: float,
    started_at: float | None,
    running: bool,
    error: BaseException | None,
    batches: int,
    stale_after: float,
) -> dict[str, Any]:
    """Liveness of a run: is it running, did it fail, how old is the last batch.

    A source that stopped producing is not an error by itself (a quiet stream), so
    ``stale`` is reported separately: no batch for ``stale_after`` seconds (by the
    injected clock, ``now``) while the pipeline is meant to run, or a source that
    lost its connection.
    """
    last = source.last_batch_at
    reference = last if last is not None else started_at
    age = None if reference is None else max(0.0, now - reference)
    state = source.health()
    down = state.get("connected") is False
    return {
        "running": running,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "batches": batches,
        "last_batch_age_s": age,
        "stale": bool(running and ((age is not None and age > stale_after) or down)),
        "exhausted": source.exhausted,
        "source": state,
    }


def node_metrics(ops: list[Operator]) -> pl.DataFrame:
    """One row per node: rows in/out, rejects, batch latency, state size, watermark.

    Examples
    --------
    >>> node_metrics([]).columns[:4]
    ['node', 'kind', 'batches', 'rows_in']
    """
    rows = []
    for op in ops:
        m = op.metrics
        rows.append(
            {
                "node": op.name,
                "kind": type(op).__name__,
                "batches": m.batches,
                "rows_in": m.rows_in,
                "rows_out": m.rows_out,
                "rejected": m.rejected,
                "errors": m.errors,
                "seconds": m.seconds,
                "last_batch_ms": m.last_batch_ms,
                "rows_per_s": m.rows_in / m.seconds if m.seconds else 0.0,
                "state_size": op.state_size,
                "watermark": op.watermark,
            }
        )
    if not rows:  # a graph without Workbench nodes (e.g. frames replayed from a lake): same columns
        return pl.DataFrame(schema=_METRICS_SCHEMA)
    return pl.DataFrame(rows, schema_overrides={"watermark": pl.Datetime("ms", "UTC")})
