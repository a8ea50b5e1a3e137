"""``Feed``: what every session of a live view reads, computed once per process.

A running :class:`~workbench.pipeline.Pipeline` pushes window rows and dead letters
into a ``Feed`` on its own thread. The feed keeps them in bounded stores, computes
the fleet band (p5 / median / p95 and the median absolute deviation of every metric
across entities) once per closed window, and serves cheap, cached snapshots of the
KPIs and of the per-node metrics. Browser sessions and notebook cells only *read*:
each holds a :class:`Subscription` (counted, released when the session ends) and
asks for what is newer than the version it has already drawn.

Nothing here imports Panel, so the feed can be tested headless.

Examples
--------
>>> from workbench.testing import FrameSource, server_metrics_frame
>>> from workbench import Pipeline, Tumbling
>>> p = Pipeline(FrameSource([server_metrics_frame(600, hosts=3)]), name="doc-feed")
>>> _ = p.standard("server_metrics", Tumbling("10s"), lateness="0s")
>>> feed = Feed(p)
>>> p.run()
>>> sub = feed.subscribe("doctest")
>>> feed.subscriptions, sorted(feed.entities())
(1, ['h0', 'h1', 'h2'])
>>> version, bands = feed.bands.since(0)
>>> [c for c in bands.columns if c.startswith("cpu_mean")]
['cpu_mean__p05', 'cpu_mean__p50', 'cpu_mean__p95', 'cpu_mean__mad']
>>> sub.close(); feed.subscriptions
0
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from workbench.feeds.columns import Column, describe_columns, family_of, prom_unit
from workbench.feeds.live import LiveFrame
from workbench.pipeline import Pipeline

__all__ = ["Feed", "Kpis", "Subscription", "unit_of"]

_UNITS = {"cpu": "%", "mem": "%", "latency": "ms", "error_rate": "share", "count": "events", "bytes": "B"}
_RAW_CHARS = 2_000  # raw record shown in the dead-letter view, per row


def _ms(t: datetime | None) -> int:
    return 0 if t is None else int(t.timestamp() * 1000)


def _rank(
    rows: pl.DataFrame, bands: pl.DataFrame, metric: str, by: str, n: int, threshold: float, family: str | None
) -> list[str]:
    if rows.height == 0 or metric not in rows.columns:
        return []
    if family is not None:
        rows = rows.filter((pl.col(by) == family) | pl.col(by).str.starts_with(family + "{"))
        if rows.height == 0:
            return []
        value = pl.col(metric).cast(pl.Float64)
        bands = rows.group_by("window_start").agg(
            value.median().alias(f"{metric}__p50"), (value - value.median()).abs().median().alias(f"{metric}__mad")
        )
    if f"{metric}__p50" not in bands.columns:
        return []
    z = (pl.col(metric).cast(pl.Float64) - pl.col(f"{metric}__p50")) / (1.4826 * pl.col(f"{metric}__mad"))
    scored = rows.select("window_start", by, metric).join(
        bands.select("window_start", f"{metric}__p50", f"{metric}__mad"), on="window_start", how="left"
    )
    scored = scored.with_columns(z.abs().fill_nan(None).alias("__z"))
    latest = scored.filter(pl.col("window_start") == pl.col("window_start").max()).select(
        by, pl.col(metric).cast(pl.Float64).alias("__last")
    )
    ranked = (
        scored.group_by(by)
        .agg((pl.col("__z") >= threshold).sum().alias("__hits"), pl.col("__z").max().alias("__peak"))
        .join(latest, on=by, how="left")
        .sort(["__hits", "__last", "__peak"], descending=True, nulls_last=True)
    )
    hot = ranked.filter(pl.col("__hits") > 0).sort(["__hits", "__peak"], descending=True, nulls_last=True)
    rest = ranked.filter(pl.col("__hits") == 0).sort("__last", descending=True, nulls_last=True)
    return pl.concat([hot, rest])[by].head(n).cast(pl.String).to_list()


def unit_of(metric: str) -> str:
    """Unit of a window metric, from its name (``cpu_mean`` → ``%``).

    >>> unit_of("latency_p99"), unit_of("cpu_max"), unit_of("error_rate")
    ('ms', '%', 'share')
    """
    for prefix, unit in _UNITS.items():
        if metric.startswith(prefix):
            return unit
    return ""


@dataclass(frozen=True)
class Kpis:
    """One snapshot of the headline numbers of a live pipeline.

    ``None`` means "not known yet" (or, for ``open_alerts``, no alerting configured).
    """

    at: datetime
    events_per_s: float
    ingested: int
    windows: int
    lag_s: float | None
    watermark_delay_s: float | None
    dead_letter_rate: float
    dead_letters: int
    open_alerts: int | None
    running: bool
    stale: bool
    stale_since: datetime | None
    source: str
    error: str | None


class Subscription:
    """A reader's claim on a feed; ``close()`` releases it (idempotent)."""

    _ids = itertools.count(1)

    def __init__(self, feed: Feed, owner: str) -> None:
        self.id = next(self._ids)
        self.owner = owner
        self._feed = weakref.ref(feed)
        self.closed = False

    def close(self) -> None:
        """Release the subscription."""
        feed = self._feed()
        if not self.closed and feed is not None:
            feed._release(self)
        self.closed = True

    def __repr__(self) -> str:
        return f"Subscription(id={self.id}, owner={self.owner!r}, closed={self.closed})"


