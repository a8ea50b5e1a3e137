"""Adaptive thresholds: a running quantile of recent scores, with a floor.

A detector's raw score says how unusual a row is; an :class:`AdaptiveThreshold` turns
scores into decisions. Its threshold is the ``q`` quantile of the last ``window``
scores (river's ``stats.RollingQuantile``: bounded memory, plain state), never below
``floor``, so a quiet stream whose scores are all noise does not alert. A score is an
anomaly when it is at or above the threshold computed *before* it is added. Only
scores that were *not* anomalies are remembered: one incident's high scores would
otherwise lift the threshold for the next ``window`` rows and hide the next incident.

Examples
--------
>>> t = AdaptiveThreshold(q=0.9, window=50, floor=0.3)
>>> decisions = [t.decide(0.05 + 0.01 * (i % 5)) for i in range(100)]
>>> any(d for _, d in decisions), t.threshold
(False, 0.3)
>>> t.decide(0.8)
(0.3, True)
"""

from __future__ import annotations

import copy
from typing import Any

from river import stats

from workbench.errors import ConfigError

__all__ = ["AdaptiveThreshold"]


class AdaptiveThreshold:
    """The ``q`` quantile of the last ``window`` scores, at least ``floor``.

    Parameters
    ----------
    q
        Quantile of recent scores, in (0, 1): 0.99 alerts on about 1% of rows at most
        once the floor is passed.
    window
        Scores remembered (per entity, in a score node).
    floor
        Lowest threshold; a score under it is never an anomaly.
    min_count
        Until this many scores were seen the threshold is the floor alone.
    """

    def __init__(self, q: float = 0.99, window: int = 500, floor: float = 0.5, min_count: int = 20) -> None:
        if not 0.0 < q < 1.0:
            raise ConfigError(f"adaptive threshold: q must be within (0, 1), not {q}")
        if window < 2:
            raise ConfigError(f"adaptive threshold: window must be >= 2, not {window}")
        if not 0.0 <= floor <= 1.0:
            raise ConfigError(f"adaptive threshold: floor must be within [0, 1], not {floor}")
        self.q, self.window, self.floor, self.min_count = q, window, floor, min_count
        self._quantile = stats.RollingQuantile(q, window)
        self.count = 0

    @property
    def threshold(self) -> float:
        """The current threshold."""
        if self.count < self.min_count:
            return self.floor
        value = self._quantile.get()
        return self.floor if value is None else max(self.floor, float(value))

    def update(self, score: float) -> None:
        """Remember ``score``."""
        self._quantile.update(score)
        self.count += 1

    def decide(self, score: float) -> tuple[float, bool]:
        """``(threshold, score >= threshold)`` with the threshold before ``score``; remember it if normal."""
        threshold = self.threshold
        anomaly = score >= threshold
        if not anomaly:
            self.update(score)
        return threshold, anomaly

    def clone(self) -> AdaptiveThreshold:
        """A fresh threshold with the same settings."""
        return AdaptiveThreshold(self.q, self.window, self.floor, self.min_count)

    def snapshot(self) -> dict[str, Any]:
        """State (a deep copy)."""
        return copy.deepcopy({"quantile": self._quantile, "count": self.count})

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        state = copy.deepcopy(state)
        self._quantile, self.count = state["quantile"], state["count"]

    def __repr__(self) -> str:
        return f"AdaptiveThreshold(q={self.q}, window={self.window}, floor={self.floor}, min_count={self.min_count})"
