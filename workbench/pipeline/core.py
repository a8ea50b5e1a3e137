"""``Pipeline``: owns one streamz graph — runs it, checkpoints it, counts it.

A pipeline pulls raw batches from its :class:`~workbench.sources.base.Source` on one
thread and pushes each through the graph synchronously, so a checkpoint taken
between two batches is a consistent cut. Side outputs of every Workbench node
(``rejects``, ``duplicates``, ``late``) are gathered into the pipeline's
``dead_letter``, ``duplicates`` and ``late`` streams.

Creating a pipeline with the name of a live one stops and detaches the old one, so
re-running a notebook cell replaces the pipeline instead of adding a second.

Examples
--------
>>> from workbench.sources.files import FileSource
>>> from workbench.operators import aggregations as agg
>>> from workbench.operators.windows import Tumbling
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "e.jsonl"
>>> _ = path.write_text(
...     '{"event_id":"a","ts":1700000000000,"host":"h","cpu":1,"mem":1,"latency_ms":1,"status":200}\\n'
...     '{"event_id":"a","ts":1700000000000,"host":"h","cpu":1,"mem":1,"latency_ms":1,"status":200}\\n'
...     '{"event_id":"b","ts":"oops"}\\n')
>>> p = Pipeline(FileSource(path), name="doc")
>>> windows = p.standard("server_metrics", Tumbling("10s"), aggs=[agg.count()])
>>> result = p.collect(windows)
>>> p.run()
>>> result[0]["count"].to_list(), p.counts()
([1], {'ingested': 3, 'valid': 1, 'dead_lettered': 1, 'duplicates': 1, 'late': 0, 'dropped': 0})
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, ClassVar, cast

import polars as pl
from streamz import Stream

from workbench.clock import Clock, SystemClock
from workbench.config import parse_duration
from workbench.errors import ConfigError, WorkerLostError
from workbench.operators.aggregations import default_aggs
from workbench.operators.base import Operator
from workbench.operators.spec import check_by, pipeline_spec
from workbench.operators.windows import WindowSpec
from workbench.pipeline import accounting, checkpointing, graph, health
from workbench.pipeline import nodes as _nodes  # noqa: F401 - registers the streamz nodes
from workbench.pipeline.readahead import preparer, read_ahead
from workbench.pipeline.registry import NameRegistry
from workbench.schema import Schema, get_schema
from workbench.sources.base import Source
from workbench.storage.checkpoints import CheckpointStore
from workbench.storage.lake import Lake, LakeSink

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)


class Pipeline:
    """One streaming graph with its source, outputs, checkpoints and metrics.

    Parameters
    ----------
    source
        Where raw batches come from.
    name
        Pipeline name; a new pipeline with the name of a live one replaces it.
    checkpoints
        A :class:`CheckpointStore` (or folder) to checkpoint into and resume from.
    checkpoint_every
        Checkpoint after this much wall time (by the injected clock) …
    checkpoint_batches
        … or after this many batches, whichever comes first.
    clock
        Injected clock.
    prefetch
        Raw batches decoded ahead on worker threads (0: none). The first node that
        consumes raw batches (``decode``) prepares them there — polars and numpy
        release the GIL, so decoding uses a second core — while earlier batches run
        through the rest of the graph in order. Checkpoints record the offset of the
        last batch processed, never of one merely read ahead.
    cluster
        A :class:`workbench.cluster.Cluster`: :meth:`standard` then runs dedupe and
        windows on its workers, sharded by key group — and a score node below the
        windows, with the windows' entities, keeps its models there too — and this
        process coordinates (decode, validate, alerts, sinks, checkpoints). Needs ``checkpoints``: a lost
        worker is survived by restoring from the newest checkpoint and replaying — in
        this run for a replayable source (a file), else by the next run, which the
        broker re-delivers the unacknowledged messages to (see docs/scale-out.md).
        ``None``: everything runs here, and Dask is not imported.
    max_recoveries
        With a cluster: lost workers survived in one :meth:`run` before giving up.
    """

    _names: ClassVar[NameRegistry] = NameRegistry()

    def __init__(
        self,
        source: Source,
        *,
        name: str = "pipeline",
        checkpoints: CheckpointStore | str | None = None,
        checkpoint_every: str | float | timedelta = "10s",
        checkpoint_batches: int | None = None,
        clock: Clock | None = None,
        prefetch: int = 2,
        cluster: Any = None,
        max_recoveries: int = 10,
    ) -> None:
        if prefetch < 0:
            raise ConfigError(f"pipeline {name!r}: prefetch must be >= 0, not {prefetch}")
        self.prefetch = prefetch
        self._offset: Any = None  # source offset after the last batch processed

        self.name = name
        self.source = source
        self.clock = clock or source.clock or SystemClock()
        self.head = Stream(stream_name=f"{name}.source")
        self.dead_letter = Stream(stream_name=f"{name}.dead_letter")
        self.duplicates = Stream(stream_name=f"{name}.duplicates")
        self.late = Stream(stream_name=f"{name}.late")
        self.outputs: dict[str, Stream] = {}
        self.checkpoints = CheckpointStore(checkpoints) if isinstance(checkpoints, str) else checkpoints
        if cluster is not None and not hasattr(cluster, "stage"):
            raise ConfigError(
                f"pipeline {name!r}: cluster must be a workbench.cluster.Cluster (e.g. Cluster('local:2')), "
                f"not {cluster!r}"
            )
        if cluster is not None and self.checkpoints is None:
            raise ConfigError(f"pipeline {name!r}: a cluster needs checkpoints= (a lost worker is restored from them)")
        self.cluster = cluster
        self.max_recoveries = max_recoveries
        self.recoveries = 0
        self._wal: checkpointing.OffsetLog | None = None
        self.checkpoint_every_s = parse_duration(checkpoint_every, what="checkpoint_every") / 1000
        self.checkpoint_batches = checkpoint_batches
        self.epoch = 0
        self.batches = 0
        self.started_at: float | None = None
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._wired: set[int] = set()
        self._thread: threading.Thread | None = None
        self._last_checkpoint = self.clock.monotonic()
        self._subscribers: list[tuple[Stream, Any]] = []
        # streamz holds downstream nodes weakly: the pipeline owns its sinks
        self._lake_sinks: list[LakeSink] = []
        self._db_sinks: list[Any] = []  # e.g. PostgresSink: commit(epoch) / rollback(epoch), like a LakeSink
        self._closed_ops: list[Operator] | None = None
        self.spec: dict[str, Any] | None = None  # what standard() built; a checkpoint records it
        # what the input is (replay/run set it: the source's identity); checked on resume
        self.identity: dict[str, Any] | None = None
        self._scrubber: Any = None  # the pseudonymizer of standard(pseudonymize=…), applied to dead letters
        self._batch_start: Any = None  # where the batch being processed starts (dead letters carry it)
        self._batch_hooks: list[Callable[[float], Any]] = []  # called after each batch with its seconds
        self._prometheus: Any = None  # its metrics collector, once built (pipeline/metrics.py)
        old = Pipeline._names.claim(name, self)
        if old is not None:
            log.info("pipeline %r replaced; stopping the previous one", self.name)
            old.close()

    # -- lifecycle of the name ------------------------------------------------------
    @classmethod
    def instances(cls) -> int:
        """Pipeline objects alive in this process (one, in a served app, however many sessions)."""
        return len(cls._names)

    @classmethod
    def live(cls, name: str) -> Pipeline | None:
        """The live pipeline called ``name``, if any."""
        return cls._names.live(name)

    def close(self) -> None:
        """Stop and detach every node and subscriber, so nothing keeps emitting.

        Counters stay readable after closing.
        """
        self.stop()
        self._closed_ops = self.operators()
        for op in self._closed_ops:  # nodes holding threads or connections (the alerts outbox) let go
            getattr(op, "on_close", lambda: None)()
        for node in self._graph():
            for down in list(node.downstreams):
                node.disconnect(down)
        self._subscribers.clear()
        self._batch_hooks.clear()
        self._lake_sinks.clear()
        self._db_sinks.clear()
        Pipeline._names.release(self.name, self)

    # -- building -------------------------------------------------------------------
    def standard(
        self,
        schema: str | Schema,
        spec: WindowSpec,
        *,
        by: str | list[str] | None = None,
        aggs: list[pl.Expr] | None = None,
        lateness: str | float | timedelta = "5s",
        dedupe_ttl: str | float | timedelta | None = None,
        enrich: tuple[pl.DataFrame, str] | None = None,
        events: bool = False,
        pseudonymize: list[str] | None = None,
        max_future: str | float | timedelta | None = "5m",
    ) -> Stream:
        """Build decode → validate → [pseudonymize] → horizon → dedupe → [enrich] → window and name it ``windows``.

        ``dedupe_ttl`` defaults to the lateness plus one minute (at least the lateness,
        so a repeat past the dedupe horizon is counted late, not twice). ``events``
        also names the valid, deduplicated records (before windowing) output ``events``,
        so a lake keeps every record, e.g. each sample Prometheus remote-writes.
        ``pseudonymize`` names fields (user ids, IPs) replaced by keyed pseudonyms right
        after validation, before anything is deduplicated, windowed, stored or shown.
        Events stamped more than ``max_future`` ahead of the processing clock are dead
        letters (``future_timestamp``) and never move a watermark: the clock is the
        pipeline's (wall) clock for a live source, the newest events for a bulk replay
        (:mod:`workbench.operators.horizon`); ``None`` turns the check off.
        """
        s = get_schema(schema)
        lateness_ms = parse_duration(lateness, what="lateness")
        ttl = dedupe_ttl if dedupe_ttl is not None else (lateness_ms + 60_000) / 1000
        if parse_duration(ttl, what="dedupe_ttl") < lateness_ms:
            raise ConfigError(f"pipeline {self.name!r}: dedupe_ttl must be >= lateness, not {ttl!r} < {lateness!r}")
        keys = check_by(s, by, enrich[0].columns if enrich is not None else ())
        self.source.schema = s
        node: Stream = self.head.decode(s).validate(s)
        if pseudonymize:
            node = node.pseudonymize(list(pseudonymize))
            self._scrubber = node.state  # dead letters of decode and validate get the same pseudonyms
        if max_future is not None:
            node = node.horizon(max_future, time=s.time, clock=None if self.source.bulk else self.clock)
        if self.cluster is not None:
            if enrich is not None:
                raise ConfigError(f"pipeline {self.name!r}: enrich is not supported with a cluster yet")
            if events:
                raise ConfigError(f"pipeline {self.name!r}: events (--keep-events) is not supported with a cluster yet")
            assert self.checkpoints is not None
            node = self.cluster.stage(
                node,
                spec=spec,
                by=keys,
                aggs=aggs if aggs is not None else default_aggs(s),
                time=s.time,
                lateness=f"{lateness_ms}ms",
                dedupe=None if s.dedupe == "none" else (s.key if s.dedupe == "key" else ""),
                ttl=f"{parse_duration(ttl, what='dedupe_ttl')}ms",
                folder=self.checkpoints.folder,
            )
            self.spec = pipeline_spec(
                s,
                spec,
                keys,
                aggs if aggs is not None else default_aggs(s),
                f"{lateness_ms}ms",
                f"{parse_duration(ttl, what='dedupe_ttl')}ms",
            )
            return self.output("windows", node)
        if s.dedupe != "none":  # a key field, or the whole record (key None)
            node = node.dedupe(s.key if s.dedupe == "key" else None, time=s.time, ttl=ttl)
        if enrich is not None:
            node = node.enrich(enrich[0], on=enrich[1])
        if events:
            self.output("events", node)
        if aggs is None:
            aggs = default_aggs(s)
        node = node.window(spec, by=keys, aggs=aggs, time=s.time, lateness=lateness)
        self.spec = pipeline_spec(
            s, spec, keys, aggs, f"{lateness_ms}ms", f"{parse_duration(ttl, what='dedupe_ttl')}ms"
        )
        self.spec["max_future"] = None if max_future is None else f"{parse_duration(max_future, what='max_future')}ms"
        return self.output("windows", node)

    def alerts(self, rules: Any, **kwargs: Any) -> Any:
        """Evaluate alert rules on ``windows``; adds output ``alerts`` (see :func:`.alerting.attach`)."""
        from workbench.pipeline.alerting import attach

        return attach(self, rules, **kwargs)

    def output(self, name: str, stream: Stream) -> Stream:
        """Register ``stream`` as the named output ``name``."""
        self.outputs[name] = stream
        return stream

    def to_lake(self, lake: Lake, *, outputs: list[str] | None = None) -> None:
        """Persist named outputs plus ``dead_letter`` and ``late`` to ``lake``."""
        names = outputs if outputs is not None else [*self.outputs, "dead_letter", "late"]
        for name in names:
            self._lake_sinks.append(LakeSink(self._stream(name), lake, name))

    def to_postgres(self, dsn: str, *, outputs: list[str] | None = None, **kwargs: Any) -> None:
        """Upsert named outputs (default: all) into PostgreSQL at every checkpoint.

        See :class:`workbench.storage.postgres.PostgresSink` for ``table``/``keys``/``schema``.
        """
        from workbench.storage.postgres import PostgresSink

        for name in outputs if outputs is not None else list(self.outputs):
            self._db_sinks.append(PostgresSink(self._stream(name), dsn, name, **{"pipeline": self.name, **kwargs}))

    def publish(
        self, publisher: Any, *, outputs: list[str] | None = None, topic: str = "{output}", **kwargs: Any
    ) -> None:
        """Publish named outputs (default: all) to a broker, one JSON message per row, at every checkpoint.

        ``publisher`` is a :mod:`workbench.bus` publisher (MQTT, Redis Streams, NATS
        JetStream); ``topic`` may hold ``{output}``. At least once: see :class:`workbench.bus.sink.BusSink`.
        """
        from workbench.bus.sink import BusSink

        for name in outputs if outputs is not None else list(self.outputs):
            self._db_sinks.append(BusSink(self._stream(name), publisher, name, topic=topic, **kwargs))

    def _stream(self, name: str) -> Stream:
        builtin = {"dead_letter": self.dead_letter, "duplicates": self.duplicates, "late": self.late}
        if name in builtin:
            return builtin[name]
        if name not in self.outputs:
            raise ConfigError(f"pipeline {self.name!r}: no output {name!r}; outputs: {sorted(self.outputs)}")
        return self.outputs[name]

    def subscribe(self, name: str, callback: Callable[[pl.DataFrame], Any]) -> Callable[[], None]:
        """Call ``callback`` with every frame of output ``name``; returns an unsubscribe."""
        return self._subscribe(self._stream(name), callback)

    def subscribe_raw(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """Call ``callback`` with every raw batch before it is processed."""
        return self._subscribe(self.head, callback)

    def _subscribe(self, stream: Stream, callback: Callable[[Any], Any]) -> Callable[[], None]:
        entry = (stream, stream.map(callback))
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
                if entry[1] in stream.downstreams:
                    stream.disconnect(entry[1])

        return unsubscribe

    def on_batch(self, callback: Callable[[float], Any]) -> Callable[[], None]:
        """Call ``callback(seconds)`` on the run thread after each batch went through the graph.

        Keep it cheap: it runs once per batch, between the batch and the next (the
        metrics collector observes its latency histogram here). Returns an unsubscribe.
        """
        self._batch_hooks.append(callback)

        def unsubscribe() -> None:
            if callback in self._batch_hooks:
                self._batch_hooks.remove(callback)

        return unsubscribe

    @property
    def subscriptions(self) -> int:
        """Number of live subscriptions."""
        return len(self._subscribers)

    def collect(self, stream: Stream | str) -> list[pl.DataFrame]:
        """A list that receives every frame of ``stream`` (handy in tests and notebooks)."""
        out: list[pl.DataFrame] = []
        self._subscribe(self._stream(stream) if isinstance(stream, str) else stream, out.append)
        return out

    # -- the graph -----------------------------------------------------------------
    def _graph(self) -> list[Stream]:
        """Every node reachable from the head, upstream first (topological order)."""
        return graph.topological(self.head)

    def operators(self) -> list[Operator]:
        """Workbench nodes of the graph, upstream first."""
        if self._closed_ops is not None:
            return list(self._closed_ops)
        return graph.operators(self.head)

    def _sinks(self) -> list[Any]:
        return [*self._lake_sinks, *self._db_sinks]

    def _wire(self) -> None:
        """Connect side outputs to the pipeline streams; make node names unique."""
        side = {"rejects": self.dead_letter, "duplicates": self.duplicates, "late": self.late}
        graph.wire(self.operators(), self._wired, side, stamp=self._stamp)

    def _stamp(self, dead: pl.DataFrame) -> pl.DataFrame:
        """Dead letters with the ingest time and the source offset of their batch."""
        import json

        if self._scrubber is not None:  # no clear value of a pseudonymised field is stored
            dead = self._scrubber.scrub(dead)
        return dead.with_columns(
            pl.lit(self.clock.now(), dtype=pl.Datetime("ms", "UTC")).alias("ingested_at"),
            pl.lit(json.dumps(self._batch_start, default=str), dtype=pl.String).alias("offset"),
        )

    # -- running --------------------------------------------------------------------
    def run(self, *, max_batches: int | None = None, resume: bool = True) -> None:
        """Run on this thread until the source ends (then flush) or stops.

        Parameters
        ----------
        max_batches
            Stop after this many batches (without flushing): a partial run.
        resume
            Resume from the checkpoint when there is one.
        """
        self._wire()
        if resume and self.checkpoints is not None and self.checkpoints.exists():
            self.restore()
        else:
            if resume and self.checkpoints is not None:
                checkpointing.check_orphan_output(self)
            if self.checkpoints is not None and self.cluster is None:
                checkpointing.first_checkpoint(self)
            if self.cluster is not None:
                assert self.checkpoints is not None
                if self._offset is None:
                    self._offset = self.source.offset
                self.checkpoint()  # a first manifest: what a worker lost before the next one restores
        if self.cluster is None:
            self._run(max_batches)
            return
        assert self.checkpoints is not None
        self._wal = checkpointing.OffsetLog(self.checkpoints.folder / "offsets.wal")
        rewind = None if self.source.replayable else getattr(self.source, "rewind", None)
        if rewind is not None:  # a lost worker is then replayed within this run (bounded by max_unacked)
            cast(Any, self.source).retain = True
        while True:
            try:
                self._run(max_batches)
                return
            except WorkerLostError as exc:
                if not self.source.replayable and rewind is None:
                    # a broker re-delivers unacknowledged messages on a new run
                    raise WorkerLostError(
                        f"pipeline {self.name!r}: {exc}; source {type(self.source).__name__} cannot replay within "
                        "this run: start it again to resume from the newest checkpoint (the broker re-delivers "
                        "what was not acknowledged)"
                    ) from exc
                self.recoveries += 1
                if self.recoveries > self.max_recoveries:
                    raise
                log.warning(
                    "pipeline %r: %s; restoring from the newest checkpoint and replaying (recovery %d)",
                    self.name,
                    exc,
                    self.recoveries,
                )
                self.error = None
                self._recover()
                if rewind is not None:
                    again = rewind()
                    if again is None:
                        raise WorkerLostError(
                            f"pipeline {self.name!r}: {exc}; source {type(self.source).__name__} kept no copy of "
                            "its unacknowledged batches: start it again to resume from the newest checkpoint"
                        ) from exc
                    log.warning("pipeline %r: replaying %d unacknowledged messages from memory", self.name, again)

    def _recover(self) -> None:
        """After a lost worker: every node and sink back to the newest checkpoint, hosts reopened."""
        for attempt in range(self.max_recoveries):
            try:
                self.restore()
                return
            except WorkerLostError as exc:
                log.warning("pipeline %r: restore failed (%s); retrying", self.name, exc)
                time.sleep(min(2**attempt, 10))
        self.restore()

    def _run(self, max_batches: int | None) -> None:
        self.source.start()
        t0 = time.perf_counter()
        self.started_at = self.clock.monotonic()
        done = 0
        # where the batch being processed starts (dead letters carry it); the source's before any
        self._batch_start = self._offset if self._offset is not None else self.source.offset
        idle = self._idle_check()
        batches = self._batches(idle)
        try:
            for batch in batches:
                if idle is not None and batch.meta.get("tick"):  # an idle tick: a worker may have left
                    idle()
                started = time.perf_counter()
                if self._wal is not None:  # the offsets about to be dispatched, before they are
                    self._wal.append(self.batches + 1, self._batch_start, batch.offset)
                self.head.emit(batch)
                self._offset = self._batch_start = batch.offset
                self.batches += 1
                done += 1
                for hook in self._batch_hooks:
                    hook(time.perf_counter() - started)
                if self._checkpoint_due() or batch.meta.get("checkpoint"):  # a source may ask for one
                    self.checkpoint()
                elif self.checkpoints is None and not self._sinks():
                    self.source.commit(batch.offset)  # nothing here is durable: a processed batch is done
                if max_batches is not None and done >= max_batches:
                    break
            else:
                if self.source.exhausted:
                    self.flush()
            if self.checkpoints is not None or self._sinks():
                self.checkpoint()
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # read-ahead threads stop before a recovery seeks the source
            self.seconds += time.perf_counter() - t0

    def _batches(self, idle: Callable[[], None] | None = None) -> Iterator[Any]:
        """Raw batches in source order, decoded ahead on worker threads when possible."""
        prepare = preparer(self.head, name=self.name)
        if prepare is None or self.prefetch == 0:
            return self.source.batches()
        return read_ahead(self.source, prepare, self.prefetch, name=self.name, idle=idle)

    def _idle_check(self) -> Callable[[], None] | None:
        """With a cluster: its stage's check for workers the scheduler removed (run while the source is idle).

        A lost worker then raises ``WorkerLostError`` between batches, and :meth:`run`
        restores its key groups at once instead of when the next batch arrives.
        """
        if self.cluster is None:
            return None
        checks = [op.check_workers for op in self.operators() if hasattr(op, "check_workers")]
        return checks[0] if checks else None

    def start(self) -> None:
        """Run in a background thread (never on a UI event loop)."""
        if self._thread is not None and self._thread.is_alive():
            return

        def target() -> None:
            try:
                self.run()
            except Exception:
                log.exception("pipeline %r failed", self.name)

        self._thread = threading.Thread(target=target, name=f"workbench-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the source to stop and wait for the run thread."""
        self.source.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def offset(self) -> Any:
        """Source offset after the last batch processed (what a checkpoint records)."""
        return self._offset

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def flush(self) -> None:
        """End of input: every node emits what it holds, upstream first."""
        for op in self.operators():
            op.flush()

    # -- checkpoints -----------------------------------------------------------------
    def _checkpoint_due(self) -> bool:
        return checkpointing.checkpoint_due(self)

    def checkpoint(self) -> None:
        """Commit sink files for a new epoch, then write the checkpoint (see :mod:`.checkpointing`)."""
        checkpointing.checkpoint(self)

    def restore(self) -> None:
        """Restore node state and source offset; drop sink files of uncommitted epochs."""
        self._wire()
        checkpointing.restore(self)

    # -- accounting and health ---------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """``ingested = valid + dead_lettered + duplicates + late + dropped``."""
        return accounting.counts(self.operators())

    def check_invariant(self) -> None:
        """Raise when ingested records are unaccounted for."""
        accounting.check_invariant(self.name, self.counts())

    def health(self, *, stale_after: float = 10.0) -> dict[str, Any]:
        """Liveness of the run: is it running, did it fail, how old is the last batch.

        ``stale`` means no batch for ``stale_after`` seconds (by the injected clock)
        while the pipeline is meant to run, or a source that lost its connection;
        ``source`` is the source's own health (a broker's ``connected``,
        ``last_message_age_s`` …).

        Examples
        --------
        >>> from workbench.sources.frames import FrameSource
        >>> p = Pipeline(FrameSource([]), name="doc-health")
        >>> sorted(p.health())
        ['batches', 'error', 'exhausted', 'last_batch_age_s', 'running', 'source', 'stale']
        """
        return health.health(
            self.source,
            now=self.clock.monotonic(),
            started_at=self.started_at,
            running=self.running,
            error=self.error,
            batches=self.batches,
            stale_after=stale_after,
        )

    def metrics(self) -> pl.DataFrame:
        """One row per node: rows in/out, rejects, batch latency, state size, watermark."""
        return health.node_metrics(self.operators())

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, source={type(self.source).__name__}, batches={self.batches})"
