"""``Operator``: the base of every Workbench streamz node — timing, metrics, error policy, side outputs.

A node wraps a pure state class and implements ``process(x, metadata) -> (output,
metadata)``. The base times each batch, counts rows in and out, and applies the
node's error policy when ``process`` raises: ``"dead_letter"`` (the whole batch goes
to the ``rejects`` side output with the error as its reason), ``"fail"`` (raise) or
``"drop"`` (count it as dropped). Stateful nodes override ``snapshot``/``restore``,
``state_size``, ``watermark`` and ``flush``.

Examples
--------
>>> import polars as pl
>>> class double(Operator):
...     def process(self, x, metadata):
...         return x.with_columns(pl.col("v") * 2), metadata
>>> head = Stream()
>>> node = double(head, name="double")
>>> out = node.sink_to_list()
>>> head.emit(pl.DataFrame({"v": [1, 2]}))
>>> out[0]["v"].to_list(), node.metrics.rows_out
([2, 4], 2)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import polars as pl
from streamz import Stream

from workbench.errors import ConfigError, WorkerLostError
from workbench.operators.decode import RawLines, dead_letters, rows_as_json
from workbench.sources.base import RawBatch

__all__ = ["ErrorPolicy", "NodeMetrics", "Operator", "as_batch", "rows"]

ErrorPolicy = Literal["dead_letter", "fail", "drop"]
_POLICIES = ("dead_letter", "fail", "drop")


@dataclass
class NodeMetrics:
    """Counters of one node; ``state_size`` and ``watermark`` are filled on read.

    ``reasons`` counts dead letters by ``reason_code`` (a small fixed set of codes, see
    :data:`workbench.operators.decode.REASON_CODES`), so it stays bounded.
    """

    batches: int = 0
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    dropped: int = 0
    errors: int = 0
    seconds: float = 0.0
    last_batch_ms: float = 0.0
    last_error: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)


def rows(x: Any) -> int:
    """Rows in a batch: a frame's height, a raw batch's record count, else 1."""
    if isinstance(x, pl.DataFrame):
        return x.height
    if isinstance(x, RawBatch):
        return x.rows
    return 1


class Operator(Stream):
    """Base of Workbench nodes: timing, metrics, error policy and side outputs.

    Subclasses implement ``process(x, metadata) -> (frame, metadata)``.
    """

    def __init__(self, upstream: Stream, *, name: str | None = None, errors: ErrorPolicy = "dead_letter"):
        if errors not in _POLICIES:
            raise ConfigError(f"node {name!r}: errors must be one of {_POLICIES}, not {errors!r}")
        super().__init__(upstream, stream_name=name or type(self).__name__)
        self.errors = errors
        self.metrics = NodeMetrics()
        self._ahead_s = 0.0
        self.rejects = Stream(stream_name=f"{self.name}.rejects")
        # set by a pipeline: adds the ingest time and source offset to dead letters
        self.stamp: Callable[[pl.DataFrame], pl.DataFrame] | None = None

    @property
    def name(self) -> str:
        """The node's name (unique within a pipeline)."""
        return str(self._name)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __str__(self) -> str:
        return f"{type(self).__name__}<{self.name}>"

    # streamz calls this for every element
    def update(self, x: Any, who: Any = None, metadata: Any = None) -> Any:
        """Process one batch and emit the result downstream."""
        start = time.perf_counter()
        m = self.metrics
        m.batches += 1
        m.rows_in += rows(x)
        try:
            out, meta = self.process(x, metadata)
        except WorkerLostError:
            raise  # the pipeline restores and replays; no error policy applies
        except Exception as exc:
            m.errors += 1
            m.last_error = f"{type(exc).__name__}: {exc}"
            self.on_failed_batch(x)
            if self.errors == "fail":
                raise
            if self.errors == "dead_letter":
                self.reject(self._whole_batch(x, f"node {self.name!r} failed: {m.last_error}"))
            else:
                m.dropped += rows(x)
            return None
        finally:
            # plus any time this batch spent in ``prepare`` on a read-ahead thread
            elapsed = time.perf_counter() - start + self._ahead_s
            self._ahead_s = 0.0
            m.seconds += elapsed
            m.last_batch_ms = elapsed * 1000
        if out is None or (isinstance(out, pl.DataFrame) and out.height == 0):
            return None
        m.rows_out += rows(out)
        return self._emit(out, metadata=meta)

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:
        """Transform one batch; return ``(output, metadata)``."""
        return x, metadata

    def on_failed_batch(self, x: Any) -> None:
        """Hook: account for a batch whose processing raised."""

    def reject(self, dead: pl.DataFrame) -> None:
        """Send dead letters to the ``rejects`` side output."""
        if dead.height:
            self.metrics.rejected += dead.height
            if "reason_code" in dead.columns:
                reasons = self.metrics.reasons
                for code, n in dead.get_column("reason_code").value_counts().iter_rows():
                    reasons[str(code)] = reasons.get(str(code), 0) + n
            self.rejects.emit(dead if self.stamp is None else self.stamp(dead))

    def _whole_batch(self, x: Any, reason: str) -> pl.DataFrame:
        if isinstance(x, bytes | pl.DataFrame):
            x = as_batch(x, self.name)
        if isinstance(x, RawBatch) and x.data is not None:
            raw = RawLines(x.data)
            lines = raw.lines(list(range(len(raw))))
        elif isinstance(x, RawBatch) and x.frame is not None:
            lines = rows_as_json(x.frame)
        else:
            lines = [repr(x).encode()]
        return dead_letters(self.name, [reason] * len(lines), lines)

    # stateful nodes override these
    @property
    def state_size(self) -> int:
        """Rows or keys held as state."""
        return 0

    @property
    def watermark(self) -> Any:
        """Event-time watermark, for nodes that keep one."""
        return None

    def flush(self) -> None:
        """End of input: emit whatever is held."""

    def snapshot(self) -> dict[str, Any]:
        """Node state (a copy) plus its metrics."""
        return {"metrics": asdict(self.metrics)}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        self.metrics = NodeMetrics(**{**state["metrics"], "reasons": dict(state["metrics"].get("reasons", {}))})


def as_batch(x: Any, node: str) -> RawBatch:
    """Bytes and frames fed to ``decode`` directly, as the raw batches sources yield."""
    if isinstance(x, RawBatch):
        return x
    if isinstance(x, bytes):
        return RawBatch(data=x)
    if isinstance(x, pl.DataFrame):
        return RawBatch(frame=x, rows=x.height)
    raise ConfigError(f"node {node!r}: expected RawBatch, bytes or DataFrame, not {type(x).__name__}")
