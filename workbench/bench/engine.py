"""Benchmarks, measured against a baseline in the same run (``workbench bench …``).

``bench_engine`` times the full streaming replay path (file → decode → validate →
dedupe → windows) and an offline polars computation of the same windows on the same
file, checks that they agree, and reports events/s for both, their ratio and peak
RSS. Each side runs in its own child process, so its peak RSS is its own.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["bench_engine", "bench_sessions", "keyed_events", "offline_replay", "streaming_replay"]

_WINDOW = "10s"
_LATENESS = "5s"

#: Allocator settings of both benchmark processes with ``tuned=True`` (not the
#: default: the benchmark measures the engine as users run it). Each batch frees tens
#: of MB that the next one needs again; polars' jemalloc and glibc's malloc hand part
#: of it back to the kernel, and it is page-faulted in again — on a virtual machine
#: a visible share of a short run, less once a long run has warmed up.
ALLOCATOR_ENV = {
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:10000,muzzy_decay_ms:10000",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864",
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def streaming_replay(path: str, max_rows: int, session: str | None = None) -> dict[str, Any]:
    """The streaming path, windows kept in memory; returns timing and a result digest.

    ``session``: session windows with this gap instead of 10 s tumbling windows.
    """
    from workbench import native
    from workbench.operators.windows import Session, Tumbling
    from workbench.pipeline import Pipeline
    from workbench.sources.files import FileSource

    decoder = native.status()  # builds the native decoder first if need be: not timed
    t0 = time.perf_counter()
    pipe = Pipeline(FileSource(path, max_rows=max_rows), name="bench-stream")
    spec = Session(session) if session else Tumbling(_WINDOW)
    windows = pipe.standard("server_metrics", spec, lateness=_LATENESS)
    out = pipe.collect(windows)
    pipe.run()
    seconds = time.perf_counter() - t0
    result = pl.concat(out) if out else pl.DataFrame()
    counts = pipe.counts()
    pipe.check_invariant()
    pipe.close()
    return {
        "seconds": seconds,
        "counts": counts,
        "windows": result,
        "peak_rss_mb": _peak_rss_mb(),
        "decoder": decoder,
    }


def offline_replay(path: str) -> dict[str, Any]:
    """The same windows in one offline polars computation over the whole file."""
    from workbench.operators.aggregations import SERVER_METRICS_AGGS
    from workbench.operators.decode import decode_ndjson
    from workbench.operators.validate import validate_frame
    from workbench.operators.windows import Tumbling
    from workbench.schema import SERVER_METRICS
    from workbench.testing import offline_windows

    t0 = time.perf_counter()
    data = Path(path).read_bytes()
    decoded = decode_ndjson(data, SERVER_METRICS)
    valid, _ = validate_frame(decoded.frame, SERVER_METRICS, decoded.raw)
    del data, decoded
    valid = valid.unique("event_id", keep="first", maintain_order=True)
    result = offline_windows(valid, Tumbling(_WINDOW), by="host", aggs=SERVER_METRICS_AGGS, lateness=_LATENESS)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "windows": result, "peak_rss_mb": _peak_rss_mb()}


def _child(kind: str, path: str, max_rows: int, out: str) -> None:
    if kind.startswith("session:"):
        res = streaming_replay(path, max_rows, session=kind.split(":", 1)[1])
    else:
        res = streaming_replay(path, max_rows) if kind == "stream" else offline_replay(path)
    res["windows"].write_parquet(out)
    res["windows"] = out
    Path(out + ".json").write_text(json.dumps(res, default=str))


def _run_child(kind: str, path: str, max_rows: int, tmp: str, tuned: bool) -> dict[str, Any]:
    out = str(Path(tmp) / f"{kind.replace(':', '-')}.parquet")
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_child, args=(kind, path, max_rows, out))
    saved = {k: os.environ.get(k) for k in ALLOCATOR_ENV}
    if tuned:  # read by the allocators when the child process starts
        os.environ.update(ALLOCATOR_ENV)
    try:
        proc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"bench {kind} process failed with exit code {proc.exitcode}")
    res = json.loads(Path(out + ".json").read_text())
    res["windows"] = pl.read_parquet(out)
    return res


def compare(a: pl.DataFrame, b: pl.DataFrame) -> str | None:
    """``None`` when two window results agree (floats within 1e-9 relative), else why not."""
    keys = ["window_start", "host"]
    if a.height != b.height:
        return f"{a.height} windows streaming vs {b.height} offline"
    a, b = a.sort(keys), b.sort(keys).select(a.columns)
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype.is_float():
            both = pl.DataFrame({"x": x, "y": y})
            bad = both.select(
                (
                    (
                        (pl.col("x") - pl.col("y")).abs()
                        > 1e-9 * pl.max_horizontal(pl.col("x").abs(), pl.col("y").abs()) + 1e-12
                    ).fill_null(pl.col("x").is_null() != pl.col("y").is_null())
                ).sum()
            ).item()
            if bad:
                return f"column {col!r} differs in {bad} rows"
        elif not x.equals(y):
            return f"column {col!r} differs"
    return None


def bench_engine(
    *,
    events: int = 2_000_000,
    seed: int = 0,
    max_rows: int = 200_000,
    file: str | None = None,
    offline: bool = True,
    tuned: bool = False,
) -> dict[str, Any]:
    """Run the engine benchmark; returns the figures printed by the CLI.

    ``tuned`` runs both sides with :data:`ALLOCATOR_ENV`.
    """
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        path = file
        gen = None
        if path is None:
            from workbench.sources.simulator import write_simulation

            path = str(Path(tmp) / "events.jsonl")
            t0 = time.perf_counter()
            gen = write_simulation(path, events=events, seed=seed)
            gen["seconds"] = round(time.perf_counter() - t0, 2)
        size = Path(path).stat().st_size
        stream = _run_child("stream", path, max_rows, tmp, tuned)
        report: dict[str, Any] = {
            "file": path if file else f"simulated ({events:,} events, seed {seed})",
            "bytes": size,
            "generated": gen,
            "counts": stream["counts"],
            "stream_seconds": round(stream["seconds"], 3),
            "stream_events_per_s": round(stream["counts"]["ingested"] / stream["seconds"]),
            "stream_peak_rss_mb": round(stream["peak_rss_mb"], 1),
            "windows": stream["windows"].height,
            "max_rows": max_rows,
            "allocator": "tuned" if tuned else "default",
            "decoder": stream["decoder"],
        }
        if offline:
            off = _run_child("offline", path, max_rows, tmp, tuned)
            report["offline_seconds"] = round(off["seconds"], 3)
            report["offline_events_per_s"] = round(stream["counts"]["ingested"] / off["seconds"])
            report["offline_peak_rss_mb"] = round(off["peak_rss_mb"], 1)
            report["ratio"] = round(off["seconds"] / stream["seconds"], 3)
            report["agree"] = compare(stream["windows"], off["windows"]) or "yes"
    return report


def keyed_events(path: str | Path, *, events: int, keys: int, span_s: float, seed: int = 0) -> None:
    """Write ``events`` server_metrics events over ``keys`` hosts, evenly spread over ``span_s`` seconds.

    Events go round-robin over the hosts, so each host reports every ``keys`` events:
    with ``keys`` near ``events`` most hosts have one or two events (many short sessions).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    i = np.arange(events)
    frame = pl.DataFrame(
        {
            "event_id": pl.Series(i).cast(pl.String),
            "ts": 1_704_067_200_000 + (i * (span_s * 1000 / max(events, 1))).astype(np.int64),
            "host": pl.select(pl.lit("h") + pl.Series(i % keys).cast(pl.String).str.pad_start(7, "0")).to_series(),
            "cpu": rng.uniform(0, 100, events).round(2),
            "mem": rng.uniform(0, 100, events).round(2),
            "latency_ms": rng.gamma(2.0, 20.0, events).round(2),
            "status": np.where(rng.random(events) < 0.02, 500, 200),
        }
    )
    frame.write_ndjson(path)


