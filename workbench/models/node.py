"""The ``score`` node: per-entity online anomaly scores of window rows, tunable live.

``....window(spec, by="host").score("robust_z", features=["cpu_mean"], by="host")``
emits each window row with ``anomaly_score`` (0–1), ``threshold`` and ``is_anomaly``
(see :class:`~workbench.models.scoring.Scorer`), and drift events on its ``drift``
side output (entity, feature, detector, event time, value).

The detector's arguments are ``param`` parameters (``node.params``, built by
:func:`~workbench.models.tuning.detector_params`): changing one — from a widget, a
notebook cell or :meth:`ScoreNode.retune`, on any thread — asks for a rebuild, which
the pipeline thread applies before its next batch (between batches, so a checkpoint
never sees half a rebuild). The new models can be warmed on recent window rows read
from the Parquet lake, without restarting the pipeline.

On a cluster (``Pipeline(..., cluster=)``) a score node right below the sharded
windows, with the windows' entities, *attaches* to that stage: the shard hosts hold its
models per key group and score there (:mod:`workbench.cluster.scores`); the node then
emits the scored rows the stage merged, and its own scorer is only the template the
hosts copy. The node finds the stage by duck typing (``attach_score``), so this layer
never imports the cluster's.

Examples
--------
>>> import polars as pl
>>> from datetime import UTC, datetime, timedelta
>>> from streamz import Stream
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> rows = pl.DataFrame({"host": ["a"] * 80, "window_end": [t0 + timedelta(seconds=10 * i) for i in range(80)],
...                      "cpu_mean": [20.0 + i % 3 for i in range(79)] + [90.0]})
>>> head = Stream()
>>> node = ScoreNode(head, "robust_z", features=["cpu_mean"], by="host", params={"warm_up": 20})
>>> out = node.sink_to_list()
>>> head.emit(rows)
>>> out[0].filter("is_anomaly")["cpu_mean"].to_list()
[90.0]
>>> node.retune(warm_up=5, warm=rows)  # applied before the next batch
>>> head.emit(rows.head(0).vstack(rows.tail(1)))
>>> node.retunes[-1]["warmed"], node.params.warm_up
(80, 5)
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
from datetime import timedelta
from typing import Any, cast

import polars as pl
from param.parameterized import discard_events
from streamz import Stream

from workbench.config import parse_duration
from workbench.errors import CheckpointError, ConfigError
from workbench.models.detectors import Detector
from workbench.models.scoring import Scorer
from workbench.models.threshold import AdaptiveThreshold
from workbench.models.tuning import DetectorParams, detector_params
from workbench.operators.base import ErrorPolicy, Operator
from workbench.sources.base import RawBatch
from workbench.storage.lake import Lake

__all__ = ["ScoreNode"]

#: keyword arguments a ScoreNode passes on to its Scorer (read from its signature, declared once)
_SCORER_OPTIONS = frozenset(inspect.signature(Scorer).parameters) - {"detector", "threshold"}

log = logging.getLogger(__name__)


class ScoreNode(Operator):
    """Score window rows per entity; the detector's arguments are live ``param`` parameters.

    Parameters
    ----------
    upstream
        The window node (or any stream of window rows).
    detector
        A name in :data:`workbench.models.catalog.DETECTORS` (or a Detector class).
    **options
        The :class:`~workbench.models.scoring.Scorer`'s keyword arguments (``features``,
        ``by``, ``time``, ``warm_up``, ``drift``, ``idle``, ``max_entities`` …), passed on as given.
    params
        Detector arguments other than the defaults (checked against its bounds).
    threshold
        The adaptive threshold; default: the 0.99 quantile of the last 500 scores,
        floored at the catalogue's threshold for the detector (0.5 when it has none).
    lake, lake_output, history
        Where :meth:`retune` reads recent rows from (``history`` of event time before
        the newest row seen) to warm the new models.
    name, errors
        See :class:`~workbench.operators.nodes.Operator`.
    """

    def __init__(
        self,
        upstream: Stream,
        detector: str | type[Detector] = "robust_z",
        *,
        params: dict[str, Any] | None = None,
        threshold: AdaptiveThreshold | None = None,
        lake: Lake | None = None,
        lake_output: str = "windows",
        history: str | float | timedelta = "30m",
        name: str | None = None,
        errors: ErrorPolicy = "dead_letter",
        **options: Any,
    ) -> None:
        from workbench.models.catalog import THRESHOLDS

        self.params: DetectorParams = detector_params(detector)()
        super().__init__(upstream, name=name or f"score_{self.params.detector_name}", errors=errors)
        unknown = sorted(set(options) - _SCORER_OPTIONS)
        if unknown:
            raise ConfigError(
                f"node {self.name!r}: unknown argument(s) {unknown}; known: "
                f"{sorted({*_SCORER_OPTIONS, 'params', 'threshold', 'lake', 'lake_output', 'history'})}"
            )
        self.params.tune(**(params or {}))
        floor = THRESHOLDS.get(self.params.detector_name, 0.5)
        self.scorer = Scorer(self.params.build(), threshold=threshold or AdaptiveThreshold(floor=floor), **options)
        self.drift = Stream(stream_name=f"{self.name}.drift")
        self.drift_count = 0
        self.lake, self.lake_output = lake, lake_output
        self.history_ms = parse_duration(history, what="history")
        self.retunes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._warm_next: bool | pl.DataFrame = lake is not None
        self.params.param.watch(self._on_change, list(self.params.values()))
        # a cluster's sharded stage above: it may take this node's models onto its hosts
        attach = getattr(upstream, "attach_score", None)
        self._shards: Any = upstream if attach is not None else None
        self._sharded: str | None = attach(self) if attach is not None else None

    @property
    def sharded(self) -> bool:
        """Whether the models live on a cluster's shard hosts (the node emits their scores)."""
        return self._sharded is not None

    @property
    def watermark_ms(self) -> int | None:
        """Newest row time scored (ms): this node's, or every host's on a cluster."""
        if self._sharded is not None:
            return cast(int | None, self._shards.score_marks.get(self._sharded))
        return self.scorer.watermark_ms

    # -- live tuning -------------------------------------------------------------------
    def _on_change(self, *_events: Any) -> None:
        """A parameter changed (any thread): ask for a rebuild before the next batch."""
        with self._lock:
            self._pending = {"values": self.params.values(), "warm": self._warm_next}

    def retune(self, *, warm: bool | pl.DataFrame | None = None, **values: Any) -> None:
        """Change detector arguments; the models are rebuilt before the next batch.

        Parameters
        ----------
        warm
            Warm the new models on recent rows: ``True`` reads them from the lake, a
            frame gives them; default: from the lake when the node has one.
        **values
            Detector arguments, checked against their bounds (a ``ConfigError`` names
            the argument, its range and the value).
        """
        with self._lock:
            self._warm_next = (self.lake is not None) if warm is None else warm
        self.params.tune(**values)
        if not self.pending:  # unchanged values fire no watcher: rebuild all the same
            self._on_change()
        with self._lock:
            self._warm_next = self.lake is not None

    @property
    def pending(self) -> bool:
        """Whether a rebuild waits for the next batch."""
        with self._lock:
            return self._pending is not None

    def apply_pending(self) -> None:
        """Rebuild now if a change waits (the pipeline thread calls this before each batch)."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        detector = self.params.detector_type(**pending["values"])
        history = pending["warm"]
        if history is True:
            history = self._history()
        frame = history if isinstance(history, pl.DataFrame) else None
        if self._sharded is not None:  # the models live on the hosts
            warmed = self._shards.rebuild_scorer(self._sharded, detector, frame)
        else:
            self.scorer.rebuild(detector)
            warmed = self.scorer.warm(frame) if frame is not None else 0
        self.retunes.append({"values": pending["values"], "warmed": warmed, "at_ms": self.watermark_ms})
        log.info("node %r: rebuilt %r, warmed on %d rows", self.name, detector, warmed)

    def _history(self) -> pl.DataFrame:
        """Window rows of the lake within ``history`` of the newest row seen."""
        if self.lake is None:
            raise ConfigError(f"node {self.name!r}: warming from the lake needs lake=Lake(...)")
        if self.lake_output not in self.lake.outputs():
            return pl.DataFrame()
        t = self.scorer.time
        where = ""
        if self.watermark_ms is not None:
            since = self.watermark_ms - self.history_ms
            where = f' where epoch_ms("{t}") >= {since}'
        frame = self.lake.query(f'select * from {self.lake_output}{where} order by "{t}"')
        return frame.with_columns(
            [pl.col(c).cast(pl.Datetime("ms", "UTC")) for c, d in frame.schema.items() if isinstance(d, pl.Datetime)]
        )

    # -- the node --------------------------------------------------------------------------
    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        if self._sharded is not None:  # scored on the hosts (a retune was applied before the epoch)
            scored, drift = self._shards.scored(self._sharded)
            if drift is not None and drift.height:
                self.drift_count += drift.height
                self.drift.emit(drift)
            return scored, metadata
        self.apply_pending()
        if isinstance(x, RawBatch) and x.frame is not None:  # frames straight from a source
            x = x.frame
        if not isinstance(x, pl.DataFrame):
            raise ConfigError(f"node {self.name!r}: expected a frame of window rows, not {type(x).__name__}")
        scored, drift = self.scorer.process(x)
        if drift.height:
            self.drift_count += drift.height
            self.drift.emit(drift)
        return scored, metadata

    @property
    def state_size(self) -> int:  # noqa: D102
        if self._sharded is not None:
            return int(self._shards.score_entities.get(self._sharded, 0))
        return self.scorer.state_size

    def snapshot(self) -> dict[str, Any]:  # noqa: D102
        if self._sharded is not None:  # the models are in the key groups' snapshots of the stage above,
            # which applied a waiting retune before its hosts snapshotted; one arriving since waits for the next epoch
            prototype = copy.deepcopy(self.scorer.prototype)  # the detector as retuned: the parameters show it
            return {**super().snapshot(), "scorer": None, "prototype": prototype, "drift_count": self.drift_count}
        self.apply_pending()
        return {**super().snapshot(), "scorer": self.scorer.snapshot(), "drift_count": self.drift_count}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        if (state["scorer"] is None) != (self._sharded is not None):
            where = "on shard hosts" if state["scorer"] is None else "in one process"
            raise CheckpointError(
                f"node {self.name!r}: the checkpoint holds models scored {where}; this pipeline scores "
                f"{'on shard hosts' if self._sharded is not None else 'here'}: start over with --fresh"
            )
        if state["scorer"] is not None:
            self.scorer.restore(state["scorer"])
        else:  # the hosts restore the models; this scorer is their template (the stage's config holds it)
            self.scorer.prototype = state["prototype"]
        super().restore(state)
        self.drift_count = state["drift_count"]
        with self._lock:
            self._pending = None
        # the parameters show the restored detector, without asking for a rebuild
        with discard_events(self.params):
            self.params.param.update(**self.scorer.prototype._params)
