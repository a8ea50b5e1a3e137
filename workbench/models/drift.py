"""Drift detectors over a metric or a score: river's ADWIN, Page-Hinkley and KSWIN.

A :class:`DriftMonitor` follows one series (one feature of one entity). It learns a
reference from the first ``reference`` values (mean and standard deviation), feeds the
standardised values to each of its river detectors, and reports which fired. After a
drift the reference is learned again, so one shift is reported once, not on every
row after it. Standardising makes the detectors' defaults meaningful whatever the
unit of the metric (milliseconds or shares).

Examples
--------
>>> import random
>>> rng = random.Random(0)
>>> mon = DriftMonitor(("adwin",))
>>> before = [mon.update(rng.gauss(0, 1)) for _ in range(400)]
>>> after = [mon.update(rng.gauss(3, 1)) for _ in range(200)]
>>> any(before), any(after)
(False, True)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

from river import base, drift

from workbench.errors import ConfigError

__all__ = ["DRIFT_DETECTORS", "DriftMonitor"]

#: The drift detectors by name, with defaults chosen for standardised input: no
#: detection on 20 stationary seeded series of 1,000 values (see tests/test_drift.py).
DRIFT_DETECTORS: dict[str, Callable[[int], base.DriftDetector]] = {
    "adwin": lambda seed: drift.ADWIN(delta=0.002),
    "page_hinkley": lambda seed: drift.PageHinkley(min_instances=30, delta=0.05, threshold=100.0),
    "kswin": lambda seed: drift.KSWIN(alpha=1e-4, window_size=100, stat_size=30, seed=seed),
}


class DriftMonitor:
    """Drift detectors over one series.

    Parameters
    ----------
    detectors
        Names from :data:`DRIFT_DETECTORS`.
    reference
        Values that make up the reference (mean and standard deviation).
    seed
        Seeds the detectors that draw (KSWIN).
    """

    def __init__(self, detectors: Sequence[str] = ("adwin",), *, reference: int = 30, seed: int = 0) -> None:
        unknown = [d for d in detectors if d not in DRIFT_DETECTORS]
        if unknown:
            raise ConfigError(f"drift monitor: unknown detectors {unknown}; choose from {sorted(DRIFT_DETECTORS)}")
        if reference < 2:
            raise ConfigError(f"drift monitor: reference must be >= 2 values, not {reference}")
        self.names = tuple(detectors)
        self.reference = reference
        self.seed = seed
        self._reset()

    def _reset(self) -> None:
        self._detectors = {name: DRIFT_DETECTORS[name](self.seed) for name in self.names}
        self._n, self._mean, self._m2 = 0, 0.0, 0.0

    def update(self, value: float) -> list[str]:
        """Feed one value; returns the names of the detectors that flagged a drift on it."""
        if value is None or math.isnan(value):
            return []
        if self._n < self.reference:  # Welford: the reference mean and variance
            self._n += 1
            delta = value - self._mean
            self._mean += delta / self._n
            self._m2 += delta * (value - self._mean)
            return []
        std = math.sqrt(self._m2 / (self._n - 1))
        z = (value - self._mean) / max(std, 1e-6 * (1.0 + abs(self._mean)))
        fired = []
        for name, det in self._detectors.items():
            det.update(z)
            if det.drift_detected:
                fired.append(name)
        if fired:
            self._reset()
        return fired

    def snapshot(self) -> dict[str, Any]:
        """State (a deep copy)."""
        return copy.deepcopy({"detectors": self._detectors, "n": self._n, "mean": self._mean, "m2": self._m2})

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        state = copy.deepcopy(state)
        self._detectors, self._n, self._mean, self._m2 = state["detectors"], state["n"], state["mean"], state["m2"]
