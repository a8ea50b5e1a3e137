"""Outputs that persist: the Parquet lake and checkpoints."""

from workbench.storage.checkpoints import CheckpointStore
from workbench.storage.lake import Lake, LakeSink

__all__ = ["CheckpointStore", "Lake", "LakeSink"]
