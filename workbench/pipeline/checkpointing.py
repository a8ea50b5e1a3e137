"""Checkpoints of a pipeline: sinks commit an epoch, then node state and the source offset are saved.

The engine is single-threaded per pipeline, so a checkpoint taken between two batches
is a consistent cut. Order matters: sink files of the new epoch are committed first,
then the checkpoint is written (atomically), then the source learns its batches up to
the offset are durable (a broker source acknowledges only now). A restart rolls sinks
back to the checkpoint's epoch, so a replay neither loses nor doubles output.

A pipeline with an ``identity`` (what ``replay`` and ``run`` set: the source's identity,
paths relative to the output folder) records it and the lake's last committed epoch in
every checkpoint; a resume whose source differs, or whose lake lost committed epochs, is
refused naming what differs, and so is a start without a checkpoint over a lake that
already holds output (it would double its rows). ``--fresh`` starts over instead.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import CheckpointError
from workbench.operators.spec import spec_differences

if TYPE_CHECKING:
    from workbench.pipeline.core import Pipeline

__all__ = [
    "OffsetLog",
    "check_orphan_output",
    "checkpoint",
    "checkpoint_due",
    "first_checkpoint",
    "identity_differences",
    "restore",
]

log = logging.getLogger(__name__)


class OffsetLog:
    """A write-ahead log of the source offsets each batch covers, written before it is dispatched.

    A pipeline on a cluster appends ``{"batch", "start", "end"}`` (fsynced) before it
    sends a batch to the workers, and empties the log at every checkpoint, so it holds
    exactly the batches a recovery replays. When a replayed batch covers other offsets
    than its logged one (a source that re-cuts its batches), that is logged as a warning:
    the outputs stay exactly-once (sink files are named by checkpoint epoch, which the
    checkpoint fixes), only the dead letters' ``offset`` column may differ.

    Examples
    --------
    >>> import tempfile
    >>> wal = OffsetLog(Path(tempfile.mkdtemp()) / "offsets.wal")
    >>> wal.append(1, 0, 100); wal.append(2, 100, 180)
    >>> OffsetLog(wal.path).entries
    {1: (0, 100), 2: (100, 180)}
    >>> wal.truncate(); OffsetLog(wal.path).entries
    {}
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[int, tuple[Any, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    break  # a torn last line: the batch it named was never dispatched
                self.entries[int(e["batch"])] = (e["start"], e["end"])

    def append(self, batch: int, start: Any, end: Any) -> None:
        """Log that batch number ``batch`` covers ``start``..``end``; durable when this returns."""
        logged = self.entries.get(batch)
        if logged is not None and list(logged) != json.loads(json.dumps([start, end], default=str)):
            log.warning("replayed batch %d covers %s..%s, logged as %s..%s", batch, start, end, *logged)
        self.entries[batch] = (start, end)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"batch": batch, "start": start, "end": end}, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate(self) -> None:
        """Forget every entry (a checkpoint now covers them)."""
        self.entries = {}
        if self.path.exists():
            with open(self.path, "w") as f:
                os.fsync(f.fileno())


def _lake_epoch(pipe: Pipeline) -> int:
    """The newest epoch committed to any lake output of the pipeline (0 when none)."""
    return max((s.lake.last_epoch(s.output) for s in pipe._lake_sinks), default=0)


def identity_differences(saved: dict[str, Any] | None, now: dict[str, Any] | None, prefix: str = "") -> list[str]:
    """``key: was → now`` for every value that differs between two identity records.

    Examples
    --------
    >>> identity_differences({"source": {"size": 10, "path": "e.jsonl"}}, {"source": {"size": 7, "path": "e.jsonl"}})
    ['source.size: 10 → 7']
    """
    saved, now = saved or {}, now or {}
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += identity_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} → {b!r}".replace("'", ""))
    return out


