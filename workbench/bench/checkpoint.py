"""``workbench bench checkpoint``: what a checkpoint of a big dedupe table writes, full against incremental.

A dedupe table of ``keys`` event ids (an hour's TTL) is checkpointed once (the first
checkpoint of a run writes everything: the baseline), then ``saves`` more times, each
after ``batch`` new events, as a running pipeline would. Reported: bytes written and
seconds per save, as a ratio to the full one, and the time to load and restore.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["bench_checkpoint"]


def _batch(first: int, n: int) -> Any:
    """Events ``first`` … ``first + n - 1``: unique ids, one millisecond apart from 2024-01-01."""
    import polars as pl

    ms = pl.Series("ts", range(first, first + n), dtype=pl.Int64) + 1_704_067_200_000
    return pl.DataFrame({"event_id": [f"evt-{i:012d}" for i in range(first, first + n)]}).with_columns(
        pl.from_epoch(ms, time_unit="ms").dt.replace_time_zone("UTC")
    )


def bench_checkpoint(
    *, keys: int = 1_000_000, batch: int = 10_000, saves: int = 7, full_every: int = 8
) -> dict[str, Any]:
    """Bytes and seconds of a full checkpoint of ``keys`` dedupe keys, then of ``saves`` incremental ones."""
    from workbench.operators.dedupe import Deduplicator
    from workbench.storage.checkpoints import CheckpointStore
    from workbench.storage.keys import SecretKey

    dedupe = Deduplicator("event_id", "ts", ttl="1h")
    for first in range(0, keys, 100_000):
        dedupe.process(_batch(first, min(100_000, keys - first)))
    key = SecretKey(bytes(32), "bench")
    with tempfile.TemporaryDirectory() as folder:
        store = CheckpointStore(Path(folder), key=key, full_every=full_every)
        rows = []
        for epoch in range(saves + 1):
            if epoch:
                dedupe.process(_batch(keys + (epoch - 1) * batch, batch))
            t = time.perf_counter()
            store.save({"epoch": epoch, "dedupe": dedupe.snapshot()})
            rows.append({"epoch": epoch, "bytes": store.written, "seconds": round(time.perf_counter() - t, 4)})
        t = time.perf_counter()
        state = CheckpointStore(Path(folder), key=key).load()
        restored = Deduplicator("event_id", "ts", ttl="1h")
        restored.restore(state["dedupe"])  # type: ignore[index]
        load_s = time.perf_counter() - t
        on_disk = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    full, rest = rows[0], rows[1:]
    incremental = [r for r in rest if r["bytes"] < full["bytes"] / 2]
    return {
        "keys": keys,
        "new_keys_per_save": batch,
        "full_every": full_every,
        "saves": rows,
        "full": {"bytes": full["bytes"], "seconds": full["seconds"]},
        "incremental_median": {
            "bytes": int(statistics.median(r["bytes"] for r in incremental)) if incremental else None,
            "seconds": statistics.median(r["seconds"] for r in incremental) if incremental else None,
        },
        "bytes_vs_full": round(statistics.median(r["bytes"] for r in incremental) / full["bytes"], 4)
        if incremental
        else None,
        "seconds_vs_full": round(statistics.median(r["seconds"] for r in incremental) / full["seconds"], 3)
        if incremental
        else None,
        "load_and_restore_s": round(load_s, 3),
        "on_disk_bytes": on_disk,
        "restored_keys": restored.state_size,
    }
