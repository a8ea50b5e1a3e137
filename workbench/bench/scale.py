"""``workbench bench scale``: events/s in one process and on 1, 2 … Dask workers, in one run.

Every configuration runs the same checkpointed pipeline (file → decode → validate →
dedupe → 10 s windows, a checkpoint every ``checkpoint_batches`` batches; with
``detector``, a score node per host below the windows, which a cluster runs on its
shard hosts) on the same simulated file, each in its own child process (so each peak RSS is its own; a cluster
configuration starts its own ``LocalCluster`` there, whose start-up is not timed).
Reported per configuration: seconds, events/s and the ratio to the in-process run,
peak RSS of the coordinator and of every worker process, and the cluster's costs:
epochs, seconds the coordinator waited for its shard hosts, and the round trip of an
empty epoch (every host called, nothing to do).

The model of larger clusters (``model``) is built from those measured figures::

    T(W) = C + E · (a + b·W) + S / W

``C``: the coordinator's own work (read, decode, validate, partition, merge, sinks and
checkpoint files: the run's seconds less its waits for the hosts); ``E``: epochs;
``a + b·W``: the round trip of an empty epoch (fitted on the runs' worker counts);
``S``: the shards' work with one worker (that run's waits less its epoch overheads),
assumed to divide evenly over W workers (key groups are many and even). Throughput
``events / T(W)``, bounded by ``events / C``: the coordinator is one process.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["bench_scale", "model"]

_WINDOW = "10s"
_LATENESS = "5s"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(
    path: str, workers: int, max_rows: int, every: int, folder: str, pings: int, detector: str | None = None
) -> dict[str, Any]:
    """One configuration (0 workers: in-process); runs in a child process."""
    from workbench.operators.windows import Tumbling
    from workbench.pipeline import Pipeline
    from workbench.sources.files import FileSource
    from workbench.storage.checkpoints import CheckpointStore

    cluster = None
    started = time.perf_counter()
    if workers:
        from workbench.cluster import Cluster

        cluster = Cluster(f"local:{workers}")
    startup = time.perf_counter() - started
    try:
        pipe = Pipeline(
            FileSource(path, max_rows=max_rows),
            name=f"bench-scale-{workers}",
            checkpoints=CheckpointStore(folder),
            checkpoint_every="1h",
            checkpoint_batches=every,
            cluster=cluster,
        )
        windows = pipe.standard("server_metrics", Tumbling(_WINDOW), lateness=_LATENESS)
        digest: dict[str, Any] = {"windows": 0, "count": 0}

        def tally(frame: Any) -> None:
            digest["windows"] += frame.height
            digest["count"] += int(frame["count"].sum())

        pipe.subscribe("windows", tally)
        if detector:
            pipe.output("scores", windows.score(detector, features=["cpu_mean", "count"], by="host"))
            digest.update(scored=0, anomalies=0, score_sum=0.0)

            def tally_scores(frame: Any) -> None:
                digest["scored"] += frame.height
                digest["anomalies"] += int(frame["is_anomaly"].sum())
                digest["score_sum"] += float(frame["anomaly_score"].sum())

            pipe.subscribe("scores", tally_scores)
        t0 = time.perf_counter()
        pipe.run()
        seconds = time.perf_counter() - t0
        pipe.check_invariant()
        out: dict[str, Any] = {
            "workers": workers,
            "seconds": seconds,
            "counts": pipe.counts(),
            "digest": digest,
            "batches": pipe.batches,
            "coordinator_peak_rss_mb": _peak_rss_mb(),
        }
        if detector:  # summed in the order the rows came, so equal sums mean equal scores (up to order)
            digest["score_sum"] = round(digest["score_sum"], 6)
            out["scores_on_hosts"] = bool(cluster is not None and pipe.outputs["scores"].sharded)
        if cluster is not None:
            stage = pipe.outputs["windows"]
            t1 = time.perf_counter()
            for _ in range(pings):
                stage.ping()
            out.update(
                startup_s=startup,
                epochs=stage.epochs,
                snapshots=stage.snapshots,
                wait_s=stage.dispatch_s,
                empty_epoch_s=(time.perf_counter() - t1) / pings,
                worker_peak_rss_mb=sorted(
                    cluster.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024).values()
                ),
                recoveries=pipe.recoveries,
            )
        pipe.close()
        return out
    finally:
        if cluster is not None:
            cluster.close()


def _child(args: tuple[Any, ...], out: str) -> None:
    Path(out).write_text(json.dumps(_run(*args), default=str))


def _in_child(*args: Any, out: str) -> dict[str, Any]:
    proc = mp.get_context("spawn").Process(target=_child, args=(args, out))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"bench scale: the run with {args[1]} workers failed (exit code {proc.exitcode})")
    result: dict[str, Any] = json.loads(Path(out).read_text())
    return result


def model(runs: list[dict[str, Any]], events: int, at: list[int]) -> dict[str, Any]:
    """Throughput at ``at`` workers from the measured cluster runs (see the module's formula).

    Examples
    --------
    >>> runs = [{"workers": 1, "seconds": 10.0, "wait_s": 6.0, "epochs": 100, "empty_epoch_s": 0.01},
    ...         {"workers": 2, "seconds": 8.0, "wait_s": 4.0, "epochs": 100, "empty_epoch_s": 0.012}]
    >>> m = model(runs, 1_000_000, [8])
    >>> m["coordinator_s"], m["shard_work_s"], m["events_per_s"]["8"]
    (4.0, 5.0, 142349)
    """
    cl = sorted((r for r in runs if r["workers"]), key=lambda r: r["workers"])
    one = cl[0]
    coordinator = sum(r["seconds"] - r["wait_s"] for r in cl) / len(cl)
    if len(cl) > 1 and cl[-1]["workers"] != one["workers"]:
        b = (cl[-1]["empty_epoch_s"] - one["empty_epoch_s"]) / (cl[-1]["workers"] - one["workers"])
    else:
        b = 0.0
    b = max(b, 0.0)
    a = max(one["empty_epoch_s"] - b * one["workers"], 0.0)
    epochs = one["epochs"]
    shard = max(one["wait_s"] - epochs * (a + b * one["workers"]), 0.0) * one["workers"]
    rates = {}
    for w in at:
        total = coordinator + epochs * (a + b * w) + shard / w
        rates[str(w)] = round(events / total)
    return {
        "formula": "T(W) = C + E*(a + b*W) + S/W",
        "coordinator_s": round(coordinator, 3),
        "epochs": epochs,
        "epoch_overhead_a_s": round(a, 5),
        "epoch_overhead_b_s_per_worker": round(b, 6),
        "shard_work_s": round(shard, 3),
        "ceiling_events_per_s": round(events / coordinator) if coordinator else None,
        "events_per_s": rates,
    }


def bench_scale(
    *,
    events: int = 2_000_000,
    seed: int = 0,
    max_rows: int = 100_000,
    workers: list[int] | None = None,
    checkpoint_batches: int = 5,
    pings: int = 30,
    file: str | None = None,
    model_at: list[int] | None = None,
    detector: str | None = None,
) -> dict[str, Any]:
    """Run the scale benchmark; returns the figures the CLI prints."""
    workers = workers or [1, 2]
    if detector:  # a wrong name is the user's one-line error here, not a failed child process
        from workbench.models.tuning import detector_class

        detector_class(detector)
    with tempfile.TemporaryDirectory(prefix="wb-bench-scale-") as tmp:
        path = file
        if path is None:
            from workbench.sources.simulator import write_simulation

            path = str(Path(tmp) / "events.jsonl")
            write_simulation(path, events=events, seed=seed)
        runs = []
        for n in [0, *workers]:
            res = _in_child(
                path,
                n,
                max_rows,
                checkpoint_batches,
                str(Path(tmp) / f"ck{n}"),
                pings,
                detector,
                out=f"{tmp}/{n}.json",
            )
            runs.append(res)
    base = runs[0]
    ingested = base["counts"]["ingested"]
    table = []
    for r in runs:
        row = {
            "workers": r["workers"] or "in-process",
            "seconds": round(r["seconds"], 3),
            "events_per_s": round(ingested / r["seconds"]),
            "ratio_to_in_process": round(base["seconds"] / r["seconds"], 3),
            "coordinator_peak_rss_mb": round(r["coordinator_peak_rss_mb"], 1),
            "same_output": r["digest"] == base["digest"] and r["counts"] == base["counts"],
        }
        if detector:
            row["scores_on_hosts"] = r["scores_on_hosts"]
        if r["workers"]:
            row.update(
                worker_peak_rss_mb=[round(x, 1) for x in r["worker_peak_rss_mb"]],
                cluster_startup_s=round(r["startup_s"], 2),
                epochs=r["epochs"],
                snapshots=r["snapshots"],
                wait_for_hosts_s=round(r["wait_s"], 3),
                empty_epoch_ms=round(r["empty_epoch_s"] * 1000, 2),
            )
        table.append(row)
    return {
        "file": path if file else f"simulated ({events:,} events, seed {seed})",
        "events": ingested,
        "max_rows": max_rows,
        "checkpoint_batches": checkpoint_batches,
        "windows": base["digest"]["windows"],
        "detector": detector,
        "runs": table,
        "model": model(runs, ingested, model_at or [8, 32]),
    }
