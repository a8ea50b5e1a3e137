"""Operators: decode, validate, dedupe, enrich, window — registered on ``streamz.Stream``.

Importing this package registers the nodes (see :mod:`workbench.operators.nodes`).
"""

from workbench.operators import aggregations
from workbench.operators.nodes import NodeMetrics, Operator
from workbench.operators.windows import Session, Sliding, Tumbling, Windower

__all__ = ["NodeMetrics", "Operator", "Session", "Sliding", "Tumbling", "Windower", "aggregations"]
