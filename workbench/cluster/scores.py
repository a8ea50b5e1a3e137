"""Score nodes on the shard hosts: each entity's models live in the key group that owns it.

A ``score`` node right below a cluster's :class:`~workbench.cluster.stage.ShardStage`
whose entities are the windows' entities (its ``by`` holds every window key column)
does not score on the coordinator: every host holds one
:class:`~workbench.models.scoring.Scorer` per such node for all its key groups, scores
the window rows its key groups close, and sends back scored rows and drift events. The
coordinator merges them in the order one process scores them.

Two things make the result exactly that of one process:

- the rows: a host scores its window rows sorted as one process sorts all of them
  (``window_start``, the keys, then stably by the row time), and an entity's rows all
  come from one host, so each entity's detector sees the same rows in the same order;
- idle entities: before each call a host advances its scorers to the newest row time
  of *every* host so far (:meth:`Scorer.advance`), so an entity expires exactly when
  it would in one process.

At a snapshot each scorer's entities split by key group (an entity's key group is the
one of its window key); at a restore the parts of a host's key groups merge, least
recently seen first. ``max_entities`` then bounds each host's entities (one process:
all of them): when it is reached, which entity is evicted depends on the hosts.

Examples
--------
>>> import polars as pl
>>> from datetime import UTC, datetime, timedelta
>>> from workbench.models.detectors import RobustZScore
>>> from workbench.models.scoring import Scorer
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> starts = [t0 + timedelta(seconds=10 * (i // 2)) for i in range(6)]
>>> rows = pl.DataFrame({"host": ["a", "b"] * 3, "window_start": starts, "cpu_mean": [1.0, 2.0, 1.5, 2.5, 1.0, 9.0]})
>>> rows = rows.with_columns(window_end=pl.col("window_start") + timedelta(seconds=10))
>>> scorers = HostScorers({"0": Scorer(RobustZScore(warm_up=1), features=["cpu_mean"], by="host")}, ["host"], 4)
>>> out = scorers.score(rows, {})
>>> parts = scorers.snapshot([0, 1, 2, 3])
>>> held = {kg: list(p["0"]["entities"]) for kg, p in parts.items() if p["0"]["entities"]}
>>> out["0"]["scored"].height, held == {key_group(b"a", 4): ["a", "b"]}
(6, True)
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import polars as pl

from workbench.cluster.keygroups import key_group
from workbench.errors import CheckpointError
from workbench.models.scoring import Scorer

__all__ = ["HostScorers", "order_of", "shardable"]


def shardable(scorer: Scorer, by: list[str]) -> str | None:
    """Why ``scorer`` cannot run on the hosts of windows keyed by ``by``; None when it can."""
    if scorer.shared:
        return "it shares one model between all entities (shared=True)"
    if scorer.fill:
        return "it fills rows for entities absent from a window (fill=…), which needs every window of an epoch"
    missing = [c for c in by if c not in scorer.by]
    if missing:
        return f"its entities ({scorer.by}) do not include the window key column(s) {missing}"
    return None


def order_of(scorer: Scorer, by: list[str]) -> list[str]:
    """The columns one process's scored rows are sorted by: row time, then the windows' own order."""
    return list(dict.fromkeys([scorer.time, "window_start", *by]))


class HostScorers:
    """One :class:`Scorer` per sharded score node, for all the key groups of a host.

    Parameters
    ----------
    templates
        Score node (its index on the stage, as text) → a fresh Scorer to copy.
    by
        The window key columns (the key groups are theirs).
    groups
        G, the number of key groups.
    """

    def __init__(self, templates: dict[str, Scorer], by: list[str], groups: int) -> None:
        self.by = list(by)
        self.groups = groups
        self.scorers = {name: copy.deepcopy(t) for name, t in templates.items()}

    def score(self, windows: pl.DataFrame | None, marks: dict[str, int | None]) -> dict[str, dict[str, Any]]:
        """Advance every scorer to its mark (newest row time of all hosts), then score ``windows``.

        Returns, per scorer, ``scored`` rows and ``drift`` events (with the order columns
        of their rows, ``__o0`` …, so the coordinator can merge them), each None when empty.
        """
        if windows is not None and windows.height:
            windows = windows.sort(["window_start", *self.by], maintain_order=True)  # as merged in one process
        out: dict[str, dict[str, Any]] = {}
        for name, scorer in self.scorers.items():
            scorer.advance(marks.get(name))
            if windows is None or windows.height == 0:
                out[name] = {"scored": None, "drift": None, "entities": scorer.state_size}
                continue
            scored, drift = scorer.process(windows, positions=True)
            if drift.height:
                rows = drift["__row"]
                keys = order_of(scorer, self.by)
                drift = drift.with_columns([scored[c].gather(rows).alias(f"__o{i}") for i, c in enumerate(keys)])
                drift = drift.drop("__row")
            out[name] = {"scored": scored, "drift": drift if drift.height else None, "entities": scorer.state_size}
        return out

    def rebuild(self, name: str, detector: Any, history: pl.DataFrame | None) -> int:
        """A retuned detector for scorer ``name``, warmed on this host's part of ``history``; rows warmed."""
        scorer = self.scorers[name]
        scorer.rebuild(detector)
        return scorer.warm(history) if history is not None and history.height else 0

    def _group(self, scorer: Scorer, key: Any) -> int:
        """An entity's key group: the one of its window key (``keygroups.key_groups``' bytes)."""
        if not self.by:
            return 0
        values = key if isinstance(key, tuple) else (key,)
        text = ["\x00" if values[scorer.by.index(c)] is None else str(values[scorer.by.index(c)]) for c in self.by]
        return key_group("\x1f".join(text).encode(), self.groups)

    def snapshot(self, groups: list[int]) -> dict[int, dict[str, Any]]:
        """Each scorer's own snapshot, its entities split by key group."""
        out: dict[int, dict[str, Any]] = {kg: {} for kg in groups}
        for name, scorer in self.scorers.items():
            state = scorer.snapshot()  # a deep copy
            parts: dict[int, OrderedDict[Any, Any]] = {kg: OrderedDict() for kg in groups}
            for key, ent in state["entities"].items():
                kg = self._group(scorer, key)
                if kg not in parts:
                    raise CheckpointError(f"score node {name}: entity {key!r} of key group {kg} on a host without it")
                parts[kg][key] = ent
            for kg in groups:
                out[kg][name] = {**state, "entities": parts[kg], "expired": 0, "evicted": 0}
        return out

    def restore(self, parts: list[dict[str, Any]]) -> None:
        """Merge key groups' :meth:`snapshot` parts (least recently seen entity first)."""
        for name, scorer in self.scorers.items():
            mine = [p[name] for p in parts if name in p]
            if not mine:
                continue
            entities = sorted(((k, e) for p in mine for k, e in p["entities"].items()), key=lambda ke: ke[1].last_seen)
            marks = [p["watermark_ms"] for p in mine if p["watermark_ms"] is not None]
            features = next((p["features"] for p in mine if p["features"] is not None), None)
            scorer.restore(
                {
                    **mine[0],
                    "entities": OrderedDict(entities),
                    "features": features,
                    "watermark_ms": max(marks) if marks else None,
                    "expired": 0,
                    "evicted": 0,
                }
            )

    @property
    def state_size(self) -> int:
        """Entities held by all scorers."""
        return sum(s.state_size for s in self.scorers.values())
