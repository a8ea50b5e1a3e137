"""Decisions with hysteresis: anomaly scores turned into episodes, so one event is one episode.

A score that wavers around a threshold crosses it many times; an alert on each crossing
is a burst of alarms for one event. :class:`Hysteresis` decides per stream (an entity, or
an (entity, metric) pair) with two levels:

- an episode *enters* on a score above ``enter``;
- it *stays* while scores are at or above ``leave`` (lower than ``enter``);
- it *closes* once scores stay below ``leave`` for more than ``min_gap`` rows (0: on the
  first such row), so two bursts closer than that are one episode;
- it *counts* only once it has lasted ``min_rows`` rows (its first row to its newest row
  at or above ``leave``): shorter ones are dropped, never reported.

Online, :meth:`Hysteresis.update` answers for each row whether a counted episode is open
on it (its flag, what an alert fires on: from the row the episode reached ``min_rows``
until the row it closes, the ``min_gap`` rows of waiting included) and returns each
episode when it closes, as ``(start, end, peak)`` — ``end`` the last row at or above
``leave``. Rows are numbered per stream from 0 (or by the ``t`` passed). State is a few
numbers per stream; at most ``max_streams`` streams are held, the least recently updated
evicted first (its open episode is dropped with it).

Examples
--------
>>> h = Hysteresis(enter=0.8, leave=0.5, min_rows=2)
>>> scores = [0.1, 0.9, 0.7, 0.85, 0.6, 0.2, 0.9, 0.1]  # one event, wavering; then one lone spike
>>> [h.update("cpu", s) for s in scores]
[False, False, True, True, True, False, False, False]
>>> episodes(scores, enter=0.8, leave=0.5, min_rows=2)
[(1, 4, 0.9)]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import ConfigError

__all__ = ["Episode", "Hysteresis", "StreamState", "episodes"]

#: a closed episode: (first row, last row at or above ``leave``, highest score)
Episode = tuple[int, int, float]


@dataclass
class StreamState:
    """One stream's decision state (five numbers and a flag)."""

    row: int = -1  # the newest row seen
    start: int = -1  # the open episode's first row; -1: none open
    last: int = -1  # its newest row at or above ``leave``
    peak: float = 0.0


@dataclass
class Hysteresis:
    """Per-stream episodes from scores: enter above ``enter``, leave below ``leave``, ``min_rows``, ``min_gap``.

    Parameters
    ----------
    enter
        A score above this opens an episode.
    leave
        Scores at or above this keep it open (``leave <= enter``).
    min_rows
        Rows an episode must last to count (shorter ones are never flagged nor reported).
    min_gap
        Rows below ``leave`` an episode waits before it closes (a return above ``enter``
        within them continues it: close bursts merge); 0: it closes on the first.
    max_streams
        Most streams held; the least recently updated is evicted first.
    """

    enter: float = 0.8
    leave: float = 0.5
    min_rows: int = 1
    min_gap: int = 0
    max_streams: int = 100_000
    streams: OrderedDict[Any, StreamState] = field(default_factory=OrderedDict, repr=False)
    evicted: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not self.leave <= self.enter:
            raise ConfigError(f"hysteresis: leave must be <= enter, not leave={self.leave} > enter={self.enter}")
        if self.min_rows < 1:
            raise ConfigError(f"hysteresis: min_rows must be >= 1 row, not {self.min_rows}")
        if self.min_gap < 0:
            raise ConfigError(f"hysteresis: min_gap must be >= 0 rows, not {self.min_gap}")
        if self.max_streams < 1:
            raise ConfigError(f"hysteresis: max_streams must be >= 1, not {self.max_streams}")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Hysteresis:
        """From a mapping of the parameters (a score node's ``episodes=``); unknown keys are a user error."""
        known = {"enter", "leave", "min_rows", "min_gap", "max_streams"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"hysteresis: unknown options {unknown}; expected some of {sorted(known)}")
        return cls(**options)

    def clone(self) -> Hysteresis:
        """The same levels, no streams."""
        return Hysteresis(self.enter, self.leave, self.min_rows, self.min_gap, self.max_streams)

    def step(self, s: StreamState, score: float, t: int | None = None) -> tuple[bool, Episode | None]:
        """Advance one stream's state ``s`` by a row; its flag, and the episode closed on it (if any)."""
        row = s.row + 1 if t is None else t
        s.row = row
        closed: Episode | None = None
        if s.start >= 0 and score < self.leave and row - s.last > self.min_gap:
            if s.last - s.start + 1 >= self.min_rows:
                closed = (s.start, s.last, s.peak)
            s.start = -1
        if s.start < 0:
            if score > self.enter:
                s.start, s.last, s.peak = row, row, score
        elif score >= self.leave:
            s.last, s.peak = row, max(s.peak, score)
        flag = s.start >= 0 and s.last - s.start + 1 >= self.min_rows
        return flag, closed

    def update(self, key: Hashable, score: float, t: int | None = None) -> bool:
        """Take stream ``key``'s next score; whether a counted episode is open on this row."""
        return self.decide(key, score, t)[0]

    def decide(self, key: Hashable, score: float, t: int | None = None) -> tuple[bool, Episode | None]:
        """Like :meth:`update`, plus the episode closed on this row (``None`` if none)."""
        s = self.streams.get(key)
        if s is None:
            s = self.streams[key] = StreamState()
            while len(self.streams) > self.max_streams:
                self.streams.popitem(last=False)
                self.evicted += 1
        else:
            self.streams.move_to_end(key)
        return self.step(s, score, t)

    def flush(self, key: Hashable) -> Episode | None:
        """Close stream ``key``'s open episode now (the end of a series); it, if it counts."""
        s = self.streams.get(key)
        if s is None or s.start < 0:
            return None
        out = (s.start, s.last, s.peak) if s.last - s.start + 1 >= self.min_rows else None
        s.start = -1
        return out

    def snapshot(self) -> dict[str, Any]:
        """The levels and every stream's state (plain values)."""
        return {
            "levels": [self.enter, self.leave, self.min_rows, self.min_gap, self.max_streams],
            "streams": [(k, s.row, s.start, s.last, s.peak) for k, s in self.streams.items()],
            "evicted": self.evicted,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot` (the levels too)."""
        self.enter, self.leave, self.min_rows, self.min_gap, self.max_streams = state["levels"]
        self.streams = OrderedDict(
            (k, StreamState(row, start, last, peak)) for k, row, start, last, peak in state["streams"]
        )
        self.evicted = state["evicted"]


def episodes(
    scores: Iterable[float], *, enter: float = 0.8, leave: float = 0.5, min_rows: int = 1, min_gap: int = 0
) -> list[Episode]:
    """The episodes of one series of scores (the one still open at the end included, if it counts)."""
    h = Hysteresis(enter, leave, min_rows, min_gap, max_streams=1)
    out = [e for score in scores if (e := h.decide(0, score)[1]) is not None]
    last = h.flush(0)
    return out + [last] if last is not None else out
