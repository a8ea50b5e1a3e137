"""Operators: decode, validate, pseudonymize, dedupe, enrich, window — pure state classes and their streamz nodes.

The nodes are registered as ``streamz.Stream`` methods in one module,
:mod:`workbench.pipeline.nodes` (importing :mod:`workbench.pipeline` does it).
"""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "Pseudonymizer": "workbench.operators.pseudonym",
    "NodeMetrics": "workbench.operators.base",
    "Operator": "workbench.operators.base",
    "Session": "workbench.operators.windows",
    "Sliding": "workbench.operators.windows",
    "Tumbling": "workbench.operators.windows",
    "Windower": "workbench.operators.windows",
    "aggregations": "workbench.operators.aggregations",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
