"""The ``alerts`` pipeline node: window rows (and drift events) in, alert events out.

:func:`attach` is what ``Pipeline.alerts(...)`` calls: it builds an
:class:`~workbench.alerts.manager.AlertManager` (rules, routes, inhibition, store,
outbox) and an :class:`AlertNode` below the ``windows`` output (and the ``drift``
output, when the pipeline has one), and names the node's output ``alerts``. The node
is an :class:`~workbench.operators.nodes.Operator`, so its state — alert states,
group timers, silences, acknowledgements — goes into every pipeline checkpoint and
comes back on restart. Every node of the pipeline with an ``on_feedback(alert, label)``
method (a model node) is registered for feedback. Call ``Pipeline.alerts`` after the
model nodes, so their ``drift`` output and feedback hooks are found.

Examples
--------
>>> import workbench as wb
>>> from workbench.alerts.rules import Threshold
>>> from workbench.sources.frames import FrameSource
>>> p = wb.Pipeline(FrameSource([]), name="doc-alerts")
>>> _ = p.standard("server_metrics", wb.Tumbling("10s"))
>>> node = p.alerts([Threshold("hot", metric="cpu_mean", value=90)])
>>> sorted(p.outputs), node.manager.evaluator.by
(['alerts', 'windows'], 'host')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamz import Stream

from workbench.alerts.dispatch import Inhibit, Route
from workbench.alerts.loader import AlertConfig, load_config
from workbench.alerts.manager import AlertManager, AlertSink
from workbench.alerts.notifiers import Notifier
from workbench.alerts.outbox import Outbox
from workbench.alerts.rules import Rule
from workbench.errors import ConfigError
from workbench.operators.nodes import Operator

if TYPE_CHECKING:
    from workbench.pipeline import Pipeline

__all__ = ["AlertNode", "attach"]


class AlertNode(Operator):
    """Evaluates alert rules on each window batch; emits the batch's alert events.

    Drift events arriving from a second upstream (``drift``) are buffered by the
    manager and matched at the next evaluation at or after their time.
    """

    def __init__(self, upstream: Stream, manager: AlertManager, *, drift: Sequence[Stream] = (), **kwargs: Any) -> None:
        super().__init__(upstream, name=kwargs.pop("name", "alerts"), **kwargs)
        self.manager = manager
        self._drift = list(drift)
        for stream in self._drift:
            stream.connect(self)

    def update(self, x: Any, who: Any = None, metadata: Any = None) -> Any:
        """Window rows are evaluated; drift events are buffered for the next evaluation."""
        if any(who is d for d in self._drift):
            self.manager.process_drift(x)
            return None
        return super().update(x, who, metadata)

    def process(self, x: Any, metadata: Any) -> tuple[Any, Any]:  # noqa: D102
        return self.manager.process(x), metadata

    @property
    def state_size(self) -> int:  # noqa: D102
        return self.manager.evaluator.state.height

    @property
    def watermark(self) -> Any:  # noqa: D102
        from datetime import UTC, datetime

        t = self.manager.evaluator.last_t
        return None if t is None else datetime.fromtimestamp(t / 1000, UTC)

    def on_close(self) -> None:
        """The pipeline closed (or was replaced): stop the outbox threads; pending stays in its log."""
        self.manager.close()

    def snapshot(self) -> dict[str, Any]:  # noqa: D102
        return {**super().snapshot(), "manager": self.manager.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: D102
        super().restore(state)
        self.manager.restore(state["manager"])


def _entity(stream: Stream) -> str | tuple[str, ...] | None:
    """The window node's key: every column of it labels a series (an alert's identity)."""
    by = getattr(getattr(stream, "state", None), "by", None)
    return None if not by else by[0] if len(by) == 1 else tuple(by)


def attach(
    pipe: Pipeline,
    rules: Sequence[Rule] | AlertConfig | str | Path,
    *,
    routes: Sequence[Route] | None = None,
    inhibit: Sequence[Inhibit] = (),
    receivers: Mapping[str, Notifier] | None = None,
    outbox: str | Path | None = None,
    store: AlertSink | None = None,
    upstream: str = "windows",
    drift: str | None = "drift",
    by: str | tuple[str, ...] | None = None,
    name: str = "alerts",
    evaluation_interval: str | float | None = None,
    lookback: str | float | None = None,
) -> AlertNode:
    """Add an alerts node below output ``upstream``; its events become output ``name``.

    Parameters
    ----------
    pipe
        The pipeline.
    rules
        Rules, an :class:`AlertConfig`, or the path of a YAML file (routes and
        inhibition then come from it too, unless given here).
    routes, inhibit
        Routing and inhibition (see :mod:`workbench.alerts.dispatch`).
    receivers
        Receiver name → notifier; delivered by an :class:`Outbox` logging to ``outbox``
        (default: the config's ``receivers`` section, built by
        :func:`~workbench.alerts.receivers.build_receivers`).
    outbox
        Path of the notification log (needed with ``receivers``).
    store
        An alert store to record history in.
    upstream
        Output whose window rows are evaluated.
    drift
        Output carrying drift events, used when the pipeline has it; otherwise the
        ``drift`` side stream of every node that has one (the models' score nodes).
    by
        Default entity column (the window node's key by default).
    name
        Node and output name.
    evaluation_interval, lookback
        The evaluation clock (default: the config file's, else 1 m) and lookback (5 m).
    """
    if isinstance(rules, str | Path):
        rules = load_config(rules)
    if isinstance(rules, AlertConfig):
        evaluation_interval = evaluation_interval or rules.evaluation_interval
        lookback = lookback or rules.lookback
        routes = routes if routes is not None else (list(rules.routes) or None)
        inhibit = inhibit or rules.inhibit
        if receivers is None and rules.receivers:
            from workbench.alerts.receivers import build_receivers

            receivers = build_receivers(rules.receivers)
        rules = list(rules.rules)
    source = pipe._stream(upstream)
    box = None
    if receivers:
        if outbox is None:
            raise ConfigError(
                f"pipeline {pipe.name!r}: alerts with receivers need outbox=<path of the notification log>"
            )
        box = Outbox(receivers, log=outbox, clock=pipe.clock)
        box.start()
    manager = AlertManager(
        rules,
        routes=routes,
        inhibit=inhibit,
        by=by or _entity(source) or "host",
        store=store,
        outbox=box,
        clock=pipe.clock,
        evaluation_interval=evaluation_interval or "1m",
        lookback=lookback or "5m",
    )
    drifts: list[Stream] = []
    if drift and drift in pipe.outputs:
        drifts.append(pipe.outputs[drift])
    elif drift:  # score nodes carry their drift events on a ``drift`` side stream
        drifts += [op.drift for op in pipe.operators() if isinstance(getattr(op, "drift", None), Stream)]
    node = AlertNode(source, manager, drift=drifts, name=name)
    for op in pipe.operators():  # model nodes learn from feedback through their on_feedback hook
        hook = getattr(op, "on_feedback", None)
        if op is not node and callable(hook):
            manager.on_feedback(hook)
    pipe.output(name, node)
    return node
