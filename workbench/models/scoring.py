"""Per-entity online scoring of window rows: the state behind the ``score`` node.

A :class:`Scorer` keeps one detector, one :class:`~workbench.models.threshold.AdaptiveThreshold`
and the drift monitors of every entity (a host, a service …) in an entity table. Each
window row is scored by its entity's detector *before* the detector learns it
(test-then-train); its first ``warm_up`` rows score 0. The table is bounded: an entity
not seen for ``idle`` of event time expires, and past ``max_entities`` the entity seen
least recently is evicted. Rows are gathered per batch with polars (columns to numpy
once); river runs once per window row, never per raw event.

A detector that explains its score (``explains``: the default ``context``, which scores a
row by its most surprising feature) adds ``anomaly_metric``: on each detection, the
feature that drove it (null on other rows) — the evidence behind an alert.

With ``fill`` (e.g. ``{"count": 0}``) an entity that is known but has no row in a
closed window gets one, with those values: a host that went silent scores on its
silence instead of vanishing from view.

Examples
--------
>>> import polars as pl
>>> from datetime import UTC, datetime, timedelta
>>> from workbench.models.detectors import RobustZScore
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> ends = [t0 + timedelta(seconds=10 * i) for i in range(60)]
>>> cpu = [20.0 + (i % 3) for i in range(60)]; cpu[50] = 95.0
>>> rows = pl.DataFrame({"host": ["a"] * 60, "window_end": ends, "cpu_mean": cpu})
>>> scorer = Scorer(RobustZScore(warm_up=10), features=["cpu_mean"], by="host")
>>> scored, drift = scorer.process(rows)
>>> scored.filter("is_anomaly")["cpu_mean"].to_list(), scorer.state_size
([95.0], 1)
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import polars as pl
import river

from workbench.config import parse_duration
from workbench.errors import CheckpointError, ConfigError
from workbench.models.detectors import Detector
from workbench.models.drift import DriftMonitor
from workbench.models.episodes import Hysteresis, StreamState
from workbench.models.threshold import AdaptiveThreshold

__all__ = ["DRIFT_SCHEMA", "SCORE_COLUMNS", "Scorer"]

#: Columns a score node adds to each window row.
SCORE_COLUMNS = ("anomaly_score", "threshold", "is_anomaly")
#: Drift events (plus the entity columns first).
DRIFT_SCHEMA = {
    "feature": pl.String(),
    "detector": pl.String(),
    "time": pl.Datetime("ms", "UTC"),
    "value": pl.Float64(),
}
_SKIP = {"window_start", "window_end", "in_episode", *SCORE_COLUMNS}


@dataclass
class _Entity:
    """What a scorer holds for one entity."""

    model: Detector
    threshold: AdaptiveThreshold
    drift: dict[str, DriftMonitor] = field(default_factory=dict)
    rows: int = 0
    last_seen: int = 0  # event time (ms) of its newest row
    skipped: int = 0  # anomalous rows in a row not learned
    episode: StreamState | None = None  # its decision state, with ``episodes``
    held: int = 0  # rows of the open anomalous state (``sustain``); 0: none open
    normal: dict[str, deque[float]] | None = None  # recent values of normal rows, per feature (``sustain``)


def _beyond(x: dict[str, float], normal: dict[str, deque[float]]) -> bool:
    """Whether any value of ``x`` lies beyond its feature's normal range, widened by 10 % of it."""
    for name, value in x.items():
        seen = normal.get(name)
        if not seen or len(seen) < 10:
            continue
        low, high = min(seen), max(seen)
        pad = 0.1 * (high - low) if high > low else 0.1 * abs(high) or 1e-9
        if value < low - pad or value > high + pad:
            return True
    return False


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


