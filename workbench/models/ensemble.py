"""Workbench's own detector: the loudest of three robust surprises, reported once per event.

Per feature, three raw surprises, each a robust z (trailing median and MAD) turned
into [0, 1) by :func:`~workbench.models.detectors.calibrate`:

- the one-step residual of river's SNARIMAX (what a forecaster did not expect),
- the value itself (a level never seen in the trailing window),
- the first difference (a jump, even inside the usual range).

The row's score is the largest of them over every feature, damped while it does not
beat the scores of the last ``holdoff`` rows (:class:`~workbench.models.robust.Holdoff`):
one event, one detection.

Examples
--------
>>> from workbench.models.detectors import score_stream
>>> rows = [{"v": 10 + math.sin(i / 8)} for i in range(500)] + [{"v": 16.0}]
>>> scores = score_stream(Ensemble(), rows)
>>> scores[0], scores[-1] == max(scores) > 0.9
(0.0, True)
"""

from __future__ import annotations

import math
from typing import ClassVar

from workbench.models.detectors import Detector, calibrate
from workbench.models.forecast import SnarimaxResidual
from workbench.models.robust import Holdoff, RollingRobust

__all__ = ["Ensemble"]


class Ensemble(Detector):
    """The largest of a SNARIMAX residual, a value and a first-difference robust z-score.

    Parameters
    ----------
    p, d
        SNARIMAX's autoregressive lags and differencing order.
    lr
        SGD learning rate of SNARIMAX's regressor.
    clip
        Residuals beyond this many robust deviations are learned as that far (0: as they are).
    window
        Values (and residuals) remembered for each robust scale.
    warm_up
        Score 0 until this many values were seen.
    holdoff, damp
        Rows a score is remembered, and the factor for rows that do not beat it.
    """

    bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "p": (0, 30),
        "d": (0, 2),
        "lr": (1e-5, 1.0),
        "clip": (0.0, 100.0),
        "window": (20, 100_000),
        "warm_up": (1, 10_000),
        "holdoff": (0, 100_000),
        "damp": (0.0, 1.0),
    }

    def __init__(
        self,
        p: int = 3,
        d: int = 1,
        lr: float = 0.01,
        clip: float = 0.0,
        window: int = 2000,
        warm_up: int = 30,
        holdoff: int = 350,
        damp: float = 0.5,
    ) -> None:
        self.p, self.d, self.lr, self.clip = p, d, lr, clip
        self.window, self.warm_up, self.holdoff, self.damp = window, warm_up, holdoff, damp
        self._forecaster = SnarimaxResidual(p=p, d=d, lr=lr, clip=clip, window=window, warm_up=warm_up, holdoff=0)
        self._values: dict[str, RollingRobust] = {}
        self._diffs: dict[str, RollingRobust] = {}
        self._previous: dict[str, float] = {}
        self._hold = Holdoff(holdoff, damp)
        self._last: tuple[dict[str, float], float] | None = None  # (x, raw score) of the last score_one

    def _raw(self, x: dict[str, float]) -> float:
        best = self._forecaster.score_one(x)
        for name, value in x.items():
            if value is None or math.isnan(value) or name not in self._values:
                continue
            z = self._values[name].z(value)
            diffs = self._diffs.get(name)
            if diffs is not None:
                z = max(z, diffs.z(value - self._previous[name]))
            best = max(best, calibrate(z))
        return best

    def score_one(self, x: dict[str, float]) -> float:  # noqa: D102
        raw = self._raw(x)
        self._last = (dict(x), raw)
        return self._hold.peek(raw)

    def learn_one(self, x: dict[str, float]) -> None:  # noqa: D102
        if self._last is None or self._last[0] != x:
            self._last = (dict(x), self._raw(x))
        self._hold.learn(self._last[1])
        self._last = None
        self._forecaster.learn_one(x)
        for name, value in x.items():
            if value is None or math.isnan(value):
                continue
            self._values.setdefault(name, RollingRobust(self.window, self.warm_up)).learn(value)
            if name in self._previous:
                self._diffs.setdefault(name, RollingRobust(self.window, self.warm_up)).learn(
                    value - self._previous[name]
                )
            self._previous[name] = value
