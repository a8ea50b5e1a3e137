"""The one module that registers Workbench's nodes as methods of ``streamz.Stream``.

Once a :class:`~workbench.pipeline.core.Pipeline` is imported (``wb.Pipeline`` does it), a pipeline reads::

    head.decode("server_metrics").validate("server_metrics").dedupe("event_id")
        .enrich(hosts, on="host").window(Tumbling("10s"), by="host", aggs=AGGS)
        .score("context", features=["cpu_mean"], by="host")

and streamz's own nodes (``map``, ``filter``, ``sink`` …) mix in freely. What each
method builds:

=================  ==============================================  =====================
method             class                                           side outputs
=================  ==============================================  =====================
``.decode(...)``   :class:`workbench.operators.nodes.decode`       ``rejects``
``.validate(...)`` :class:`workbench.operators.nodes.validate`     ``rejects``
``.horizon(...)``  :class:`workbench.operators.nodes.horizon`      ``rejects``
``.dedupe(...)``   :class:`workbench.operators.nodes.dedupe`       ``rejects``, ``duplicates``
``.enrich(...)``   :class:`workbench.operators.nodes.enrich`       ``rejects``
``.pseudonymize``  :class:`workbench.operators.nodes.pseudonymize` ``rejects``
``.window(...)``   :class:`workbench.operators.nodes.window`       ``rejects``, ``late``
``.score(...)``    :class:`workbench.models.node.ScoreNode`        ``rejects``, ``drift``
=================  ==============================================  =====================

``Pipeline.alerts(rules)`` adds the alert node (:mod:`workbench.pipeline.alerting`)
below the ``windows`` output; it is not a ``Stream`` method because it needs the
pipeline's named outputs.

Examples
--------
>>> from streamz import Stream
>>> NODES["window"].__name__, type(Stream().decode("server_metrics")).__name__
('window', 'decode')
"""

from __future__ import annotations

from streamz import Stream

from workbench.models.node import ScoreNode
from workbench.operators.nodes import decode, dedupe, enrich, horizon, pseudonymize, validate, window

__all__ = ["NODES"]

#: method name → node class, as registered on ``streamz.Stream``
NODES: dict[str, type] = {
    "decode": decode,
    "validate": validate,
    "horizon": horizon,
    "dedupe": dedupe,
    "enrich": enrich,
    "pseudonymize": pseudonymize,
    "window": window,
    "score": ScoreNode,
}

for _method, _cls in NODES.items():
    Stream.register_api(attribute_name=_method)(_cls)
