"""Accounting: every ingested record is valid, dead-lettered, a duplicate, late or dropped.

Examples
--------
>>> check_invariant("p", {"ingested": 3, "valid": 1, "dead_lettered": 1, "duplicates": 1, "late": 0, "dropped": 0})
>>> check_invariant("p", {"ingested": 4, "valid": 1, "dead_lettered": 1, "duplicates": 1, "late": 0, "dropped": 0})
Traceback (most recent call last):
...
workbench.errors.WorkbenchError: pipeline 'p': ingested 4 != valid + dead_lettered + ... = 3 (...)
"""

from __future__ import annotations

from workbench.errors import WorkbenchError
from workbench.operators.base import Operator
from workbench.operators.nodes import decode, dedupe, window

__all__ = ["check_invariant", "counts"]


def counts(ops: list[Operator]) -> dict[str, int]:
    """``ingested = valid + dead_lettered + duplicates + late + dropped`` over the nodes ``ops``."""
    ingested = sum(op.records for op in ops if isinstance(op, decode))
    dead = sum(op.metrics.rejected for op in ops)
    dropped = sum(op.metrics.dropped for op in ops)
    dups = sum(op.duplicate_count for op in ops if isinstance(op, dedupe))
    wins = [op for op in ops if isinstance(op, window)]
    late = sum(w.late_count for w in wins)
    # a cluster's stage (workbench.cluster.ShardStage) does dedupe and windows on its workers
    keyed = [op.keyed_counts() for op in ops if hasattr(op, "keyed_counts")]
    dups += sum(k["duplicates"] for k in keyed)
    late += sum(k["late"] for k in keyed)
    if keyed and not wins:
        valid = sum(k["valid"] for k in keyed)
    elif wins:
        valid = sum(w.metrics.rows_in for w in wins) - late
    else:
        last = ops[-1] if ops else None
        valid = last.metrics.rows_out if last is not None else 0
    return {
        "ingested": ingested,
        "valid": valid,
        "dead_lettered": dead,
        "duplicates": dups,
        "late": late,
        "dropped": dropped,
    }


def check_invariant(name: str, c: dict[str, int]) -> None:
    """Raise when the counts ``c`` of pipeline ``name`` leave ingested records unaccounted for."""
    total = c["valid"] + c["dead_lettered"] + c["duplicates"] + c["late"] + c["dropped"]
    if c["ingested"] != total:
        raise WorkbenchError(
            f"pipeline {name!r}: ingested {c['ingested']} != valid + dead_lettered + "
            f"duplicates + late + dropped = {total} ({c})"
        )
