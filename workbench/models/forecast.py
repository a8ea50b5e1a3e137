"""Forecast-residual detectors: how far a value lands from river's one-step forecast.

Per feature, a river forecaster predicts the next value; the residual ``value −
forecast`` is scored as a robust z against the trailing residuals
(:class:`~workbench.models.robust.RollingRobust`), calibrated into [0, 1) and damped
while it does not beat the recent scores (:class:`~workbench.models.robust.Holdoff`).
A row scores 0 while its forecaster cannot forecast yet (HoltWinters needs a whole
season first).

Examples
--------
>>> from workbench.models.detectors import score_stream
>>> rows = [{"v": float(i % 10)} for i in range(300)] + [{"v": 30.0}]
>>> scores = score_stream(HoltWintersResidual(seasonality=10), rows)
>>> scores[0], scores[-1] > 0.9, max(scores[100:-1]) < 0.5
(0.0, True, True)
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

from river import compose, linear_model, optim, preprocessing, time_series

from workbench.models.detectors import Detector, calibrate
from workbench.models.robust import Holdoff, RollingRobust

__all__ = ["ForecastResidual", "HoltWintersResidual", "SnarimaxResidual"]

_SCORING: dict[str, tuple[float, float]] = {
    "window": (20, 100_000),
    "warm_up": (1, 10_000),
    "holdoff": (0, 100_000),
    "damp": (0.0, 1.0),
    "clip": (0.0, 100.0),
}


class ForecastResidual(Detector):
    """Base class: one forecaster per feature; subclasses say how to build, feed and ask it."""

    window: int
    warm_up: int

    def _setup(self, window: int, warm_up: int, holdoff: int, damp: float, clip: float) -> None:
        self.window, self.warm_up, self.holdoff, self.damp, self.clip = window, warm_up, holdoff, damp, clip
        self._models: dict[str, Any] = {}
        self._seen: dict[str, int] = {}  # values each forecaster learned
        self._residuals: dict[str, RollingRobust] = {}
        self._hold = Holdoff(holdoff, damp)
        # (x, raw score, forecasts) of the last score_one, so learn_one does not forecast twice
        self._last: tuple[dict[str, float], float, dict[str, float]] | None = None

    @abc.abstractmethod
    def _make(self) -> Any:
        """A fresh forecaster for one feature."""

    @abc.abstractmethod
    def _forecast(self, model: Any) -> float | None:
        """The model's next value, or ``None`` while it cannot forecast."""

    @abc.abstractmethod
    def _learn(self, model: Any, value: float) -> None:
        """Feed ``value`` to the model."""

    def _assess(self, x: dict[str, float]) -> tuple[float, dict[str, float]]:
        """The raw score of ``x`` and the forecasts it was scored against."""
        best, forecasts = 0.0, {}
        for name, value in x.items():
            model = self._models.get(name)
            if model is None or value is None or math.isnan(value) or self._seen[name] < self.warm_up:
                continue  # a forecaster that learned a handful of values is wild: its residuals would set the scale
            forecast = self._forecast(model)
            if forecast is None or not math.isfinite(forecast):
                continue
            forecasts[name] = forecast
            best = max(best, self._residuals[name].z(value - forecast))
        return calibrate(best), forecasts

    def score_one(self, x: dict[str, float]) -> float:  # noqa: D102
        raw, forecasts = self._assess(x)
        self._last = (dict(x), raw, forecasts)
        return self._hold.peek(raw)

    def learn_one(self, x: dict[str, float]) -> None:  # noqa: D102
        raw, forecasts = self._last[1:] if self._last is not None and self._last[0] == x else self._assess(x)
        self._last = None
        self._hold.learn(raw)
        for name, value in x.items():
            if value is None or math.isnan(value):
                continue
            model = self._models.get(name)
            if model is None:
                model = self._models[name] = self._make()
                self._residuals[name] = RollingRobust(self.window, self.warm_up)
            fed = value
            if name in forecasts:
                residuals = self._residuals[name]
                residual = value - forecasts[name]
                if self.clip and len(residuals) >= self.warm_up:
                    # an outlier is learned as a bounded surprise, so it does not echo in the next forecasts
                    z = residuals.signed(value - forecasts[name])
                    if abs(z) > self.clip:
                        fed = forecasts[name] + math.copysign(self.clip, z) * residuals.scale
                residuals.learn(residual)
            self._learn(model, fed)
            self._seen[name] = self._seen.get(name, 0) + 1