@dataclass
class _Rate:
    """Trailing rate of a counter over ``span`` seconds, from bounded samples."""

    span: float = 5.0
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))

    def update(self, t: float, value: int) -> float:
        self.samples.append((t, value))
        while len(self.samples) > 2 and t - self.samples[1][0] >= self.span:
            self.samples.popleft()
        t0, v0 = self.samples[0]
        return (value - v0) / (t - t0) if t > t0 else 0.0


class Feed:
    """Bounded, shared view-model of one running pipeline.

    Parameters
    ----------
    pipeline
        The pipeline to follow; it must have a windowed output named ``output``.
    output
        Name of the window output.
    by
        Entity column of the window rows; default: the window node's key (the schema's entity).
    history_rows
        Window rows kept for new sessions and entity look-ups.
    dead_letter_rows
        Dead letters kept for the dead-letter view.
    stale_after
        Seconds without a batch after which the data is called stale.
    alerts
        Callable returning the number of open alerts, if alerting is configured.
    max_entities
        Entities offered to selectors (the most recently seen are kept).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        output: str = "windows",
        by: str | None = None,
        history_rows: int = 200_000,
        dead_letter_rows: int = 2_000,
        stale_after: float = 10.0,
        alerts: Any = None,
        max_entities: int = 10_000,
    ) -> None:
        self.pipeline = pipeline
        self.output = output
        node = pipeline.outputs.get(output)
        keys = getattr(getattr(node, "state", None), "by", None) or []
        self.schema = getattr(pipeline.source, "schema", None)
        self.by = by or (keys[0] if keys else (self.schema.by[0] if self.schema is not None else "host"))
        spec = getattr(getattr(node, "state", None), "spec", None)
        #: seconds between two windows' starts (a session window's gap counts as its step)
        self.step_s = (getattr(spec, "step_ms", None) or getattr(spec, "gap_ms", None) or 10_000) / 1000
        self.newest: datetime | None = None  # the latest window start received
        aggs = list(getattr(getattr(node, "state", None), "aggs", None) or [])
        self.columns: dict[str, Column] = describe_columns(self.schema, aggs)
        self._ranked: dict[tuple[Any, ...], list[str]] = {}  # top_recent results, a few per process
        self.stale_after = stale_after
        self.alerts = alerts
        self.windows = LiveFrame(max_rows=history_rows)
        #: when set, the feed holds finished data frozen at that time (a static export), not a live stream
        self.snapshot_at: datetime | None = None
        self.bands = LiveFrame(max_rows=max(1_000, history_rows // 20))
        self.dead_letter = LiveFrame(max_rows=dead_letter_rows)
        self._metrics: list[str] | None = None
        self.emit_delays: deque[tuple[float, float]] = deque(maxlen=2_000)  # (when, window end → feed s)
        self.max_entities = max_entities
        self._seen_entities: dict[str, Any] = {}
        self._entity_list: list[str] = []
        self._lock = threading.Lock()
        self._append_lock = threading.Lock()
        self._subs: dict[int, Subscription] = {}
        self._kpis: Kpis | None = None
        self._kpis_at = 0.0
        self._nodes: pl.DataFrame | None = None
        self._nodes_at = 0.0
        self._rates: dict[str, _Rate] = {}
        self._events = _Rate()
        self._dead = _Rate()
        self._last_batch_wall: datetime | None = None
        self._unsubscribe = [
            pipeline.subscribe(output, self._on_windows),
            pipeline.subscribe("dead_letter", self._on_dead_letter),
            pipeline.subscribe_raw(self._on_raw),
        ]

    # -- fed by the pipeline thread ------------------------------------------------
    def _on_raw(self, _batch: Any) -> None:
        self._last_batch_wall = self.pipeline.clock.now()

    def _on_windows(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        if self._metrics is None:
            self._metrics = [
                c
                for c, t in frame.schema.items()
                if t.is_numeric() and c not in (self.by, "window_start", "window_end")
            ]
        end = frame["window_end"].max() if "window_end" in frame.columns else None
        if isinstance(end, datetime):  # how long after a window's end its row reached the feed (wall clock)
            now = self.pipeline.clock.now()
            self.emit_delays.append((now.timestamp(), (now - end).total_seconds()))
        band = self._band(frame)
        self._note_entities(frame)
        start = frame["window_start"].max() if "window_start" in frame.columns else None
        if isinstance(start, datetime) and (self.newest is None or start > self.newest):
            self.newest = start
        with self._append_lock:  # one band frame per window frame: versions stay in step
            self.windows.append(frame)
            self.bands.append(band)

    def _note_entities(self, frame: pl.DataFrame) -> None:
        """Remember entities by the newest window they appeared in (at most ``max_entities``)."""
        latest = frame.group_by(self.by).agg(pl.col("window_start").max())
        seen = self._seen_entities
        for entity, start in latest.iter_rows():
            seen.pop(entity, None)
            seen[entity] = start  # insertion order = recency
        while len(seen) > self.max_entities:
            seen.pop(next(iter(seen)))
        self._entity_list = sorted(seen)

    def _band(self, frame: pl.DataFrame) -> pl.DataFrame:
        aggs = []
        for m in self.metrics:
            col = pl.col(m).cast(pl.Float64)
            aggs += [
                col.quantile(0.05, "linear").alias(f"{m}__p05"),
                col.median().alias(f"{m}__p50"),
                col.quantile(0.95, "linear").alias(f"{m}__p95"),
                (col - col.median()).abs().median().alias(f"{m}__mad"),
            ]
        return frame.group_by("window_start").agg(aggs).sort("window_start")

    def _on_dead_letter(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        raw = frame["raw"] if "raw" in frame.columns else pl.Series("raw", [b""] * frame.height)
        text = pl.Series([bytes(b or b"")[:_RAW_CHARS].decode("utf-8", "replace") for b in raw], dtype=pl.String)
        self.dead_letter.append(
            pl.DataFrame(
                {
                    "received": pl.Series([self.pipeline.clock.now()] * frame.height, dtype=pl.Datetime("ms", "UTC")),
                    "node": frame["node"],
                    "reason": frame["reason"],
                    "raw": text,
                }
            )
        )

    # -- subscriptions -----------------------------------------------------------------
    def subscribe(self, owner: str) -> Subscription:
        """Register a reader (a view in a session or a notebook)."""
        sub = Subscription(self, owner)
        with self._lock:
            self._subs[sub.id] = sub
        return sub

    def _release(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.pop(sub.id, None)

    @property
    def subscriptions(self) -> int:
        """Live subscriptions (zero once every session has ended)."""
        with self._lock:
            return len(self._subs)

    def subscribers(self) -> dict[str, int]:
        """Live subscriptions by owner (the kind of view)."""
        with self._lock:
            owners = [s.owner for s in self._subs.values()]
        return {o: owners.count(o) for o in sorted(set(owners))}

    def close(self) -> None:
        """Detach from the pipeline."""
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe = []

    # -- reads (any thread) --------------------------------------------------------------
    @property
    def metrics(self) -> list[str]:
        """Numeric window columns: the aggregations' outputs (or, for hand-built graphs, after the first window)."""
        if self._metrics is None and self.columns:
            return list(self.columns)
        return list(self._metrics or [])

    @property
    def prometheus(self) -> bool:
        """Whether the rows are scraped Prometheus series (one metric family each)."""
        return self.schema is not None and self.schema.name == "prom_samples" and self.schema.path is None

    def default_metric(self) -> str | None:
        """The first metric that is not an event count (what a chart shows first)."""
        metrics = self.metrics
        return next((m for m in metrics if self.column(m).unit not in ("events", "distinct")), None) or (
            metrics[0] if metrics else None
        )

    def column(self, name: str, family: str | None = None) -> Column:
        """Label and unit of a window column (of a Prometheus family's series when ``family`` is given)."""
        if family is not None:
            if name.startswith("rate"):
                return Column(name, f"{family} per second", prom_unit(family))
            if name.startswith("value"):
                return Column(name, family, prom_unit(family) if not prom_unit(family).endswith("/s") else "")
        return self.columns.get(name) or Column(name, name)

    def families(self) -> list[str]:
        """Prometheus metric names among the entities seen (sorted)."""
        return sorted({family_of(e) for e in self._entity_list})

    def range(self, start: datetime | None, end: datetime | None) -> tuple[int, pl.DataFrame, pl.DataFrame]:
        """Window rows and fleet bands with ``start <= window_start <= end`` (either bound open), and the version."""
        with self._append_lock:
            version = self.windows.version
            rows = self.windows.between("window_start", start, end)
            bands = self.bands.between("window_start", start, end)
        return version, rows, bands

    def top_recent(
        self,
        metric: str,
        n: int,
        start: datetime | None,
        end: datetime | None,
        *,
        threshold: float = 3.5,
        family: str | None = None,
    ) -> list[str]:
        """The ``n`` entities most anomalous within ``[start, end]``, then the highest in the latest window.

        Anomalous means a window with ``|fleet z| >= threshold`` (robust z-score against the
        fleet median and MAD of that window); entities are ranked by how many such windows
        they had, then by their largest ``|z|``. An incident stays in the chart for as long
        as it is within the range, not only while it lasts. ``family`` keeps one Prometheus
        metric's series. Results are shared by sessions for a few seconds.
        """
        if n <= 0:
            return []
        step = 10_000
        key = (metric, n, threshold, family, _ms(start) // step, _ms(end) // step, self.windows.version // 4)
        with self._lock:
            hit = self._ranked.get(key)
        if hit is not None:
            return list(hit)
        _, rows, bands = self.range(start, end)
        ranked = _rank(rows, bands, metric, self.by, n, threshold, family)
        if not ranked:
            return []  # nothing to rank yet: asked again at the next window, not remembered
        with self._lock:
            self._ranked[key] = ranked
            while len(self._ranked) > 32:
                self._ranked.pop(next(iter(self._ranked)))
        return list(ranked)

    def entities(self) -> list[str]:
        """Entities seen (the ``max_entities`` most recent), sorted."""
        return list(self._entity_list)

    def top(self, metric: str, n: int) -> list[str]:
        """The ``n`` entities with the highest ``metric`` in the latest closed window.

        The latest window is the newest of the last few frames: a frame can hold an
        old window that closed late (one record far behind the others at start-up).
        """
        _, rows = self.windows.tail(4)
        if rows.height == 0 or metric not in rows.columns or n <= 0:
            return []
        last = rows.filter(pl.col("window_start") == pl.col("window_start").max())
        return last.sort(metric, descending=True, nulls_last=True)[self.by].head(n).to_list()

    def kpis(self, *, max_age: float = 0.2) -> Kpis:
        """Headline numbers, recomputed at most every ``max_age`` seconds (shared by sessions)."""
        now = time.monotonic()
        with self._lock:
            if self._kpis is not None and now - self._kpis_at < max_age:
                return self._kpis
            kpis = self._compute_kpis(now)
            self._kpis, self._kpis_at = kpis, now
            return kpis

    def _compute_kpis(self, now: float) -> Kpis:
        p = self.pipeline
        counts = p.counts()
        health = p.health(stale_after=self.stale_after)
        wall = p.clock.now()
        ingested, dead = counts["ingested"], counts["dead_lettered"]
        events = self._events.update(now, ingested)
        dead_rate = self._dead.update(now, dead)
        win = p.outputs.get(self.output)
        wm = getattr(win, "watermark", None)
        lateness = getattr(getattr(win, "state", None), "lateness_ms", 0)
        newest = wm + timedelta(milliseconds=lateness) if wm is not None else None
        stale = bool(health["stale"] or (health["error"] is not None))
        return Kpis(
            at=wall,
            events_per_s=events,
            ingested=ingested,
            windows=getattr(getattr(win, "metrics", None), "rows_out", 0),
            lag_s=None if newest is None else (wall - newest).total_seconds(),
            watermark_delay_s=None if wm is None else (wall - wm).total_seconds(),
            dead_letter_rate=dead_rate / events if events > 0 else (dead / ingested if ingested else 0.0),
            dead_letters=dead,
            open_alerts=None if self.alerts is None else int(self.alerts()),
            running=health["running"],
            stale=stale,
            stale_since=self._last_batch_wall if stale else None,
            source=type(p.source).__name__,
            error=health["error"],
        )

    def nodes(self, *, max_age: float = 0.5) -> pl.DataFrame:
        """Per-node metrics of the pipeline with the live ``rows_per_s`` (trailing 5 s)."""
        now = time.monotonic()
        with self._lock:
            if self._nodes is not None and now - self._nodes_at < max_age:
                return self._nodes
            m = self.pipeline.metrics()
            live = [
                self._rates.setdefault(node, _Rate()).update(now, rows)
                for node, rows in zip(m["node"], m["rows_in"], strict=True)
            ]
            self._nodes = m.with_columns(
                pl.Series("rows_per_s", live, dtype=pl.Float64),
                (pl.col("seconds") / pl.col("batches").clip(1) * 1000).alias("mean_batch_ms"),
            )
            self._nodes_at = now
            return self._nodes

    def since(self, version: int) -> tuple[int, pl.DataFrame, pl.DataFrame]:
        """Window rows and their fleet bands appended after ``version`` (read together), and the version."""
        with self._append_lock:
            current, rows = self.windows.since(version)
            _, bands = self.bands.since(version)
        return current, rows, bands

    def __repr__(self) -> str:
        return f"Feed(pipeline={self.pipeline.name!r}, windows={self.windows.rows}, subscriptions={self.subscriptions})"
