"""Feeds that hold finished data, so a view can be drawn (and exported) without a live pipeline.

:func:`simulated_feed` runs the standard pipeline over a seeded simulation to the
end; :func:`lake_feed` reads the window rows (and dead letters) of a Parquet lake,
optionally within a time range. Either gives a :class:`~workbench.feeds.feed.Feed`
that every view accepts; nothing here imports Panel.

Examples
--------
>>> feed = simulated_feed(events=3_000, hosts=5, seed=1)
>>> sorted(feed.entities())[:2], feed.windows.rows > 0
(['api-ap-south-1-001', 'auth-us-east-1-001'], True)
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from workbench.clock import ManualClock
from workbench.errors import ConfigError
from workbench.feeds.feed import Feed
from workbench.operators.windows import Tumbling
from workbench.pipeline import Pipeline
from workbench.sources.frames import FrameSource
from workbench.sources.simulator import Simulator
from workbench.storage.lake import Lake

__all__ = ["lake_feed", "simulated_feed", "time_filter"]

_names = itertools.count(1)


def simulated_feed(
    *,
    events: int = 20_000,
    seed: int = 0,
    hosts: int = 20,
    rate: float = 50.0,
    window: str = "10s",
    lateness: str = "5s",
    start: datetime | None = None,
) -> Feed:
    """A feed filled by the standard pipeline run to the end over a seeded simulation.

    Parameters
    ----------
    events
        Simulated events.
    seed
        Seeds the simulation (same seed, same feed).
    hosts
        Simulated hosts.
    rate
        Events per second of event time (``events / rate`` seconds are covered).
    window, lateness
        Tumbling window size and allowed lateness.
    start
        Event time of the first event (aware; default 2024-01-01 UTC).
    """
    if events < 1:
        raise ConfigError(f"simulated feed: events must be >= 1, not {events}")
    sim = Simulator(
        "server_metrics", hosts=hosts, rate=rate, seed=seed, start=start or datetime(2024, 1, 1, tzinfo=UTC)
    )
    data = sim.generate(events)
    end = sim.start_time + timedelta(seconds=events / rate)
    pipe = Pipeline(FrameSource([data.data], clock=ManualClock(end)), name=f"frozen-sim-{next(_names)}", prefetch=0)
    pipe.standard("server_metrics", Tumbling(window), lateness=lateness)
    feed = Feed(pipe, history_rows=max(200_000, events))
    pipe.run()
    pipe.close()
    feed.snapshot_at = end
    return feed


def time_filter(frame: pl.DataFrame, column: str, start: datetime | None, end: datetime | None) -> pl.DataFrame:
    """Rows of ``frame`` with ``start <= column < end`` (either bound may be ``None``).

    >>> from datetime import UTC
    >>> t = [datetime(2024, 1, 1, h, tzinfo=UTC) for h in (0, 6, 12)]
    >>> time_filter(pl.DataFrame({"ts": t}), "ts", t[1], None).height
    2
    """
    for bound in (start, end):
        if bound is not None and bound.tzinfo is None:
            raise ConfigError(f"time range of {column!r}: bounds must be timezone-aware, not {bound!r}")
    if frame.height == 0 or column not in frame.columns:
        return frame
    if start is not None:
        frame = frame.filter(pl.col(column) >= start)
    if end is not None:
        frame = frame.filter(pl.col(column) < end)
    return frame


def lake_feed(
    lake: str | Path | Lake,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    output: str = "windows",
    by: str = "host",
) -> Feed:
    """A feed holding the window rows (and dead letters) of a lake, within ``[start, end)``.

    The rows go through a pipeline of their own (a source of frames, one output), so
    the views see them exactly as they would see a live pipeline's windows.
    """
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    if output not in lake.outputs():
        raise ConfigError(f"lake {str(lake.root)!r}: no output {output!r}; outputs: {lake.outputs()}")
    rows = time_filter(lake.read(output), "window_start", start, end).sort("window_start")
    if rows.height == 0:
        raise ConfigError(f"lake {str(lake.root)!r}: no {output!r} rows between {start} and {end}")
    dead = lake.read("dead_letter") if "dead_letter" in lake.outputs() else pl.DataFrame()
    newest = rows["window_end"].max() if "window_end" in rows.columns else rows["window_start"].max()
    clock = ManualClock(newest if isinstance(newest, datetime) else None)
    # one frame per window start: the feed computes the fleet band per closed window, as live
    frames = [part for _, part in rows.group_by("window_start", maintain_order=True)]
    pipe = Pipeline(FrameSource(frames, clock=clock), name=f"frozen-lake-{next(_names)}", prefetch=0)

    def frame_of(batch: Any) -> pl.DataFrame:
        return batch.frame

    pipe.output(output, pipe.head.map(frame_of))
    feed = Feed(pipe, output=output, by=by, history_rows=max(200_000, rows.height))
    pipe.run()
    if dead.height and {"node", "reason"} <= set(dead.columns):
        pipe.dead_letter.emit(dead)  # the feed keeps the latest, as it does live
    pipe.close()
    feed.snapshot_at = newest if isinstance(newest, datetime) else datetime.now(UTC)
    return feed
