"""Run a detector over the NAB corpus: scores per file (NAB's results layout) and the three scores.

Examples
--------
>>> DETECTORS["robust_z"]()
RobustZScore(window=2000, warm_up=30, refresh=10, holdoff=350, damp=0.5)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import ConfigError
from workbench.evaluate.corpus import load_nab
from workbench.evaluate.nab import PROFILES, corpus_score
from workbench.models.detect import DEFAULT_DETECTOR, DETECTORS
from workbench.models.detectors import score_stream

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "run_nab"]


def run_nab(data: str | Path, *, detector: str = DEFAULT_DETECTOR, out: str | Path | None = None) -> dict[str, Any]:
    """Score every NAB file online with a fresh ``detector``; write ``out/<category>/<detector>_<file>.csv``."""
    if detector not in DETECTORS:
        raise ConfigError(f"nab: unknown detector {detector!r}; choose one of {sorted(DETECTORS)}")
    files = load_nab(data)
    items, rows, t0 = [], 0, time.perf_counter()
    for f in files:
        scores = np.array(score_stream(DETECTORS[detector](), ({"value": float(v)} for v in f.values)))
        rows += len(scores)
        items.append({"scores": scores, "windows": f.windows, "probation": f.probation})
        if out is not None:
            folder = Path(out) / f.category
            folder.mkdir(parents=True, exist_ok=True)
            pl.DataFrame({"timestamp": f.timestamps, "value": f.values, "anomaly_score": scores}).write_csv(
                folder / f"{detector}_{Path(f.name).name}"
            )
    seconds = time.perf_counter() - t0
    results = {name: corpus_score(items, profile) for name, profile in PROFILES.items()}
    return {
        "detector": detector,
        "files": len(files),
        "rows": rows,
        "us_per_row": round(seconds / max(rows, 1) * 1e6, 2),
        "scores": {name: r["score"] for name, r in results.items()},
        "thresholds": {name: r["threshold"] for name, r in results.items()},
    }
