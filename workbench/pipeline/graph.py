"""The graph below a pipeline's head: its nodes in order, and the wiring of side outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
from streamz import Stream

from workbench.operators.base import Operator

__all__ = ["operators", "topological", "wire"]


def topological(head: Stream) -> list[Stream]:
    """Every node reachable from ``head``, upstream first.

    Examples
    --------
    >>> head = Stream()
    >>> a = head.map(abs); b = a.map(str); c = head.map(float)
    >>> order = topological(head)
    >>> order[0] is head, order.index(a) < order.index(b), len(order)
    (True, True, 4)
    """
    reachable: dict[int, Stream] = {}
    stack = [head]
    while stack:
        node = stack.pop()
        if id(node) not in reachable:
            reachable[id(node)] = node
            stack.extend(node.downstreams)
    pending = {
        key: sum(1 for up in node.upstreams if up is not None and id(up) in reachable)
        for key, node in reachable.items()
    }
    order: list[Stream] = []
    ready = [head]
    while ready:
        node = ready.pop(0)
        order.append(node)
        for down in node.downstreams:
            pending[id(down)] -= 1
            if pending[id(down)] == 0:
                ready.append(down)
    return order


def operators(head: Stream) -> list[Operator]:
    """Workbench nodes below ``head``, upstream first."""
    return [n for n in topological(head) if isinstance(n, Operator)]


def wire(
    ops: list[Operator],
    wired: set[int],
    side: dict[str, Stream],
    *,
    stamp: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> None:
    """Make node names unique and connect each node's side outputs once.

    ``side`` maps a side output's name (``rejects``, ``duplicates``, ``late``) to the
    pipeline stream that gathers it; a node has the side outputs it declares.
    ``stamp`` adds the pipeline's columns (ingest time, source offset) to each node's dead letters.
    """
    names: set[str] = set()
    for op in ops:
        base, i = op.name, 1
        while op.name in names:
            i += 1
            op.name = f"{base}_{i}"
        names.add(op.name)
        if id(op) in wired:
            continue
        wired.add(id(op))
        op.stamp = stamp
        for attr, target in side.items():
            stream: Any = getattr(op, attr, None)
            if isinstance(stream, Stream):
                stream.connect(target)