class Scorer:
    """Detectors, thresholds and drift monitors per entity over window rows.

    Parameters
    ----------
    detector
        The prototype; each entity gets a ``clone()``.
    features
        Numeric columns fed to the detector; None: every numeric column of the first
        batch but the entity, the window bounds and the score columns.
    by
        Entity column(s).
    time
        Event-time column of a row (a window's end).
    warm_up
        Rows an entity is learned from before its scores count (they score 0).
    threshold
        The prototype threshold (cloned per entity).
    drift
        Drift detectors (names in :data:`~workbench.models.drift.DRIFT_DETECTORS`) run on
        each of ``drift_on``; empty: none.
    drift_on
        Series watched for drift: feature names and/or ``"anomaly_score"``; None: all
        features and the score.
    idle
        An entity without a row for this long (event time) is forgotten.
    max_entities
        Most entities held; the least recently seen is evicted first.
    fill
        Values of the rows made for known entities missing from a closed window.
    seed
        Seeds the drift detectors that draw.
    shared
        One detector and threshold for all entities (rows still carry their entity):
        for populations of many sparse entities, where an entity is unusual against
        its peers (a port scanner among clients) rather than against its own past.
    where
        Only rows where this polars predicate holds are scored and learned (e.g.
        ``pl.col("flows") >= 20``: enough events for a statistic to mean something);
        the others pass through with score 0 and ``is_anomaly`` false.
    skip_anomalies
        Up to this many consecutive anomalous rows of an entity are not learned, so an
        incident does not teach the detector that it is normal (and does not widen its
        spread for the next incident); past that many the rows are learned again, so a
        lasting change becomes the new normal. 0: every row is learned.
    sustain
        A detection opens a *state*: the entity stays anomalous (``is_anomaly``) on the rows
        after it while any feature stays beyond the range of its values on the last
        ``baseline`` normal rows (widened by 10 % of that range), for up to ``sustain`` rows
        — a pinned CPU or a stuck valve stays anomalous until it recovers, so an alert keeps
        firing, though the detector itself soon finds the new level familiar. Past
        ``sustain`` rows the level is the new normal. Held rows are anomalous rows for
        ``skip_anomalies``. 0: off.
    baseline
        Normal rows per feature kept to judge a recovery (``sustain``).
    episodes
        Decisions with hysteresis (:class:`~workbench.models.episodes.Hysteresis`, or its
        options as a mapping: ``{"enter": 0.8, "leave": 0.5, "min_rows": 3, "min_gap": 5}``):
        each row gets ``in_episode``, true while an episode of its entity's scores is open,
        so a score wavering around a level is one episode, not a burst. None: no column.
    """

    def __init__(
        self,
        detector: Detector,
        *,
        features: Sequence[str] | None = None,
        by: str | Sequence[str] = "host",
        time: str = "window_end",
        warm_up: int = 10,
        threshold: AdaptiveThreshold | None = None,
        drift: Sequence[str] = ("adwin",),
        drift_on: Sequence[str] | None = None,
        idle: str | float | timedelta = "30m",
        max_entities: int = 10_000,
        fill: dict[str, float] | None = None,
        seed: int = 0,
        shared: bool = False,
        where: pl.Expr | None = None,
        skip_anomalies: int = 0,
        episodes: Hysteresis | dict[str, Any] | None = None,
        sustain: int = 0,
        baseline: int = 200,
    ) -> None:
        if skip_anomalies < 0:
            raise ConfigError(f"scorer: skip_anomalies must be >= 0 rows, not {skip_anomalies}")
        if sustain < 0:
            raise ConfigError(f"scorer: sustain must be >= 0 rows, not {sustain}")
        if baseline < 2:
            raise ConfigError(f"scorer: baseline must be >= 2 rows, not {baseline}")
        if shared and fill:
            raise ConfigError("scorer: fill needs a model per entity; it cannot be combined with shared=True")
        if warm_up < 0:
            raise ConfigError(f"scorer: warm_up must be >= 0 rows, not {warm_up}")
        if max_entities < 1:
            raise ConfigError(f"scorer: max_entities must be >= 1, not {max_entities}")
        self.prototype = detector
        self.features = list(features) if features is not None else None
        self.by = [by] if isinstance(by, str) else list(by)
        self.time = time
        self.warm_up = warm_up
        self.threshold = threshold or AdaptiveThreshold()
        self.drift_names = tuple(drift)
        DriftMonitor(self.drift_names)  # validates the names now, not on the first row
        self.drift_on = list(drift_on) if drift_on is not None else None
        self.idle_ms = parse_duration(idle, what="idle")
        self.max_entities = max_entities
        self.fill = dict(fill or {})
        self.seed = seed
        self.shared = shared
        self.where = where
        self.skip_anomalies = skip_anomalies
        self.sustain, self.baseline = sustain, baseline
        self.episodes = Hysteresis.from_options(episodes) if isinstance(episodes, dict) else episodes
        self.entities: OrderedDict[Any, _Entity] = OrderedDict()  # least recently seen first
        self.expired = 0
        self.evicted = 0
        self.watermark_ms: int | None = None  # newest row time seen

    # -- building blocks ----------------------------------------------------------------
    def _entity(self, key: Any) -> _Entity:
        ent = self.entities.get(key)
        if ent is None:
            ent = self.entities[key] = _Entity(self.prototype.clone(), self.threshold.clone())
            while len(self.entities) > self.max_entities:
                self.entities.popitem(last=False)
                self.evicted += 1
        return ent

    def _choose_features(self, frame: pl.DataFrame) -> list[str]:
        if self.features is None:
            skip = {*_SKIP, *self.by, self.time}
            self.features = [c for c, t in frame.schema.items() if t.is_numeric() and c not in skip]
        missing = [c for c in (*self.by, self.time, *self.features) if c not in frame.columns]
        if missing:
            raise ConfigError(f"scorer: window rows lack the columns {missing}; they have {frame.columns}")
        return self.features

    def _keys(self, frame: pl.DataFrame) -> list[Any]:
        cols = [
            frame[c].cast(pl.String).to_list() if frame[c].dtype != pl.String else frame[c].to_list() for c in self.by
        ]
        return cols[0] if len(cols) == 1 else list(zip(*cols, strict=True))

    def _times(self, frame: pl.DataFrame) -> list[int]:
        col = frame[self.time]
        return (col.dt.epoch("ms") if col.dtype.is_temporal() else col.cast(pl.Int64)).to_list()

    def _filled(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` plus a row per known entity absent from each of its windows."""
        if not self.fill or not self.entities:
            return frame
        known = pl.DataFrame([k if isinstance(k, tuple) else (k,) for k in self.entities], schema=self.by, orient="row")
        known = known.with_columns(
            __seen=pl.Series([e.last_seen for e in self.entities.values()], dtype=pl.Int64)
        ).with_columns([pl.col(c).cast(frame.schema[c]) for c in self.by])
        bounds = [c for c in ("window_start", self.time) if c in frame.columns]
        windows = frame.select(bounds).unique()
        t = pl.col(self.time)
        end_ms = t.dt.epoch("ms") if frame.schema[self.time].is_temporal() else t.cast(pl.Int64)
        grid = windows.join(known, how="cross").filter(
            (pl.col("__seen") < end_ms) & (pl.col("__seen") >= end_ms - self.idle_ms)
        )
        missing = grid.join(frame.select([*bounds, *self.by]), on=[*bounds, *self.by], how="anti")
        if missing.height == 0:
            return frame
        values = [pl.lit(v).cast(frame.schema[c]).alias(c) for c, v in self.fill.items() if c in frame.columns]
        made = missing.drop("__seen").with_columns(values)
        return pl.concat([frame, made], how="diagonal_relaxed").select(frame.columns)

    # -- the hot path -----------------------------------------------------------------------
    def process(self, frame: pl.DataFrame, *, positions: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Score and learn the rows of ``frame``; returns ``(scored rows, drift events)``.

        With ``positions`` the drift events carry ``__row``: the position of their row
        in the scored frame (a cluster merges the events of its hosts in row order).
        """
        if frame.height == 0:
            return frame, self._drift_frame([], frame, positions)
        features = self._choose_features(frame)
        frame = self._filled(frame).sort(self.time, maintain_order=True)
        keys, times = self._keys(frame), self._times(frame)
        if self.shared:
            keys = ["*"] * len(keys)
        values = frame.select(pl.col(features).cast(pl.Float64)).to_numpy()
        scored_rows = (
            frame.select(self.where.fill_null(False)).to_series().to_list() if self.where is not None else None
        )
        watch = self.drift_on if self.drift_on is not None else [*features, "anomaly_score"]
        watched = [(name, features.index(name) if name in features else -1) for name in watch]
        scores, thresholds, flags, held = [], [], [], []
        drivers: list[str | None] = []  # the feature behind each detection (detectors that explain)
        events: list[tuple[Any, str, str, int, float, int]] = []
        for i, key in enumerate(keys):
            if scored_rows is not None and not scored_rows[i]:
                scores.append(0.0)
                thresholds.append(math.nan)
                flags.append(False)
                held.append(False)
                drivers.append(None)
                continue
            row = values[i]
            x = {f: float(v) for f, v in zip(features, row, strict=True) if not math.isnan(v)}
            ent, t = self._entity(key), times[i]
            score = ent.model.score_one(x)
            ent.rows += 1
            if ent.rows <= self.warm_up:
                score, threshold, flag = 0.0, ent.threshold.threshold, False
            else:
                threshold, flag = ent.threshold.decide(score)
            if self.sustain:
                flag = self._sustained(ent, x, flag)
            ent.skipped = ent.skipped + 1 if flag else 0
            if ent.skipped == 0 or ent.skipped > self.skip_anomalies:
                ent.model.learn_one(x)
            scores.append(score)
            thresholds.append(threshold)
            flags.append(flag)
            drivers.append(ent.model.evidence if flag else None)
            if self.episodes is not None:
                if ent.episode is None:
                    ent.episode = StreamState()
                held.append(self.episodes.step(ent.episode, score)[0])
            ent.last_seen = max(ent.last_seen, t)
            self.entities.move_to_end(key)
            if self.drift_names:
                for name, j in watched:
                    value = score if j < 0 else float(row[j])
                    if j < 0 and ent.rows <= self.warm_up:
                        continue
                    monitor = ent.drift.get(name)
                    if monitor is None:
                        monitor = ent.drift[name] = DriftMonitor(self.drift_names, seed=self.seed)
                    events.extend((key, name, det, t, value, i) for det in monitor.update(value))
        self.advance(max(times))
        scored = frame.with_columns(
            pl.Series("anomaly_score", scores, dtype=pl.Float64),
            pl.Series("threshold", thresholds, dtype=pl.Float64),
            pl.Series("is_anomaly", flags, dtype=pl.Boolean),
        )
        if self.prototype.explains:
            scored = scored.with_columns(pl.Series("anomaly_metric", drivers, dtype=pl.String))
        if self.episodes is not None:
            scored = scored.with_columns(pl.Series("in_episode", held, dtype=pl.Boolean))
        return scored, self._drift_frame(events, frame, positions)

    def _sustained(self, ent: _Entity, x: dict[str, float], flag: bool) -> bool:
        """The row's decision with the entity's anomalous state (``sustain``); keeps its normal values."""
        normal = ent.normal if ent.normal is not None else {}
        ent.normal = normal
        if ent.held and not flag and ent.held <= self.sustain and _beyond(x, normal):
            flag = True  # still away from its normal range: the state holds
        if flag and ent.held <= self.sustain:
            ent.held += 1
            return flag
        if not flag:
            for name, value in x.items():
                normal.setdefault(name, deque(maxlen=self.baseline)).append(value)
        ent.held = 0  # recovered, or held past ``sustain``: the level is normal now
        return flag

    def advance(self, newest: int | None) -> None:
        """The newest row time (ms) is ``newest``: forget every entity idle for longer than ``idle``.

        :meth:`process` calls it with its newest row; a cluster's host calls it with the
        newest row of *every* host, so its entities expire when one process's would.
        """
        if newest is None:
            return
        self.watermark_ms = newest if self.watermark_ms is None else max(self.watermark_ms, newest)
        cutoff = self.watermark_ms - self.idle_ms
        # every entity, not only the least recently seen ones: rows of later batches may be older
        # than an entity's newest row, so the table's order is not exactly the order of last_seen
        idle = [key for key, ent in self.entities.items() if ent.last_seen < cutoff]
        for key in idle:
            del self.entities[key]
        self.expired += len(idle)

    def _drift_frame(
        self, events: list[tuple[Any, str, str, int, float, int]], frame: pl.DataFrame, positions: bool = False
    ) -> pl.DataFrame:
        keys = [k if isinstance(k, tuple) else (k,) for k, *_ in events]
        cols: dict[str, pl.Series] = {
            c: pl.Series(c, [k[i] for k in keys], dtype=pl.String) for i, c in enumerate(self.by)
        }
        cols["feature"] = pl.Series("feature", [e[1] for e in events], dtype=pl.String)
        cols["detector"] = pl.Series("detector", [e[2] for e in events], dtype=pl.String)
        cols["time"] = pl.Series("time", [e[3] for e in events], dtype=pl.Int64).cast(pl.Datetime("ms", "UTC"))
        cols["value"] = pl.Series("value", [e[4] for e in events], dtype=pl.Float64)
        if positions:
            cols["__row"] = pl.Series("__row", [e[5] for e in events], dtype=pl.UInt32)
        return pl.DataFrame(cols)

    # -- live tuning ----------------------------------------------------------------------
    def rebuild(self, detector: Detector) -> None:
        """Replace every entity's detector and threshold with fresh ones (drift on metrics stays)."""
        self.prototype = detector
        for ent in self.entities.values():
            ent.model = detector.clone()
            ent.threshold = self.threshold.clone()
            ent.rows = 0
            ent.drift.pop("anomaly_score", None)

    def warm(self, history: pl.DataFrame) -> int:
        """Score and learn past window rows (oldest first) without output or drift; returns rows used."""
        if history.height == 0:
            return 0
        features = self._choose_features(history)
        history = history.sort(self.time, maintain_order=True)
        if self.where is not None:
            history = history.filter(self.where.fill_null(False))
        values = history.select(pl.col(features).cast(pl.Float64)).to_numpy()
        keys = ["*"] * history.height if self.shared else self._keys(history)
        for key, t, row in zip(keys, self._times(history), values, strict=True):
            x = {f: float(v) for f, v in zip(features, row, strict=True) if not math.isnan(v)}
            ent = self._entity(key)
            score = ent.model.score_one(x)
            ent.model.learn_one(x)
            ent.rows += 1
            if ent.rows > self.warm_up:
                ent.threshold.update(score)
            ent.last_seen = max(ent.last_seen, t)
        return history.height

    # -- state ------------------------------------------------------------------------------
    @property
    def state_size(self) -> int:
        """Entities held."""
        return len(self.entities)

    def snapshot(self) -> dict[str, Any]:
        """Every entity's state and the counters (a deep copy), stamped with river's version."""
        return copy.deepcopy(
            {
                "river": river.__version__,
                "prototype": self.prototype,
                "features": self.features,
                "entities": self.entities,
                "expired": self.expired,
                "evicted": self.evicted,
                "watermark_ms": self.watermark_ms,
            }
        )

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`; refuses state written by another river minor version."""
        saved = state.get("river", "unknown")
        if _minor(saved) != _minor(river.__version__):
            raise CheckpointError(
                f"scorer: model state written with river {saved}, this is river {river.__version__}; "
                "river models are not portable across minor versions"
            )
        state = copy.deepcopy(state)
        self.prototype, self.features, self.entities = state["prototype"], state["features"], state["entities"]
        self.expired, self.evicted, self.watermark_ms = state["expired"], state["evicted"], state["watermark_ms"]
