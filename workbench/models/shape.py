"""Shape rules: three kinds of anomaly a context memory learns to find familiar, caught by plain rules.

A contextual detector scores a value by how unfamiliar its context is, and a context
that lasts soon becomes familiar. Three kinds of incident look like that:

- :class:`FlatLine` — one value repeated, exactly, for longer than ever before (a stuck
  sensor, a dead metric, a counter that stopped);
- :class:`LevelShift` — the rolling median of the last rows leaves the range of rolling
  medians seen so far (a sustained new level, where single spikes had reached before);
- :class:`SeasonalBreak` — for a periodic series, the rolling median of the value minus
  what the last periods held at the same phase leaves the range of such differences
  seen so far (a missing daily peak, a quiet holiday).

Each rule keeps bounded state (a few numbers and at most one window of rows), sees each
value once in time order, and answers whether this value breaks it. Every rule scores
nothing until it has a range to compare against, so the first rows never alarm.

Examples
--------
>>> rule = FlatLine(rows=5)  # 3.0 for 7 rows: the alarm is on its 6th
>>> [rule.update(v) for v in [1.0, 2.0, 3.0] + [3.0] * 6]
[False, False, False, False, False, False, False, True, False]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

__all__ = ["FlatLine", "LevelShift", "SeasonalBreak", "beyond", "find_period"]

#: the shortest period looked for, in rows (shorter repeats are noise, not a season)
MIN_PERIOD = 10
#: the autocorrelation a period must reach for the series to count as periodic
PERIODIC = 0.3
#: past periods whose median at the same phase is the seasonal expectation
CYCLES = 3


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def beyond(value: float, low: float, high: float, share: float) -> bool:
    """Whether ``value`` lies outside ``[low, high]`` widened by ``share`` of its span (never for no span)."""
    span = high - low
    return span > 0 and not low - share * span <= value <= high + share * span


class _MedianRange:
    """The median of the last ``window`` values pushed, and the range of those medians so far."""

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.low, self.high = math.inf, -math.inf
        self.medians = 0  # medians taken since the range last started

    def reset(self) -> None:
        """Start a new range (the window keeps its values)."""
        self.low, self.high, self.medians = math.inf, -math.inf, 0

    def push(self, value: float) -> float | None:
        """Add ``value``; the window's median once the window is full (``None`` before)."""
        self.values.append(value)
        if len(self.values) < (self.values.maxlen or 0):
            return None
        self.medians += 1
        return _median(self.values)

    def widen(self, median: float) -> None:
        """Take ``median`` into the range (after it was compared with it)."""
        self.low, self.high = min(self.low, median), max(self.high, median)


class FlatLine:
    """A value repeated exactly for more than ``rows`` rows and longer than any run before: once per run."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.last = math.nan
        self.run = 0  # rows the last value has repeated for
        self.longest = 0  # the longest run that has ended

    def update(self, value: float) -> bool:
        """Take the next value; ``True`` on the row where its run first sets a record above ``rows``."""
        if value == self.last:
            self.run += 1
        else:
            self.longest, self.run, self.last = max(self.longest, self.run), 1, value
        return self.rows > 0 and self.run == max(self.longest, self.rows) + 1


class LevelShift:
    """The median of the last ``window`` values beyond the range of such medians by ``share`` of it.

    Only from row ``after`` on: the range of medians needs that long to cover a series'
    usual levels.
    """

    def __init__(self, share: float, window: int, after: int) -> None:
        self.share, self.after = share, after
        self.medians = _MedianRange(window)
        self.rows = 0

    def update(self, value: float) -> bool:
        """Take the next value; ``True`` when the rolling median leaves the range."""
        row = self.rows
        self.rows += 1
        median = self.medians.push(value)
        if median is None:
            return False
        m = self.medians
        out = row >= self.after and beyond(median, m.low, m.high, self.share)
        m.widen(median)
        return out


def find_period(values: np.ndarray, longest: int = 700) -> int | None:
    """The lag at which ``values`` best repeats, if the series is periodic; ``None`` otherwise.

    The highest autocorrelation past its first drop below 0, between ``MIN_PERIOD`` rows
    and a third of the values (so that ``CYCLES`` periods fit) or ``longest``; periodic
    when that autocorrelation reaches ``PERIODIC``.

    >>> t = np.arange(2000)
    >>> find_period(np.sin(2 * np.pi * t / 288)), find_period(np.random.default_rng(0).normal(size=2000))
    (288, None)
    """
    x = np.asarray(values, dtype=float)
    x = x - x.mean()
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    if not ac[0] > 0:
        return None
    ac = ac / ac[0]
    top = min(longest, n // CYCLES)
    negative = np.flatnonzero(ac[:top] < 0)
    if not len(negative):
        return None
    start = max(MIN_PERIOD, int(negative[0]))
    if start >= top:
        return None
    lag = int(np.argmax(ac[start:top])) + start
    return lag if ac[lag] >= PERIODIC else None


class SeasonalBreak:
    """The rolling median of (value − the median of the last ``CYCLES`` periods at its phase) leaving its range.

    Every ``history`` rows the period is looked for again in the last ``history`` values
    (:func:`find_period`); a new period starts a new range, and the rule alarms only once
    it has ``history // 2`` medians of the difference on it.
    """

    def __init__(self, share: float, window: int, history: int) -> None:
        self.share, self.history = share, history
        self.period: int | None = None
        self.residuals = _MedianRange(window)  # of the differences; its range starts anew with each period
        self.rows = 0

    def update(self, value: float, recent: Sequence[float]) -> bool:
        """Take the next value; ``recent`` holds the values before it, oldest first (at least ``history``)."""
        row = self.rows
        self.rows += 1
        if row < self.history:
            return False
        if row % self.history == 0:
            period = find_period(np.fromiter(recent, float, len(recent))[-self.history :])
            if period != self.period:
                self.residuals.reset()
            self.period = period
        if self.period is None:
            self.residuals.values.clear()
            return False
        expected = _median([recent[-k * self.period] for k in range(1, CYCLES + 1)])
        median = self.residuals.push(value - expected)
        if median is None:
            return False
        r = self.residuals
        out = r.medians > self.history // 2 and beyond(median, r.low, r.high, self.share)
        r.widen(median)
        return out