def bench_sessions(
    *, events: int = 2_000_000, keys: int = 1_000_000, gap: str = "1h", span_s: float = 7200.0, max_rows: int = 200_000
) -> dict[str, Any]:
    """Session windows (``gap``) against 10 s tumbling windows on the same file of ``keys`` hosts.

    Each side streams the file in its own child process; ``ratio`` is session seconds
    over tumbling seconds (the issue's bound: at most 3).
    """
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        path = str(Path(tmp) / "keyed.jsonl")
        t0 = time.perf_counter()
        keyed_events(path, events=events, keys=keys, span_s=span_s)
        made = round(time.perf_counter() - t0, 2)
        tumbling = _run_child("stream", path, max_rows, tmp, False)
        sessions = _run_child(f"session:{gap}", path, max_rows, tmp, False)
    return {
        "file": f"{events:,} events over {keys:,} hosts in {span_s:g} s of event time (written in {made} s)",
        "max_rows": max_rows,
        "tumbling_seconds": round(tumbling["seconds"], 3),
        "tumbling_windows": tumbling["windows"].height,
        "session_gap": gap,
        "session_seconds": round(sessions["seconds"], 3),
        "session_windows": sessions["windows"].height,
        "session_peak_rss_mb": round(sessions["peak_rss_mb"], 1),
        "ratio": round(sessions["seconds"] / tumbling["seconds"], 3),
        "counts": sessions["counts"],
    }
