"""An honest NAB score: every setting chosen on half of the files, the score read on the other half.

The default detector's settings (and each profile's threshold) were chosen on the whole
NAB corpus, so its corpus score is partly a training score. :func:`split_nab` splits
the 58 files by their place in name order — the *odd* half (1st, 3rd, …) and the *even*
half — and for each half:

1. starts from the detector's defaults and walks :data:`GRID` once, setting by setting:
   each value is tried with the others fixed, and the one with the best standard score
   on the training half is kept (a tie keeps the earlier value);
2. chooses each profile's threshold on the training half with those settings;
3. scores the other half with those settings and those thresholds, fixed — no threshold
   is chosen on the half that is scored.

It reports, beside them, the full-corpus score of the defaults (threshold chosen on all
files, as ``workbench nab`` does). Scores of a (settings, file) pair are computed once.

Examples
--------
>>> fixed_score([{"scores": [0.0, 0.9, 0.0, 0.0], "windows": [(1, 2)], "probation": 0}], 0.5, PROFILES["standard"])
100.0
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import ConfigError
from workbench.evaluate.corpus import LabelledSeries, load_nab
from workbench.evaluate.nab import PROFILES, Profile, corpus_score, score_file
from workbench.models.catalog import DETECTORS
from workbench.models.detectors import score_stream

__all__ = ["GRID", "fixed_score", "split_nab"]

#: the settings walked on a training half, each with the values tried (the default among them)
GRID: dict[str, tuple[float, ...]] = {
    "rest": (5, 10, 15),
    "spatial": (0.0, 0.01, 0.05),
    "flat": (0, 50, 100, 200),
    "level": (0.0, 0.03, 0.05, 0.1),
    "seasonal": (0.0, 0.05, 0.1, 0.2),
}


def fixed_score(files: Sequence[dict[str, Any]], threshold: float, profile: Profile) -> float:
    """Normalised NAB score of ``files`` at a given ``threshold`` (null detector 0, perfect 100)."""
    total = 0.0
    for f in files:
        scores = np.asarray(f["scores"], dtype=float)
        total += score_file(scores, f["windows"], threshold=threshold, profile=profile, probation=f["probation"]).raw
    windows = sum(len(f["windows"]) for f in files)
    null, perfect = -profile.fn * windows, profile.tp * windows
    return round(100.0 * (total - null) / (perfect - null), 4) if perfect != null else 0.0


def split_nab(
    data: str | Path,
    *,
    detector: str = "context",
    grid: dict[str, tuple[float, ...]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Settings and thresholds chosen on each half of NAB, scored on the other (see the module)."""
    if detector not in DETECTORS:
        raise ConfigError(f"nab --split: unknown detector {detector!r}; choose one of {sorted(DETECTORS)}")
    grid = GRID if grid is None else grid
    factory = DETECTORS[detector]
    files = load_nab(data)
    if len(files) < 2:
        raise ConfigError(f"nab --split: {data} holds {len(files)} NAB file(s); a split needs two or more")
    halves = {"odd": files[0::2], "even": files[1::2]}
    cache: dict[tuple[tuple[tuple[str, float], ...], str], np.ndarray] = {}
    t0, tell = time.perf_counter(), progress or (lambda _: None)

    def scored(params: dict[str, float], subset: list[LabelledSeries]) -> list[dict[str, Any]]:
        key = tuple(sorted(params.items()))
        out = []
        for f in subset:
            if (key, f.name) not in cache:
                det = factory(**params)
                cache[key, f.name] = np.asarray(score_stream(det, ({"value": float(v)} for v in f.values)))
            out.append({"scores": cache[key, f.name], "windows": f.windows, "probation": f.probation})
        return out

    report: dict[str, Any] = {"detector": detector, "files": {k: len(v) for k, v in halves.items()}, "halves": {}}
    standard = PROFILES["standard"]
    signature = inspect.signature(factory).parameters
    unknown = sorted(set(grid) - set(signature))
    if unknown:
        raise ConfigError(f"nab --split: {detector} has no setting {unknown[0]!r}; it has {sorted(signature)}")
    defaults = {name: signature[name].default for name in grid}
    for train, test in (("odd", "even"), ("even", "odd")):
        params = dict(defaults)
        best = corpus_score(scored(params, halves[train]), standard)["score"]
        for name, values in grid.items():
            for value in values:
                if value == params[name]:
                    continue
                trial = {**params, name: value}
                score = corpus_score(scored(trial, halves[train]), standard)["score"]
                tell(f"{train}: {name}={value} → {score:.2f}")
                if score > best:
                    best, params = score, trial
        chosen = scored(params, halves[train])
        held_out = scored(params, halves[test])
        thresholds = {n: corpus_score(chosen, p)["threshold"] for n, p in PROFILES.items()}
        report["halves"][f"{train}→{test}"] = {
            "settings": {k: v for k, v in params.items() if v != defaults[k]} or "the defaults",
            "thresholds": thresholds,
            "train": {n: corpus_score(chosen, p)["score"] for n, p in PROFILES.items()},
            "test": {n: fixed_score(held_out, thresholds[n], p) for n, p in PROFILES.items()},
        }
    every = scored(defaults, files)
    report["full_corpus_defaults"] = {n: corpus_score(every, p)["score"] for n, p in PROFILES.items()}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report