class SnarimaxResidual(ForecastResidual):
    """Residual of river's SNARIMAX (seasonal ARIMA, learned online by SGD).

    The regressor standardises the lags and the target and clips the gradient: plain
    SGD diverges on heavy-tailed series (NAB's tweet counts reach 10¹⁴ in a few
    thousand rows without the clip).

    Parameters
    ----------
    p, d, q
        Autoregressive lags, differencing order and moving-average lags.
    m, sp
        Season length in rows and seasonal autoregressive lags (``sp = 0``: none).
    lr
        SGD learning rate of the regressor.
    window
        Residuals remembered for their robust scale.
    warm_up
        Values the forecaster learns before its residuals count, and residuals seen before a
        score is given.
    holdoff, damp
        Rows a score is remembered, and the factor for rows that do not beat it.
    clip
        A value whose residual is beyond this many robust deviations is learned as if it
        were that far (0: learn every value as it is).

    Examples
    --------
    >>> from workbench.models.detectors import score_stream
    >>> rows = [{"v": math.sin(i / 5)} for i in range(400)] + [{"v": 3.0}]
    >>> scores = score_stream(SnarimaxResidual(), rows)
    >>> scores[-1] == max(scores), scores[-1] > 0.9
    (True, True)
    """

    bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "p": (0, 30),
        "d": (0, 2),
        "q": (0, 10),
        "m": (1, 10_000),
        "sp": (0, 3),
        "lr": (1e-5, 1.0),
        **_SCORING,
    }

    def __init__(
        self,
        p: int = 3,
        d: int = 1,
        q: int = 0,
        m: int = 1,
        sp: int = 0,
        lr: float = 0.01,
        window: int = 2000,
        warm_up: int = 30,
        holdoff: int = 350,
        damp: float = 0.5,
        clip: float = 0.0,
    ) -> None:
        self.p, self.d, self.q, self.m, self.sp, self.lr = p, d, q, m, sp, lr
        self._setup(window, warm_up, holdoff, damp, clip)

    def _make(self) -> Any:
        regressor = linear_model.LinearRegression(optimizer=optim.SGD(self.lr), intercept_lr=self.lr, clip_gradient=1.0)
        pipeline = compose.Pipeline(
            preprocessing.StandardScaler(), preprocessing.TargetStandardScaler(regressor=regressor)
        )
        return time_series.SNARIMAX(p=self.p, d=self.d, q=self.q, m=self.m, sp=self.sp, regressor=pipeline)

    def _forecast(self, model: Any) -> float | None:
        if len(model.y_hist) < model.differencer.n_required_past_values or not model.y_diff:
            return None
        return float(model.forecast(horizon=1)[0])

    def _learn(self, model: Any, value: float) -> None:
        model.learn_one(value)


class HoltWintersResidual(ForecastResidual):
    """Residual of river's additive Holt-Winters (level, trend and season).

    It cannot forecast before it has seen one whole season: those rows score 0.
    river 0.26 starts an additive season at ``y / level`` (the multiplicative start,
    and a division by zero on a series whose first season averages 0); this detector
    starts it at ``y − level`` instead, once the first season is in, and the trend at 0
    (river's mean first difference, over one season, mistakes the season for a trend).

    Parameters
    ----------
    alpha, beta, gamma
        Smoothing of the level, the trend and the season.
    seasonality
        Season length in rows (288 = one day of 5-minute rows).
    window
        Residuals remembered for their robust scale.
    warm_up
        Values the forecaster learns before its residuals count, and residuals seen before a
        score is given.
    holdoff, damp
        Rows a score is remembered, and the factor for rows that do not beat it.
    clip
        A value whose residual is beyond this many robust deviations is learned as if it
        were that far (0: learn every value as it is).

    Examples
    --------
    >>> from workbench.models.detectors import score_stream
    >>> rows = [{"v": float(i % 4)} for i in range(200)] + [{"v": 9.0}]
    >>> scores = score_stream(HoltWintersResidual(seasonality=4), rows)
    >>> scores[:4], scores[-1] > 0.9
    ([0.0, 0.0, 0.0, 0.0], True)
    """

    bounds: ClassVar[dict[str, tuple[float, float]]] = {
        "alpha": (0.0, 1.0),
        "beta": (0.0, 1.0),
        "gamma": (0.0, 1.0),
        "seasonality": (2, 10_000),
        **_SCORING,
    }

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.01,
        gamma: float = 0.3,
        seasonality: int = 288,
        window: int = 2000,
        warm_up: int = 30,
        holdoff: int = 350,
        damp: float = 0.5,
        clip: float = 5.0,
    ) -> None:
        self.alpha, self.beta, self.gamma, self.seasonality = alpha, beta, gamma, seasonality
        self._setup(window, warm_up, holdoff, damp, clip)

    def _make(self) -> Any:
        return time_series.HoltWinters(alpha=self.alpha, beta=self.beta, gamma=self.gamma, seasonality=self.seasonality)

    def _forecast(self, model: Any) -> float | None:
        return float(model.forecast(horizon=1)[0]) if model._initialized else None

    def _learn(self, model: Any, value: float) -> None:
        if model._initialized:
            model.learn_one(value)
            return
        first = model._first_values
        first.append(value)
        if len(first) < self.seasonality:
            return
        level = sum(first) / len(first)
        model.level.append(level)
        model.trend.append(0.0)  # one season cannot tell a trend from the season itself
        model.season.extend(v - level for v in first)
        model._initialized = True
