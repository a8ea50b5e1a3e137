"""The Numenta Anomaly Benchmark scoring method, from its published description.

Lavin & Ahmad, "Evaluating Real-time Anomaly Detection Algorithms — the Numenta
Anomaly Benchmark" (2015), and the NAB repository's scoring rules:

- Each labelled anomaly sits in an *anomaly window*. A detection inside a window is a
  true positive; only the earliest detection of a window counts, weighted by a scaled
  sigmoid of its position: ``2·σ(−5·p) − 1`` with ``p`` from −1 (the window's first
  row) to 0 (its last), divided by its value at −1 (as NAB's sweeper does), so a
  detection on a window's first row scores 1 and one at the end ≈ 0.
- A detection outside every window is a false positive: ``−1`` before the first window,
  otherwise the same sigmoid of its distance after the preceding window,
  ``p = (i − end) / (width − 1)`` (−1 from three window widths on).
- A window with no detection costs ``−fn_weight``.
- The first 15 % of each file (at most 750 rows) is probationary: not scored.
- Profiles weight the parts: standard (TP 1, FP 0.11, FN 1), reward_low_FP (FP 0.22)
  and reward_low_FN (FN 2).
- One threshold for the whole corpus, chosen per profile to maximise the total; the
  total is normalised so the null detector (never fires) scores 0 and the perfect
  detector (fires on each window's first row) scores 100.

The scorer reproduces NAB's published numbers: an implementation of CAD-OSE's
algorithm given the file's range as NAB does scores 69.98 / 67.09 / 73.16 here against
the published 69.9 / 67.0 / 73.2 (docs/BENCHMARKS.md).

Examples
--------
>>> import numpy as np
>>> windows = [(40, 49)]  # rows 40..49 of a 100-row file
>>> perfect = np.zeros(100); perfect[40] = 1.0
>>> score_file(perfect, windows, threshold=0.5, profile=PROFILES["standard"]).raw
1.0
>>> score_file(np.zeros(100), windows, threshold=0.5, profile=PROFILES["standard"]).raw
-1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PROFILES", "FileScore", "Profile", "corpus_score", "probation_rows", "scaled_sigmoid", "score_file"]


@dataclass(frozen=True)
class Profile:
    """Weights of one NAB application profile."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES = {
    "standard": Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
}


def scaled_sigmoid(position: float | np.ndarray) -> Any:
    """``2·σ(−5·p) − 1``, and −1 for ``p > 3`` (far after a window).

    >>> round(scaled_sigmoid(-1.0), 4), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.9866, 0.0, -1.0)
    """
    p = np.asarray(position, dtype=float)
    value = 2.0 / (1.0 + np.exp(5.0 * p)) - 1.0
    out = np.where(p > 3.0, -1.0, value)
    return float(out) if out.ndim == 0 else out


def probation_rows(n: int, share: float = 0.15) -> int:
    """Rows at the start of a file that are not scored: ``min(floor(0.15·n), 0.15·5000)``."""
    return int(min(math.floor(share * n), share * 5000))


#: a detection on a window's first row, the most a true positive can score before NAB rescales it to 1
MAX_TP = 2.0 / (1.0 + math.exp(-5.0)) - 1.0


def _row_weights(n: int, windows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the window it lies in (or −1), and its unweighted score if detected.

    A true positive's sigmoid is divided by ``MAX_TP``.
    """
    window_of = np.full(n, -1, dtype=np.int64)
    unweighted = np.full(n, -1.0)  # before any window
    idx = np.arange(n)
    for k, (a, b) in enumerate(windows):
        width = b - a + 1
        window_of[a : b + 1] = k
        unweighted[a : b + 1] = scaled_sigmoid(-(b - idx[a : b + 1] + 1) / width) / MAX_TP
        nxt = windows[k + 1][0] if k + 1 < len(windows) else n
        after = idx[b + 1 : nxt]
        if len(after):
            unweighted[b + 1 : nxt] = scaled_sigmoid(np.abs(after - b) / max(width - 1, 1))
    return window_of, unweighted


@dataclass(frozen=True)
class FileScore:
    """One file's NAB score at one threshold."""

    raw: float
    tp: int
    fp: int
    fn: int


def score_file(
    scores: np.ndarray, windows: list[tuple[int, int]], *, threshold: float, profile: Profile, probation: int = 0
) -> FileScore:
    """Score one file's anomaly scores against its windows (row indices, inclusive)."""
    scores = np.asarray(scores, dtype=float)
    window_of, unweighted = _row_weights(len(scores), windows)
    detected = (scores >= threshold) & (np.arange(len(scores)) >= probation)
    raw, tp, fp = 0.0, 0, 0
    hit: set[int] = set()
    for i in np.flatnonzero(detected):
        w = int(window_of[i])
        if w >= 0:
            if w not in hit:
                hit.add(w)
                raw += profile.tp * unweighted[i]
                tp += 1
        else:
            raw += profile.fp * unweighted[i]
            fp += 1
    fn = len(windows) - len(hit)
    raw -= profile.fn * fn
    return FileScore(raw=float(raw), tp=tp, fp=fp, fn=fn)


def _sweep(files: list[dict[str, Any]], profile: Profile) -> tuple[float, float]:
    """The threshold maximising the corpus total, and that total (one pass over sorted scores)."""
    entries = []  # (score, file, row, window, unweighted)
    base = 0.0  # every window missed
    for f, item in enumerate(files):
        window_of, unweighted = _row_weights(len(item["scores"]), item["windows"])
        rows = np.arange(item["probation"], len(item["scores"]))
        entries.append(
            np.column_stack([item["scores"][rows], np.full(len(rows), f), rows, window_of[rows], unweighted[rows]])
        )
        base -= profile.fn * len(item["windows"])
    table = np.concatenate(entries) if entries else np.empty((0, 5))
    table = table[np.argsort(-table[:, 0], kind="stable")]
    best_total, best_threshold = base, float("inf")
    total = base
    first: dict[tuple[int, int], tuple[int, float]] = {}  # window → (earliest row detected, its tp value)
    i, n = 0, len(table)
    while i < n:
        value = table[i, 0]
        j = i
        while j < n and table[j, 0] == value:
            _, f, row, w, u = table[j]
            if w < 0:
                total += profile.fp * u
            else:
                key = (int(f), int(w))
                old = first.get(key)
                if old is None:
                    total += profile.fn + profile.tp * u
                    first[key] = (int(row), u)
                elif row < old[0]:
                    total += profile.tp * (u - old[1])
                    first[key] = (int(row), u)
            j += 1
        if total > best_total:
            best_total, best_threshold = total, float(value)
        i = j
    return best_threshold, best_total


def corpus_score(files: list[dict[str, Any]], profile: Profile) -> dict[str, float]:
    """Normalised NAB score of a corpus: ``files`` hold ``scores``, ``windows`` (row ranges) and ``probation``.

    Returns the best threshold, the raw total and the score normalised between the
    null (0) and the perfect (100) detectors.

    >>> import numpy as np
    >>> f = {"scores": np.r_[np.zeros(40), 1.0, np.zeros(59)], "windows": [(40, 49)], "probation": 15}
    >>> corpus_score([f], PROFILES["standard"])["score"]
    100.0
    """
    threshold, total = _sweep(files, profile)
    null = -profile.fn * sum(len(f["windows"]) for f in files)
    perfect = sum(profile.tp * len(f["windows"]) for f in files)
    score = 100.0 * (total - null) / (perfect - null) if perfect != null else 0.0
    return {"threshold": float(threshold), "raw": float(total), "score": round(float(score), 4)}
