"""Building blocks of the detectors: a trailing robust scale, a sliding maximum, a hold-off.

Each is a small stateful value with bounded memory that the detectors compose (and
that :meth:`~workbench.models.detectors.Detector.snapshot` deep-copies with them).

Examples
--------
>>> scale = RollingRobust(window=100)
>>> for v in [10.0, 11.0, 9.0, 10.5, 9.5] * 10:
...     scale.learn(v)
>>> round(scale.z(10.0), 2), scale.z(20.0) > 10
(0.0, True)
>>> hold = Holdoff(rows=3, damp=0.5)
>>> [hold.damped(s) for s in [0.9, 0.5, 0.95, 0.2, 0.1, 0.1, 0.3]]
[0.9, 0.25, 0.95, 0.1, 0.05, 0.05, 0.3]
"""

from __future__ import annotations

import bisect
from collections import deque

__all__ = ["Holdoff", "RollingRobust", "SlidingMax"]


class RollingRobust:
    """Trailing median and MAD of one stream: ``z(v) = |v − median| / (1.4826·MAD)``.

    The median and MAD are recomputed every ``refresh`` values (the MAD needs a sort).
    A stream that mostly repeats one value has MAD 0: the scale falls back on the mean
    absolute deviation, then on a sliver of the central 90 % range, so ``z`` stays finite.

    Parameters
    ----------
    window
        Values remembered.
    warm_up
        ``z`` is 0 until this many values were learned.
    refresh
        Recompute the median and MAD every this many values.
    """

    def __init__(self, window: int = 2000, warm_up: int = 30, refresh: int = 10) -> None:
        self.window, self.warm_up, self.refresh = window, warm_up, refresh
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._age = refresh
        self.median, self.scale = 0.0, 1.0

    def __len__(self) -> int:
        return len(self._sorted)

    def z(self, value: float) -> float:
        """Distance of ``value`` from the trailing median in robust standard deviations."""
        return abs(self.signed(value))

    def signed(self, value: float) -> float:
        """``(value − median) / scale``: :meth:`z` with its sign (0 during warm-up)."""
        n = len(self._sorted)
        if n < self.warm_up:
            return 0.0
        if self._age >= self.refresh:
            ordered = self._sorted
            med = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
            deviations = sorted(abs(v - med) for v in ordered)
            mean_ad = sum(deviations) / n
            span = ordered[n - 1 - n // 20] - ordered[n // 20]  # the central 90 %: one wild value cannot widen it
            self.median = med
            self.scale = max(1.4826 * deviations[n // 2], 1.2533 * mean_ad, 1e-3 * span, 1e-9 * (1 + abs(med)))
            self._age = 0
        return (value - self.median) / self.scale

    def learn(self, value: float) -> None:
        """Remember ``value`` (the oldest is forgotten beyond ``window``)."""
        self._age += 1
        self._recent.append(value)
        bisect.insort(self._sorted, value)
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]


class SlidingMax:
    """Maximum of the last ``rows`` values pushed (a monotone deque: O(1) amortised).

    >>> m = SlidingMax(2)
    >>> for v in [3.0, 1.0, 2.0]:
    ...     m.push(v)
    >>> m.max()
    2.0
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._peaks: deque[tuple[int, float]] = deque()  # (row, value), values decreasing
        self._row = 0

    def max(self, default: float = 0.0) -> float:
        """The largest of the last ``rows`` values, or ``default`` when none."""
        return self._peaks[0][1] if self._peaks else default

    def push(self, value: float) -> None:
        """Add ``value``; the value ``rows`` pushes ago leaves."""
        while self._peaks and self._peaks[-1][1] <= value:
            self._peaks.pop()
        self._peaks.append((self._row, value))
        self._row += 1
        while self._peaks[0][0] <= self._row - 1 - self.rows:
            self._peaks.popleft()


class Holdoff:
    """Report a score in full only when it beats every score of the last ``rows`` rows.

    An anomaly lasts several rows; its echoes score ``damp`` times as much, so one
    event is one detection (NAB counts every further detection outside the
    window as a false positive). ``rows = 0`` turns it off.

    Parameters
    ----------
    rows
        Rows a score is remembered.
    damp
        Factor for a score that does not beat them.
    """

    def __init__(self, rows: int = 500, damp: float = 0.5) -> None:
        self.rows, self.damp = rows, damp
        self._recent = SlidingMax(rows)

    def peek(self, score: float) -> float:
        """The reported score, without remembering ``score``."""
        return score if self.rows == 0 or score > self._recent.max() else self.damp * score

    def learn(self, score: float) -> None:
        """Remember ``score`` (the raw one, not the damped one)."""
        if self.rows:
            self._recent.push(score)

    def damped(self, score: float) -> float:
        """:meth:`peek` then :meth:`learn`."""
        out = self.peek(score)
        self.learn(score)
        return out
