"""The shape rules: a flat line, a new level and a break in a season, each caught once, and nothing else."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from workbench.models.context import ContextDetector
from workbench.models.detectors import score_stream
from workbench.models.shape import FlatLine, LevelShift, SeasonalBreak, find_period


def _flags(rule, values, recent_len: int | None = None) -> list[int]:
    recent: deque[float] = deque(maxlen=recent_len or 1)
    out = []
    for i, v in enumerate(values):
        hit = rule.update(v, recent) if recent_len else rule.update(v)
        if hit:
            out.append(i)
        recent.append(v)
    return out


def test_a_flat_line_alarms_once_when_it_outlasts_every_run_before():
    values = [float(i % 7) for i in range(300)] + [3.0] * 60 + [float(i % 7) for i in range(100)] + [2.0] * 40
    rule = FlatLine(rows=20)
    hits = _flags(rule, values)
    assert hits == [300 + 20]  # the 21st row of the 60-row run; the later 40-row run sets no record
    assert FlatLine(rows=60).update(1.0) is False
    assert _flags(FlatLine(rows=0), [1.0] * 500) == []  # 0: off


def test_a_flat_line_must_beat_the_longest_run_so_far():
    values = [1.0] * 30 + [2.0] + [5.0] * 25 + [6.0] + [5.0] * 31
    assert _flags(FlatLine(rows=10), values) == [10, 30 + 1 + 25 + 1 + 30]  # the first run, then only a longer one


def test_a_sustained_new_level_inside_the_range_of_spikes_alarms_but_the_spikes_do_not():
    t = np.arange(3000)
    base = 10 + np.sin(2 * np.pi * t / 300) + 0.5 * ((t % 5) - 2)  # medians trace the sine, from 9 to 11
    base[::97] = 40.0  # spikes: they set the range of values, not of rolling medians
    shifted = base.copy()
    shifted[2600:2700] += 3.0  # a new level for 100 rows, inside the spikes' range
    assert _flags(LevelShift(0.05, window=24, after=1000), base) == []
    hits = _flags(LevelShift(0.05, window=24, after=1000), shifted)
    assert hits and 2600 <= hits[0] < 2624  # once half the window has moved
    early = base.copy()
    early[500:600] += 3.0
    assert _flags(LevelShift(0.05, window=24, after=1000), early) == []  # before `after`, the range only grows


def test_the_period_is_the_lag_the_series_best_repeats_at():
    t = np.arange(2000)
    rng = np.random.default_rng(0)
    assert abs(find_period(np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.3, 2000)) - 288) <= 1
    assert find_period(((t % 50) < 10).astype(float)) == 50  # a square wave: a peak every 50 rows
    assert find_period(rng.normal(size=2000)) is None  # noise
    assert find_period(np.full(2000, 4.0)) is None  # a constant
    assert find_period(np.sin(2 * np.pi * t / 900)) is None  # three periods do not fit in 2000 rows


def _daily(n: int, period: int = 100, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 20 + 10 * ((t % period) < 30) + rng.normal(0, 0.5, n)  # a busy part of each "day"


def test_a_missing_peak_breaks_the_season_and_a_normal_season_does_not():
    normal = _daily(6000)
    assert _flags(SeasonalBreak(0.1, window=24, history=2000), normal, recent_len=2000) == []
    missing = normal.copy()
    missing[4500:4530] = 20 + np.random.default_rng(5).normal(0, 0.5, 30)  # one day without its busy part
    hits = _flags(SeasonalBreak(0.1, window=24, history=2000), missing, recent_len=2000)
    assert hits and 4500 <= hits[0] < 4530
    assert all(4500 <= h < 4560 for h in hits)


def test_the_seasonal_rule_waits_for_a_period_and_for_half_a_history_on_it():
    rule = SeasonalBreak(0.1, window=24, history=2000)
    values = _daily(2500)
    _flags(rule, values, recent_len=2000)
    assert rule.period == 100 and rule.residuals.medians == 500 - 24 + 1
    noise = np.random.default_rng(6).normal(0, 1, 5000)
    quiet = SeasonalBreak(0.1, window=24, history=2000)
    assert _flags(quiet, noise, recent_len=2000) == [] and quiet.period is None
    assert len(quiet.residuals.values) == 0


@pytest.mark.parametrize("rule", ["flat", "level", "seasonal"])
def test_each_rule_scores_one_in_the_detector_and_zero_turns_it_off(rule):
    values = _daily(5000)
    if rule == "flat":
        values[4200:4350] = values[4199]
    elif rule == "level":
        t = np.arange(5000)
        values = 10 + np.sin(2 * np.pi * t / 300) + 0.5 * ((t % 5) - 2)
        values[::97] = 40.0  # spikes set the range of values
        values[4200:4400] += 3.0  # a level inside it that no rolling median reached
    else:
        values[4500:4530] = 20.0 + np.random.default_rng(5).normal(0, 0.5, 30)
    rows = [{"v": float(v)} for v in values]
    on = score_stream(ContextDetector(rest=0), rows)
    off = score_stream(ContextDetector(rest=0, **{rule: 0}), rows)
    changed = [i for i, (a, b) in enumerate(zip(on, off, strict=True)) if a != b]
    assert changed and all(on[i] == 1.0 for i in changed)
    assert min(changed) >= 4200


def test_a_checkpoint_from_before_the_shape_rules_restores_and_scores_on():
    rows = [{"v": float(v)} for v in _daily(2500)]
    det = ContextDetector()
    score_stream(det, rows[:1500])
    state = det.snapshot()
    for stream in state["_streams"].values():  # how a stream was saved before the rules
        del stream.flat, stream.level, stream.seasonal
    again = ContextDetector()
    again.restore(state)
    scores = score_stream(again, rows[1500:])
    assert len(scores) == 1000 and all(0.0 <= s <= 1.0 for s in scores)
    assert again._streams["v"].seasonal.rows == 1000  # the rules start afresh from the restore
