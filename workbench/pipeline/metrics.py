"""A pipeline's own Prometheus metrics: a ``prometheus_client`` collector read at scrape time.

:func:`collector` builds (once per pipeline) a :class:`PipelineCollector`: at every
scrape it reads what the pipeline already counts — :meth:`Pipeline.metrics` (rows in
and out, errors, state size, watermark per node), :meth:`Pipeline.counts`,
:meth:`Pipeline.health` (the source's connection and reconnects), dead letters by
``reason_code`` per node, and the alerts node's alerts by state — so a scrape costs
nothing between scrapes. The one thing observed on the run thread is the batch latency
histogram: a :meth:`Pipeline.on_batch` hook observes each node that took a batch (at
most one observation per node per batch, plus one for the whole graph).

Register it in a registry of its own (never the process-global one): :func:`registry`
does, :func:`serve` serves it (``workbench run --metrics-port``) and the served app's
``/metrics`` route renders it with :func:`render`.

Examples
--------
>>> from workbench.sources.frames import FrameSource
>>> from workbench.pipeline import Pipeline
>>> import polars as pl
>>> rows = [{"event_id": "a", "ts": 1_700_000_000_000, "host": "h", "cpu": 1.0, "mem": 1.0,
...          "latency_ms": 1.0, "status": 200}, {"event_id": "b", "ts": 1_700_000_000_000, "host": "h",
...          "cpu": 1.0, "mem": 500.0, "latency_ms": 1.0, "status": 200}]
>>> import workbench as wb
>>> p = Pipeline(FrameSource([pl.DataFrame(rows)]), name="doc-metrics")
>>> _ = p.standard("server_metrics", wb.Tumbling("10s"))
>>> p.run()
>>> text = render(registry(collector(p))).decode()
>>> 'workbench_node_rows_in_total{kind="decode",node="decode",pipeline="doc-metrics"} 2.0' in text
True
>>> 'workbench_dead_letters_total{node="validate",pipeline="doc-metrics",reason_code="out_of_bounds"} 1.0' in text
True
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workbench.errors import ConfigError
from workbench.operators.base import Operator

if TYPE_CHECKING:
    from workbench.pipeline import Pipeline

__all__ = ["BUCKETS", "PipelineCollector", "collector", "registry", "render", "serve", "served"]

#: batch latency buckets (seconds): 0.5 ms … 10 s
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_NODE_COUNTERS = (  # NodeMetrics field, metric name, help
    ("batches", "node_batches", "Batches a node processed."),
    ("rows_in", "node_rows_in", "Rows into a node."),
    ("rows_out", "node_rows_out", "Rows out of a node."),
    ("rejected", "node_rejected", "Rows a node sent to the dead letters."),
    ("dropped", "node_dropped", "Rows a node dropped (error policy drop)."),
    ("errors", "node_errors", "Batches whose processing raised in a node."),
)


def _seconds(t: Any) -> float | None:
    """A watermark (aware datetime or epoch ms) as epoch seconds."""
    if t is None:
        return None
    if isinstance(t, datetime):
        return t.timestamp()
    return float(t) / 1000


class PipelineCollector(Collector):
    """Prometheus metrics of one pipeline, read from it at scrape time.

    Parameters
    ----------
    pipe
        The pipeline; its batch hook observes the latency histogram.
    namespace
        Prefix of every metric name.

    Notes
    -----
    Counters are the pipeline's own: they survive a restart through the checkpoint
    (node metrics are part of it), so after a resume they continue, not restart at 0.
    """

    def __init__(self, pipe: Pipeline, *, namespace: str = "workbench") -> None:
        self.pipe = pipe
        self.namespace = namespace
        self._ops: list[Operator] = []
        self._seen: dict[int, int] = {}  # id(node) -> batches when last observed
        self._children: dict[int, Any] = {}  # id(node) -> its histogram child
        self.batch_seconds = Histogram(
            "batch_seconds",
            'Seconds a batch spent in a node (node="*": the whole graph).',
            ["pipeline", "node"],
            namespace=namespace,
            buckets=BUCKETS,
            registry=None,
        )
        self._whole = self.batch_seconds.labels(pipe.name, "*")
        self._unhook = pipe.on_batch(self._observe)

    def close(self) -> None:
        """Stop observing the pipeline's batches."""
        self._unhook()

    def _observe(self, seconds: float) -> None:
        """After each batch, on the run thread: one observation per node that took it."""
        if not self._ops:
            self._ops = self.pipe.operators()
        self._whole.observe(seconds)
        seen, children = self._seen, self._children
        for op in self._ops:
            m = op.metrics
            if seen.get(id(op), 0) != m.batches:
                seen[id(op)] = m.batches
                child = children.get(id(op))
                if child is None:  # the labelled child, looked up once per node
                    child = children[id(op)] = self.batch_seconds.labels(self.pipe.name, op.name)
                child.observe(m.last_batch_ms / 1000)

    def collect(self) -> Iterator[Metric]:
        """Every metric, read now (called by the registry at each scrape)."""
        pipe, ns, name = self.pipe, self.namespace, self.pipe.name
        ops = self._ops = pipe.operators()  # the graph may have grown (alerts added after start)
        node_labels = ["pipeline", "node", "kind"]
        counters = {
            field: CounterMetricFamily(f"{ns}_{metric}", text, labels=node_labels)
            for field, metric, text in _NODE_COUNTERS
        }
        state = GaugeMetricFamily(f"{ns}_node_state_size", "Rows or keys a node holds as state.", labels=node_labels)
        mark = GaugeMetricFamily(f"{ns}_node_watermark_seconds", "A node's event-time watermark.", labels=node_labels)
        lag = GaugeMetricFamily(
            f"{ns}_node_watermark_lag_seconds",
            "Now (the pipeline's clock) minus a node's watermark.",
            labels=node_labels,
        )
        dead = CounterMetricFamily(
            f"{ns}_dead_letters", "Dead letters by node and reason code.", labels=["pipeline", "node", "reason_code"]
        )
        alerts = GaugeMetricFamily(
            f"{ns}_alerts", "Active alerts by rule and state.", labels=["pipeline", "rule", "state"]
        )
        now = pipe.clock.now().timestamp()
        for op in ops:
            m, labels = op.metrics, [name, op.name, type(op).__name__]
            for field, family in counters.items():
                family.add_metric(labels, getattr(m, field))
            state.add_metric(labels, op.state_size)
            wm = _seconds(op.watermark)
            if wm is not None:
                mark.add_metric(labels, wm)
                lag.add_metric(labels, now - wm)
            for code, n in sorted(dict(m.reasons).items()):
                dead.add_metric([name, op.name, code], n)
            manager = getattr(op, "manager", None)
            if manager is not None:
                self._alerts(alerts, name, manager)
        yield from counters.values()
        yield from (state, mark, lag, dead, alerts)
        yield from self._records()
        yield from self._health()
        yield from self.batch_seconds.collect()

    @staticmethod
    def _alerts(family: GaugeMetricFamily, name: str, manager: Any) -> None:
        """Pending and firing alerts of an alerts node, by rule and state (zero for none)."""
        table = manager.evaluator.state  # replaced, never mutated, by the run thread
        held: dict[tuple[int, str], int] = {}
        for rule_no, st in table.select("rule", "state").iter_rows():
            held[(rule_no, st)] = held.get((rule_no, st), 0) + 1
        for rule_no, rule in enumerate(manager.rules):
            for st in ("pending", "firing"):
                family.add_metric([name, rule.name, st], held.get((rule_no, st), 0))

    def _records(self) -> Iterator[Metric]:
        ns, name = self.namespace, self.pipe.name
        counts = self.pipe.counts()
        ingested = CounterMetricFamily(f"{ns}_ingested_records", "Records read from the source.", labels=["pipeline"])
        ingested.add_metric([name], counts.pop("ingested"))
        outcome = CounterMetricFamily(
            f"{ns}_records", "Ingested records by outcome (they add up to ingested).", labels=["pipeline", "outcome"]
        )
        for key, n in counts.items():
            outcome.add_metric([name, key], n)
        batches = CounterMetricFamily(f"{ns}_pipeline_batches", "Batches the pipeline ran.", labels=["pipeline"])
        batches.add_metric([name], self.pipe.batches)
        yield from (ingested, outcome, batches)

    def _health(self) -> Iterator[Metric]:
        ns, name = self.namespace, self.pipe.name
        h = self.pipe.health()
        failed = GaugeMetricFamily(f"{ns}_pipeline_failed", "1 when the run ended with an error.", labels=["pipeline"])
        failed.add_metric([name], 1.0 if h["error"] else 0.0)
        stale = GaugeMetricFamily(f"{ns}_pipeline_stale", "1 when no batch came for a while.", labels=["pipeline"])
        stale.add_metric([name], 1.0 if h["stale"] else 0.0)
        yield from (failed, stale)
        if h["last_batch_age_s"] is not None:
            age = GaugeMetricFamily(
                f"{ns}_last_batch_age_seconds", "Seconds since the last batch.", labels=["pipeline"]
            )
            age.add_metric([name], h["last_batch_age_s"])
            yield age
        src, kind = h["source"], type(self.pipe.source).__name__
        labels = ["pipeline", "source"]
        if src.get("connected") is not None:
            g = GaugeMetricFamily(f"{ns}_source_connected", "1 while the source is connected.", labels=labels)
            g.add_metric([name, kind], 1.0 if src["connected"] else 0.0)
            yield g
        if "reconnects" in src:
            c = CounterMetricFamily(f"{ns}_source_reconnects", "Times the source reconnected.", labels=labels)
            c.add_metric([name, kind], src["reconnects"])
            yield c
        if src.get("last_message_age_s") is not None:
            g = GaugeMetricFamily(
                f"{ns}_source_last_message_age_seconds", "Seconds since the source's last message.", labels=labels
            )
            g.add_metric([name, kind], src["last_message_age_s"])
            yield g
        if src.get("unacked") is not None:
            g = GaugeMetricFamily(f"{ns}_source_unacked", "Messages read but not yet acknowledged.", labels=labels)
            g.add_metric([name, kind], src["unacked"])
            yield g


