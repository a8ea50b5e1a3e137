"""The contextual detector (CAD-OSE's algorithm): what it learns, when it rests, and its bounds.

The catalogue-wide contract (clone, snapshot/restore, no mutation, bounded state) is in
test_detectors.py; these are the behaviours particular to this detector. Each runs on both
paths: the C kernel and the pure-Python memory (test_context_native.py compares them).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from workbench.models.context import ContextDetector
from workbench.models.detectors import score_stream
from workbench.native import context as native_context


@pytest.fixture(autouse=True, params=["native", "python"])
def path(request):
    if request.param == "native" and not native_context.available():
        pytest.skip(native_context.status())
    with native_context.disabled() if request.param == "python" else contextlib.nullcontext():
        yield request.param


def _cycle(n: int, period: int = 12) -> list[dict[str, float]]:
    return [{"v": float(i % period)} for i in range(n)]


def test_a_learned_cycle_scores_zero_and_a_break_in_it_stands_out():
    rows = _cycle(1500)
    rows[1200] = {"v": 5.5}  # out of step for one row, inside the usual range
    scores = score_stream(ContextDetector(rest=0), rows)
    assert max(scores[600:1200]) == 0.0  # every fact of the cycle is predicted once learned
    assert scores[1200] > 0.75
    assert max(scores[1300:]) < 0.5  # the cycle resumes: back to familiar contexts


def test_it_rests_after_an_alarm_and_one_event_raises_one_alarm():
    rows = _cycle(1500)
    rows[1200] = {"v": 5.5}
    rows[1203] = {"v": 6.5}  # a second break three rows on, inside the rest
    rested = score_stream(ContextDetector(rest=150), rows)
    eager = score_stream(ContextDetector(rest=0), rows)
    assert rested[1200] == eager[1200] > 0.75
    assert eager[1203] > 0.0 and rested[1203] == 0.0
    assert max(rested[1201:1351]) == 0.0
    assert rested[:150] == [0.0] * 150  # it starts at rest, as CAD-OSE does


def test_a_new_extreme_rebuilds_the_bins_and_scores_high():
    rng = np.random.default_rng(0)
    rows = [{"v": float(v)} for v in 10 + rng.normal(0, 1, 3000)]
    rows[2500] = {"v": 60.0}
    det = ContextDetector(rest=0)
    scores = score_stream(det, rows)
    assert scores[2500] > 0.75
    stream = det._streams["v"]
    assert stream.high == 60.0 and stream.bin_high == 60.0  # the bins now span the spike
    assert len(stream.recent) == det.history


def test_a_value_well_beyond_the_range_seen_scores_one_whatever_its_context():
    rows = _cycle(1500)  # 0 … 11, learned
    rows[1200] = {"v": 11.05}  # beyond the range by 0.45 % of it: context decides
    rows[1300] = {"v": 11.5}  # beyond by 4.5 %: a spatial anomaly
    spatial = score_stream(ContextDetector(rest=0), rows)
    context_only = score_stream(ContextDetector(rest=0, spatial=0.0), rows)
    assert spatial[1200] == context_only[1200] < 1.0
    assert spatial[1300] == 1.0 > context_only[1300]
    assert spatial[:1200] == context_only[:1200]  # the first row of all sets no range to leave
    wide = score_stream(ContextDetector(rest=0, spatial=0.05), rows)
    assert wide[1300] == context_only[1300]  # within 5 % of the range


def test_a_fixed_range_never_rebuilds_and_clips_values_outside_it():
    det = ContextDetector(value_range=(0.0, 11.0), rest=0)
    score_stream(det, _cycle(600))
    memory = det._streams["v"].memory
    score_stream(det, [{"v": 500.0}, {"v": -3.0}])
    assert det._streams["v"].memory is memory
    assert det._facts(det._streams["v"], 500.0) == det._facts(det._streams["v"], 11.0)


def test_the_memory_is_rebuilt_when_full_so_state_stays_bounded():
    rng = np.random.default_rng(1)
    det = ContextDetector(max_contexts=300, history=200, rest=0)
    rows = [{"v": float(v)} for v in rng.uniform(0, 100, 4000)]  # noise: new contexts all the time
    sizes = []
    for x in rows:
        det.score_one(x)
        det.learn_one(x)
        sizes.append(len(det._streams["v"].memory))
    assert max(sizes) <= 300 + 50  # one step adds a bounded number of contexts before the rebuild
    assert min(sizes[1000:]) < max(sizes[1000:])  # it was rebuilt, more than once


def test_scoring_twice_does_not_learn_twice():
    rows = _cycle(300)
    once, twice = ContextDetector(), ContextDetector()
    for x in rows:
        a = once.score_one(x)
        once.learn_one(x)
        b = twice.score_one(x)
        assert twice.score_one(x) == b
        twice.learn_one(x)
        assert a == b
    assert len(once._streams["v"].memory) == len(twice._streams["v"].memory)


def test_several_features_score_as_their_most_surprised():
    rows = [{"a": float(i % 12), "b": float(i % 5)} for i in range(1500)]
    rows[1200] = {"a": 5.5, "b": float(1200 % 5)}
    both = score_stream(ContextDetector(rest=0), rows)
    alone = score_stream(ContextDetector(rest=0), [{"a": r["a"]} for r in rows])
    assert both[1200] == pytest.approx(alone[1200]) and both[1200] > 0.75
    assert set(ContextDetector(rest=0)._streams) == set()  # streams start on first sight


def test_missing_and_non_finite_values_are_skipped():
    rows = _cycle(300) + [{"v": float("nan")}, {"v": float("inf")}, {}] + _cycle(24)
    scores = score_stream(ContextDetector(rest=0), rows)
    assert scores[300:303] == [0.0, 0.0, 0.0]
    assert all(0.0 <= s <= 1.0 for s in scores)
