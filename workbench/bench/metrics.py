"""``workbench bench metrics``: what a Prometheus scrape of a pipeline costs, against ``Pipeline.metrics()``.

A pipeline with ``nodes`` Workbench nodes (the standard four — decode, validate,
dedupe, window — then pass-through nodes) runs a few batches of simulated events;
its validate node then holds ``reasons`` dead-letter reason codes (counts injected:
the real codes are a fixed set of about fifteen, so larger values are a stress case).
The scrape (:func:`workbench.pipeline.metrics.render` of the collector's registry:
everything read and formatted) and the baseline (:meth:`Pipeline.metrics`, the polars
frame the views read) are timed interleaved in the same run, ``repeat`` times each;
medians are reported, with the part of the scrape spent reading the pipeline
(``collect_ms``; the rest is formatting text). The run-loop hook that feeds the latency histogram is timed
per call too (it runs once per batch).

Examples
--------
>>> report = bench_metrics(nodes=(4,), reasons=(1,), repeat=3)
>>> sorted(report["cases"][0])
['bytes', 'collect_ms', 'hook_us', 'metrics_ms', 'nodes', 'ratio', 'reasons', 'scrape_ms', 'series']
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["bench_metrics"]


def _case(nodes: int, reasons: int, repeat: int) -> dict[str, Any]:
    import workbench as wb
    from workbench.operators.base import Operator
    from workbench.pipeline.metrics import collector, registry, render
    from workbench.sources.simulator import Simulator

    if nodes < 4:
        raise wb.ConfigError(f"bench metrics: nodes must be >= 4 (the standard pipeline), not {nodes}")
    source = Simulator(hosts=20, rate=5000, seed=0, limit=20_000, max_rows=5000)
    pipe = wb.Pipeline(source, name=f"bench-metrics-{nodes}-{reasons}")
    node: Any = pipe.standard("server_metrics", wb.Tumbling("10s"))
    for i in range(nodes - 4):
        node = Operator(node, name=f"pass{i}")
    pipe.output("last", node)
    c = collector(pipe)
    reg = registry(c)
    pipe.run()  # the faults of the simulator give real dead letters too
    validate = pipe.operators()[1]
    validate.metrics.reasons = {f"reason_{j:03d}": j + 1 for j in range(reasons)}

    scrape, read, frame = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        body = render(reg)
        scrape.append(time.perf_counter() - t)
        t = time.perf_counter()
        list(reg.collect())
        read.append(time.perf_counter() - t)
        t = time.perf_counter()
        pipe.metrics()
        frame.append(time.perf_counter() - t)
    passes = []
    for _ in range(7):  # median of 7 passes of 200 calls (the machine is shared)
        t = time.perf_counter()
        for _ in range(200):  # as in a run: every node took the batch, so every node is observed
            c._seen.clear()
            c._observe(0.001)
        passes.append((time.perf_counter() - t) / 200)
    hook = statistics.median(passes)
    pipe.close()
    s, m = statistics.median(scrape), statistics.median(frame)
    return {
        "nodes": len(pipe.operators()),
        "reasons": reasons,
        "series": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
        "bytes": len(body),
        "scrape_ms": round(s * 1000, 3),
        "collect_ms": round(statistics.median(read) * 1000, 3),
        "metrics_ms": round(m * 1000, 3),
        "ratio": round(s / m, 2),
        "hook_us": round(hook * 1e6, 2),
    }


def bench_metrics(
    *, nodes: Sequence[int] = (4, 20, 100), reasons: Sequence[int] = (0, 15, 100), repeat: int = 50
) -> dict[str, Any]:
    """Scrape time against ``Pipeline.metrics()`` for every ``nodes`` × ``reasons``; medians of ``repeat``."""
    return {"repeat": repeat, "cases": [_case(n, r, repeat) for n in nodes for r in reasons]}