def collector(pipe: Pipeline) -> PipelineCollector:
    """The pipeline's collector, built on first use (one per pipeline, so one latency hook)."""
    if pipe._prometheus is None:
        pipe._prometheus = PipelineCollector(pipe)
    return pipe._prometheus


def registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of its own (not ``prometheus_client``'s global one) holding ``collectors``."""
    reg = CollectorRegistry(auto_describe=False)
    for c in collectors:
        reg.register(c)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``reg`` (what ``/metrics`` answers)."""
    return generate_latest(reg)


def serve(reg: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> Any:
    """Serve ``reg`` at ``http://addr:port/metrics`` on a daemon thread; returns the server (``.shutdown()``).

    Raises
    ------
    ConfigError
        When the port is out of range or taken.
    """
    from prometheus_client import start_http_server

    if not 0 <= port <= 65535:
        raise ConfigError(f"metrics: port must be in [0, 65535], not {port}")
    try:
        server, _ = start_http_server(port, addr, registry=reg)
    except OSError as exc:
        raise ConfigError(f"metrics: cannot listen on {addr}:{port}: {exc.strerror or exc}") from exc
    return server


@contextlib.contextmanager
def served(pipe: Pipeline, port: int | None, addr: str = "127.0.0.1") -> Iterator[Any]:
    """Serve ``pipe``'s metrics on ``addr:port`` while the block runs (nothing when ``port`` is None).

    The address served is said on stderr (port 0 picks a free one); the server stops
    when the block ends.
    """
    if port is None:
        yield None
        return
    server = serve(registry(collector(pipe)), port, addr)
    sys.stderr.write(f"workbench: metrics at http://{addr}:{server.server_port}/metrics\n")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
