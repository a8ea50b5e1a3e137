"""The offline reference a streaming result must equal, and event frames to feed both.

- :func:`offline_windows` computes windows in one polars query over a whole frame
  (in arrival order), after removing the rows :func:`late_mask` calls late.
- :func:`server_metrics_frame` is a seeded frame of server metrics;
  :func:`server_metrics_frames` a hypothesis strategy for event frames with random
  disorder (needs ``hypothesis``).

Examples
--------
>>> import polars as pl
>>> from datetime import datetime, UTC
>>> from workbench.operators.windows import Tumbling
>>> t = [datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC) for s in (1, 12, 2)]
>>> df = pl.DataFrame({"host": ["a", "a", "a"], "ts": t})
>>> offline_windows(df, Tumbling("10s"), by="host", aggs=[pl.len().alias("n")], lateness="5s")["n"].to_list()
[1, 1]
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from workbench.config import parse_duration
from workbench.operators.windows import Session, Sliding, Tumbling, WindowSpec
from workbench.schema import TS_DTYPE

__all__ = [
    "late_mask",
    "offline_windows",
    "server_metrics_frame",
    "server_metrics_frames",
]


def late_mask(frame: pl.DataFrame, *, time: str = "ts", lateness: str | float | timedelta = "5s") -> pl.Series:
    """Per row (in arrival order): older than the newest earlier event time minus lateness."""
    lat = parse_duration(lateness, what="lateness")
    t = pl.col(time).dt.epoch("ms")
    return frame.select((t < t.cum_max().shift(1) - lat).fill_null(False)).to_series()


def offline_windows(
    frame: pl.DataFrame,
    spec: WindowSpec,
    *,
    by: str | list[str] | None,
    aggs: list[pl.Expr],
    time: str = "ts",
    lateness: str | float | timedelta = "5s",
) -> pl.DataFrame:
    """Windows over a whole frame at once, after removing late rows.

    ``frame`` must be in arrival order (lateness depends on it) and already
    validated and de-duplicated.
    """
    keys = [by] if isinstance(by, str) else list(by or [])
    df = frame.filter(~late_mask(frame, time=time, lateness=lateness))
    df = df.with_columns(__t=pl.col(time).dt.epoch("ms"))
    names = [a.meta.output_name() for a in aggs]
    if isinstance(spec, Session):
        gap = spec.gap_ms
        df = df.sort([*keys, "__t"])
        new = (pl.col("__t") - pl.col("__t").shift(1).over(keys or None) >= gap).fill_null(True)
        df = df.with_columns(__k=new.cast(pl.Int64).cum_sum().over(keys or None))
        out = df.group_by([*keys, "__k"]).agg(
            pl.col("__t").min().alias("__s"), (pl.col("__t").max() + gap).alias("__e"), *aggs
        )
    else:
        assert isinstance(spec, Tumbling | Sliding)
        size, step, off = spec.size_ms, spec.step_ms, spec.offset_ms
        last = (pl.col("__t") - off) // step
        first = (pl.col("__t") - size - off) // step + 1
        if step == size:
            df = df.with_columns(__k=last)
        else:
            df = df.with_columns(__k=pl.int_ranges(first, last + 1)).explode("__k")
        out = (
            df.group_by([*keys, "__k"])
            .agg(*aggs)
            .with_columns(__s=pl.col("__k") * step + off, __e=pl.col("__k") * step + off + size)
        )
    return out.select(
        *keys,
        pl.from_epoch("__s", time_unit="ms").cast(TS_DTYPE).alias("window_start"),
        pl.from_epoch("__e", time_unit="ms").cast(TS_DTYPE).alias("window_end"),
        *names,
    ).sort(["window_start", *keys])


def server_metrics_frame(
    n: int, *, hosts: int = 4, step_ms: int = 100, seed: int = 0, start: datetime | None = None
) -> pl.DataFrame:
    """``n`` valid server_metrics events in time order, round-robin over ``hosts`` hosts.

    Host ``h0`` runs hotter than the others, so tests of rankings and outliers have
    a known answer.

    >>> f = server_metrics_frame(8, hosts=2)
    >>> f.height, f["host"].unique().sort().to_list()
    (8, ['h0', 'h1'])
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    t0 = start or datetime(2024, 1, 1, tzinfo=UTC)
    host = np.arange(n) % hosts
    cpu = np.clip(rng.normal(30, 5, n) + np.where(host == 0, 40, 0), 0, 100)
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "ts": [t0 + timedelta(milliseconds=i * step_ms) for i in range(n)],
            "host": [f"h{h}" for h in host],
            "cpu": cpu,
            "mem": np.clip(rng.normal(50, 3, n), 0, 100),
            "latency_ms": np.abs(rng.normal(80, 20, n)),
            "status": np.where(rng.random(n) < 0.02, 500, 200).astype(np.int64),
        },
        schema_overrides={"ts": TS_DTYPE},
    )


def server_metrics_frames(
    *, max_events: int = 300, hosts: int = 4, span_s: int = 120, max_disorder_s: float = 4.0
) -> Any:
    """Hypothesis strategy: ``(frame_in_arrival_order, split_points)``.

    Events are spread over ``span_s`` seconds; arrival order is event time plus a
    random delay below ``max_disorder_s``, so no event is later than that behind the
    newest one before it.
    """
    from hypothesis import strategies as st

    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    @st.composite
    def build(draw: Any) -> tuple[pl.DataFrame, list[int]]:
        n = draw(st.integers(0, max_events))
        ms = draw(st.lists(st.integers(0, span_s * 1000), min_size=n, max_size=n))
        delay = draw(st.lists(st.integers(0, int(max_disorder_s * 1000) - 1), min_size=n, max_size=n))
        host = draw(st.lists(st.integers(0, hosts - 1), min_size=n, max_size=n))
        val = draw(st.lists(st.floats(0, 100, allow_nan=False, width=32), min_size=n, max_size=n))
        status = draw(st.lists(st.sampled_from([200, 200, 404, 500, 503]), min_size=n, max_size=n))
        frame = pl.DataFrame(
            {
                "event_id": [f"e{i}" for i in range(n)],
                "ts": [t0 + timedelta(milliseconds=m) for m in ms],
                "host": [f"h{h}" for h in host],
                "cpu": [float(v) for v in val],
                "mem": [float(100 - v) for v in val],
                "latency_ms": [float(v) * 3 for v in val],
                "status": status,
                "__arrival": [m + d for m, d in zip(ms, delay, strict=True)],
            },
            schema_overrides={"ts": TS_DTYPE},
        )
        frame = frame.sort("__arrival", maintain_order=True).drop("__arrival")
        cuts = sorted(draw(st.lists(st.integers(0, max(n, 0)), max_size=8)))
        return frame, cuts

    return build()
