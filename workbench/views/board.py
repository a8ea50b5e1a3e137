"""``ScoreBoard``: detectors side by side on one stream, scored against labelled incidents.

The board follows several score outputs of one pipeline (several score nodes over
the same windows, one per detector or per setting). On the pipeline thread it keeps
each output's detections (bounded) and, at most once a second, evaluates them
against the labels with :func:`~workbench.evaluate.events.evaluate_events`:
event-level precision, recall and mean time-to-detect. Views only read the cached
table. Nothing here imports Panel.

Examples
--------
>>> import polars as pl
>>> from datetime import UTC, datetime, timedelta
>>> from workbench import Pipeline
>>> from workbench.sources.frames import FrameSource
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> rows = pl.DataFrame({"host": ["a"] * 60, "window_end": [t0 + timedelta(seconds=10 * i) for i in range(60)],
...                      "cpu_mean": [20.0 + i % 3 for i in range(59)] + [90.0]})
>>> p = Pipeline(FrameSource([rows]), name="doc-board")
>>> _ = p.output("scores", p.head.score("robust_z", features=["cpu_mean"], by="host", params={"warm_up": 20}))
>>> board = ScoreBoard(p, {"robust_z": "scores"}, labels=pl.DataFrame(), min_interval=0)
>>> p.run()
>>> board.table().select("detector", "rows", "detections").row(0)
('robust_z', 60, 1)
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import polars as pl

from workbench.evaluate.events import evaluate_events
from workbench.pipeline import Pipeline

__all__ = ["ScoreBoard"]

_COLUMNS = {
    "detector": pl.String(),
    "rows": pl.Int64(),
    "detections": pl.Int64(),
    "detected": pl.Int64(),
    "incidents": pl.Int64(),
    "precision": pl.Float64(),
    "recall": pl.Float64(),
    "mean_ttd_s": pl.Float64(),
    "false_positive_episodes": pl.Int64(),
}


class ScoreBoard:
    """Precision, recall and time-to-detect of several score outputs, live.

    Parameters
    ----------
    pipeline
        The pipeline whose outputs are followed.
    outputs
        ``{label: output name}``: one row of the board per score output.
    labels
        The incidents (a frame, or a callable giving the current frame: a simulator's
        labels grow with its cycles); only incidents that started before the newest
        scored window count.
    by, time
        Entity and time columns of the scored rows.
    kinds
        Incident kinds to count (those whose entity is ``by``); None: all.
    grace, entity_map
        See :func:`~workbench.evaluate.events.evaluate_events`.
    max_detections
        Detections kept per output (the oldest are dropped).
    min_interval
        Seconds between two evaluations.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        outputs: dict[str, str],
        *,
        labels: pl.DataFrame | Callable[[], pl.DataFrame],
        by: str = "host",
        time: str = "window_end",
        kinds: list[str] | None = None,
        grace: str = "30s",
        entity_map: dict[str, str] | None = None,
        max_detections: int = 50_000,
        min_interval: float = 1.0,
    ) -> None:
        self.outputs = dict(outputs)
        self.labels = labels
        self.by, self.time, self.kinds = by, time, kinds
        self.grace, self.entity_map = grace, entity_map
        self.min_interval = min_interval
        self._detections: dict[str, deque[pl.DataFrame]] = {k: deque() for k in outputs}
        self._held: dict[str, int] = dict.fromkeys(outputs, 0)
        self.max_detections = max_detections
        self._rows: dict[str, int] = dict.fromkeys(outputs, 0)
        self._newest: datetime | None = None
        self._lock = threading.Lock()
        self._table = pl.DataFrame(schema=_COLUMNS)
        self._evaluated_at = 0.0
        self.version = 0
        self._unsubscribe = [
            pipeline.subscribe(name, functools.partial(self._on_scores, label)) for label, name in outputs.items()
        ]

    def _on_scores(self, label: str, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        found = frame.filter(pl.col("is_anomaly")).select(pl.col(self.by).cast(pl.String), self.time)
        newest = frame[self.time].max()
        with self._lock:
            self._rows[label] += frame.height
            if isinstance(newest, datetime) and (self._newest is None or newest > self._newest):
                self._newest = newest
            if found.height:
                held = self._detections[label]
                held.append(found)
                self._held[label] += found.height
                while self._held[label] - held[0].height >= self.max_detections:
                    self._held[label] -= held.popleft().height
        if time.monotonic() - self._evaluated_at >= self.min_interval:
            self.evaluate()

    def _current_labels(self) -> pl.DataFrame:
        labels = self.labels() if callable(self.labels) else self.labels
        if labels.height == 0:
            return labels
        if self.kinds is not None:
            labels = labels.filter(pl.col("kind").is_in(self.kinds))
        if self._newest is not None:
            labels = labels.filter(pl.col("start") <= self._newest)
        return labels

    def evaluate(self) -> pl.DataFrame:
        """Evaluate every output now (the pipeline thread does this at most once a second)."""
        with self._lock:
            held = {k: list(v) for k, v in self._detections.items()}
            rows = dict(self._rows)
        labels = self._current_labels()
        out = []
        for label, frames in held.items():
            empty = pl.DataFrame(schema={self.by: pl.String, self.time: pl.Datetime("ms", "UTC")})
            found = pl.concat(frames) if frames else empty
            record: dict[str, Any] = {"detector": label, "rows": rows[label], "detections": found.height}
            if labels.height:
                report = evaluate_events(
                    found, labels, by=self.by, time=self.time, grace=self.grace, entity_map=self.entity_map
                )
                total = report.summary().filter(pl.col("kind") == "all").row(0, named=True)
                record |= {
                    "detected": total["detected"],
                    "incidents": total["total"],
                    "precision": total["precision"],
                    "recall": total["recall"],
                    "mean_ttd_s": total["mean_ttd_s"],
                    "false_positive_episodes": total["false_positive_episodes"],
                }
            out.append(record)
        table = pl.DataFrame(out, schema=_COLUMNS).sort("recall", "precision", descending=True, nulls_last=True)
        with self._lock:
            self._table = table
            self._evaluated_at = time.monotonic()
            self.version += 1
        return table

    def table(self) -> pl.DataFrame:
        """The latest evaluation: one row per output (cheap; any thread)."""
        with self._lock:
            return self._table

    def close(self) -> None:
        """Stop following the pipeline."""
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe = []
