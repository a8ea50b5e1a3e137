"""Run a detector over the NAB corpus: scores per file (NAB's results layout) and the three scores.

Examples
--------
>>> DETECTORS["robust_z"]()
RobustZScore(window=2000, warm_up=30, refresh=10, holdoff=350, damp=0.5)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import ConfigError
from workbench.evaluate.corpus import load_nab
from workbench.evaluate.nab import PROFILES, corpus_score
from workbench.models.catalog import DEFAULT_DETECTOR, DETECTORS
from workbench.models.detectors import score_stream

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "run_nab"]


def _score_file(detector: str, values: np.ndarray) -> tuple[np.ndarray, float]:
    """One file scored online by a fresh detector; its scores and the CPU seconds it took."""
    t0 = time.process_time()
    scores = np.array(score_stream(DETECTORS[detector](), ({"value": float(v)} for v in values)))
    return scores, time.process_time() - t0


def run_nab(
    data: str | Path,
    *,
    detector: str = DEFAULT_DETECTOR,
    out: str | Path | None = None,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score every NAB file online with a fresh ``detector``; write ``out/<category>/<detector>_<file>.csv``.

    ``jobs`` processes score files side by side (each file is one detector's stream, so
    the result is the same for any ``jobs``); ``us_per_row`` is CPU time per row.
    ``progress`` is called with the files scored so far and the files in all.
    """
    if detector not in DETECTORS:
        raise ConfigError(f"nab: unknown detector {detector!r}; choose one of {sorted(DETECTORS)}")
    if jobs < 1:
        raise ConfigError(f"nab: jobs must be >= 1, not {jobs}")
    files = load_nab(data)
    t0 = time.perf_counter()
    tick = progress or (lambda done, total: None)
    results = []
    if jobs == 1:
        for f in files:
            results.append(_score_file(detector, f.values))
            tick(len(results), len(files))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a forked child would inherit polars' thread pool mid-state
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            longest_first = sorted(range(len(files)), key=lambda i: -len(files[i].values))
            futures = {i: pool.submit(_score_file, detector, files[i].values) for i in longest_first}
            for i in range(len(files)):
                results.append(futures[i].result())
                tick(len(results), len(files))
    items, rows, cpu = [], 0, 0.0
    for f, (scores, seconds) in zip(files, results, strict=True):
        rows += len(scores)
        cpu += seconds
        items.append({"scores": scores, "windows": f.windows, "probation": f.probation})
        if out is not None:
            folder = Path(out) / f.category
            folder.mkdir(parents=True, exist_ok=True)
            pl.DataFrame({"timestamp": f.timestamps, "value": f.values, "anomaly_score": scores}).write_csv(
                folder / f"{detector}_{Path(f.name).name}"
            )
    results_by_profile = {name: corpus_score(items, profile) for name, profile in PROFILES.items()}
    return {
        "detector": detector,
        "files": len(files),
        "rows": rows,
        "jobs": jobs,
        "seconds": round(time.perf_counter() - t0, 1),
        "us_per_row": round(cpu / max(rows, 1) * 1e6, 2),
        "scores": {name: r["score"] for name, r in results_by_profile.items()},
        "thresholds": {name: r["threshold"] for name, r in results_by_profile.items()},
    }