def _same_content(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Same size and fingerprint: the same file, wherever it is now (a moved folder resumes)."""
    a, b = saved.get("source") or {}, now.get("source") or {}
    return a.get("fingerprint") is not None and all(a.get(k) == b.get(k) for k in ("size", "fingerprint"))


def check_orphan_output(pipe: Pipeline) -> None:
    """Refuse to start without a checkpoint over a lake holding output: the rows would be doubled."""
    if pipe.identity is None:
        return
    held = {s.output: s.lake.last_epoch(s.output) for s in pipe._lake_sinks}
    held = {name: epoch for name, epoch in held.items() if epoch}
    if held:
        where = pipe.checkpoints.folder if pipe.checkpoints is not None else "?"
        raise CheckpointError(
            f"pipeline {pipe.name!r}: the lake holds output of an earlier run "
            f"({', '.join(f'{k} up to epoch {v}' for k, v in sorted(held.items()))}) but there is no "
            f"checkpoint in {where}; running again would double its rows: start over with --fresh "
            "(clears the outputs), or give another --out"
        )


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
    pipe.checkpoints.save(_state(pipe))
    pipe._last_checkpoint = pipe.clock.monotonic()
    if pipe._wal is not None:
        pipe._wal.truncate()
    pipe.source.commit(pipe._offset)


def _state(pipe: Pipeline) -> dict[str, Any]:
    return {
        "pipeline": pipe.name,
        "epoch": pipe.epoch,
        "batches": pipe.batches,
        "source": {**pipe.source.snapshot(), "offset": pipe._offset},
        "nodes": {op.name: op.snapshot() for op in pipe.operators()},
        "spec": pipe.spec,
        "identity": pipe.identity,
        "lake_epoch": _lake_epoch(pipe),
        "tables": {
            s.where: s.commit_state() for s in pipe._db_sinks if hasattr(s, "commit_state")
        },  # commit rows (PostgreSQL)
    }


def first_checkpoint(pipe: Pipeline) -> None:
    """Checkpoint epoch 0 at the start of a new run, before it writes anything.

    Output is committed before the checkpoint that covers it, so a run killed between
    its first commit and its first checkpoint leaves lake files and no checkpoint: the
    next start would take them for output whose checkpoint was deleted and refuse. With
    this one, it rolls them back and resumes from the start instead.
    """
    assert pipe.checkpoints is not None
    if pipe._offset is None:
        pipe._offset = pipe.source.offset
    pipe.checkpoints.save(_state(pipe))


def restore(pipe: Pipeline) -> None:
    """Restore node state and the source offset; drop sink files of uncommitted epochs."""
    if pipe.checkpoints is None:
        raise CheckpointError(f"pipeline {pipe.name!r}: no checkpoint store to restore from")
    state = pipe.checkpoints.load()
    if state is None:
        return
    if pipe.identity is not None:  # checked instead of the name, which may hold an absolute path
        if state.get("identity") is None:
            raise CheckpointError(
                f"checkpoint {pipe.checkpoints.path}: records no source identity (an older Workbench wrote "
                "it), so resuming cannot be checked: start over with --fresh"
            )
        changed = [
            d
            for d in identity_differences(state["identity"], pipe.identity)
            if not (d.startswith("source.path:") and _same_content(state["identity"], pipe.identity))
        ]
        if changed:
            raise CheckpointError(
                f"checkpoint {pipe.checkpoints.path}: made from another input ({'; '.join(changed)}); "
                "resume with the same input, or start over with --fresh (clears the outputs)"
            )
    elif state.get("pipeline") != pipe.name:
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
    tables = state.get("tables") or {}
    for sink in pipe._db_sinks:
        if hasattr(sink, "resume") and sink.where in tables:
            sink.resume(tables[sink.where], str(pipe.checkpoints.path))
    lost = int(state.get("lake_epoch") or 0)
    if pipe.identity is not None and _lake_epoch(pipe) < lost:
        raise CheckpointError(
            f"checkpoint {pipe.checkpoints.path}: the lake lost committed output (its newest epoch is "
            f"{_lake_epoch(pipe)}, the checkpoint's {lost}); resuming would leave a hole: start over with --fresh"
        )
    pipe.source.restore(state["source"])
    pipe._offset = state["source"].get("offset")
