"""Outputs that persist: the Parquet lake and checkpoints."""

from __future__ import annotations

from workbench.lazy import exports

_WHERE = {
    "CheckpointStore": "workbench.storage.checkpoints",
    "Lake": "workbench.storage.lake",
    "LakeSink": "workbench.storage.lake",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = exports(__name__, _WHERE)
