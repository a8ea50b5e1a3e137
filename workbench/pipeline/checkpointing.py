"""Checkpoints of a pipeline: sinks commit an epoch, then node state and the source offset are saved.

The engine is single-threaded per pipeline, so a checkpoint taken between two batches
is a consistent cut. Order matters: sink files of the new epoch are committed first,
then the checkpoint is written (atomically), then the source learns its batches up to
the offset are durable (a broker source acknowledges only now). A restart rolls sinks
back to the checkpoint's epoch, so a replay neither loses nor doubles output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.errors import CheckpointError
from workbench.operators.spec import spec_differences

if TYPE_CHECKING:
    from workbench.pipeline.core import Pipeline

__all__ = ["checkpoint", "checkpoint_due", "restore"]


def checkpoint_due(pipe: Pipeline) -> bool:
    """Whether ``checkpoint_every`` (by the injected clock) or ``checkpoint_batches`` has passed."""
    if pipe.checkpoints is None and not pipe._sinks():
        return False
    if pipe.checkpoint_batches is not None and pipe.batches % pipe.checkpoint_batches == 0:
        return True
    return pipe.clock.monotonic() - pipe._last_checkpoint >= pipe.checkpoint_every_s


def checkpoint(pipe: Pipeline) -> None:
    """Commit sink files for a new epoch, then write the checkpoint (in that order).

    Without a checkpoint store only the sinks commit (their files then carry epochs
    after any already in the lake, so runs never overwrite each other).
    """
    if pipe.checkpoints is None and pipe.epoch == 0:
        pipe.epoch = max((s.lake.last_epoch(s.output) for s in pipe._lake_sinks), default=0)
    pipe.epoch += 1
    for sink in pipe._sinks():
        sink.commit(pipe.epoch)
    pipe._last_checkpoint = pipe.clock.monotonic()
    if pipe.checkpoints is None:
        pipe.source.commit(pipe._offset)
        return
    pipe.checkpoints.save(
        {
            "pipeline": pipe.name,
            "epoch": pipe.epoch,
            "batches": pipe.batches,
            "source": {**pipe.source.snapshot(), "offset": pipe._offset},
            "nodes": {op.name: op.snapshot() for op in pipe.operators()},
            "spec": pipe.spec,
        }
    )
    pipe._last_checkpoint = pipe.clock.monotonic()
    pipe.source.commit(pipe._offset)


def restore(pipe: Pipeline) -> None:
    """Restore node state and the source offset; drop sink files of uncommitted epochs."""
    if pipe.checkpoints is None:
        raise CheckpointError(f"pipeline {pipe.name!r}: no checkpoint store to restore from")
    state = pipe.checkpoints.load()
    if state is None:
        return
    if state.get("pipeline") != pipe.name:
        raise CheckpointError(
            f"checkpoint {pipe.checkpoints.path}: written by pipeline {state.get('pipeline')!r}, not {pipe.name!r}"
        )
    differ = spec_differences(state.get("spec"), pipe.spec)
    if differ:
        raise CheckpointError(
            f"checkpoint {pipe.checkpoints.path}: made by a pipeline with another spec ({differ}); "
            "resume with the same options, or start over (--fresh)"
        )
    ops = {op.name: op for op in pipe.operators()}
    added, removed = sorted(set(ops) - set(state["nodes"])), sorted(set(state["nodes"]) - set(ops))
    if added or removed:
        what = "; ".join(
            part
            for part in (
                f"this run adds {', '.join(added)}" if added else "",
                f"this run drops {', '.join(removed)}" if removed else "",
            )
            if part
        )
        raise CheckpointError(
            f"checkpoint {pipe.checkpoints.path}: made by a pipeline with other nodes ({what}: e.g. --rules, "
            "detectors or outputs changed); resume with the same options, or start over with --fresh"
        )
    for name, snap in state["nodes"].items():
        ops[name].restore(snap)
    pipe.epoch = state["epoch"]
    pipe.batches = state["batches"]
    for sink in pipe._sinks():
        sink.rollback(pipe.epoch)
    pipe.source.restore(state["source"])
    pipe._offset = state["source"].get("offset")
