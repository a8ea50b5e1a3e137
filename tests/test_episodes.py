"""Decisions with hysteresis: one event is one episode, per stream, bounded, checkpointed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamz import Stream

from workbench.errors import ConfigError
from workbench.models.detectors import RobustZScore
from workbench.models.episodes import Hysteresis, episodes
from workbench.models.node import ScoreNode
from workbench.models.scoring import Scorer

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_noise_around_a_threshold_is_one_episode_not_twenty() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0, 0.2, 200), 0.8 + rng.normal(0, 0.06, 300), rng.uniform(0, 0.2, 200)])
    crossings = int(np.sum((scores[1:] > 0.8) & (scores[:-1] <= 0.8)))
    assert crossings >= 20  # a plain threshold alarms again and again
    found = episodes(scores.tolist(), enter=0.8, leave=0.5, min_rows=3)
    assert len(found) == 1
    start, end, peak = found[0]
    assert 200 <= start < 220 and 480 <= end <= 499 and peak == scores.max()


def test_a_level_held_500_rows_is_one_episode_flagged_throughout() -> None:
    scores = [0.1] * 100 + [0.9] * 500 + [0.1] * 100
    h = Hysteresis(enter=0.8, leave=0.5, min_rows=3)
    flags = [h.update("cpu", s) for s in scores]
    assert episodes(scores, enter=0.8, leave=0.5, min_rows=3) == [(100, 599, 0.9)]
    assert flags == [False] * 102 + [True] * 498 + [False] * 100  # flagged from its 3rd row to its last


def test_min_gap_merges_close_bursts_and_holds_the_flag_while_it_waits() -> None:
    scores = [0.0] * 5 + [0.9] * 4 + [0.0] * 3 + [0.9] * 4 + [0.0] * 10
    assert episodes(scores, enter=0.8, leave=0.5, min_gap=2) == [(5, 8, 0.9), (12, 15, 0.9)]
    assert episodes(scores, enter=0.8, leave=0.5, min_gap=3) == [(5, 15, 0.9)]
    h = Hysteresis(enter=0.8, leave=0.5, min_gap=3)
    flags = [h.update(0, s) for s in scores]
    assert flags == [False] * 5 + [True] * 11 + [True] * 3 + [False] * 7


@settings(max_examples=300, deadline=None)
@given(
    scores=st.lists(st.floats(0.0, 1.0), max_size=300),
    enter=st.floats(0.3, 0.95),
    drop=st.floats(0.0, 0.3),
    min_rows=st.integers(1, 10),
    min_gap=st.integers(0, 10),
)
def test_episodes_never_overlap_last_min_rows_and_need_a_score_above_enter(
    scores: list[float], enter: float, drop: float, min_rows: int, min_gap: int
) -> None:
    leave = enter - drop
    found = episodes(scores, enter=enter, leave=leave, min_rows=min_rows, min_gap=min_gap)
    for (_, end, _), (start, _, _) in zip(found, found[1:], strict=False):
        assert start > end + min_gap  # apart, and further apart than a merge would allow
    for start, end, peak in found:
        assert end - start + 1 >= min_rows
        assert scores[start] > enter and peak == max(scores[start : end + 1])
        assert scores[end] >= leave
    if not any(s > enter for s in scores):
        assert found == []
    # the online flags lie inside the episodes (from their min_rows-th row, to their end plus the wait)
    h = Hysteresis(enter, leave, min_rows, min_gap)
    flags = [h.update("k", s) for s in scores]
    covered = set()
    for start, end, _ in found:
        covered.update(range(start + min_rows - 1, min(end + min_gap, len(scores) - 1) + 1))
    assert {i for i, f in enumerate(flags) if f} <= covered
    assert all(flags[end] for _, end, _ in found)  # flagged by its last row at the latest


def test_streams_are_separate_bounded_and_restored() -> None:
    h = Hysteresis(enter=0.8, leave=0.5, min_rows=2, max_streams=3)
    for key in ["a", "b", "c", "d"]:
        h.update(key, 0.9)
    assert list(h.streams) == ["b", "c", "d"] and h.evicted == 1
    assert h.update("b", 0.6) and not h.update("a", 0.6)  # b's episode goes on; a starts afresh below enter
    again = Hysteresis()
    again.restore(h.snapshot())
    assert again.snapshot() == h.snapshot()
    assert [again.update("b", s) for s in (0.7, 0.1)] == [h.update("b", s) for s in (0.7, 0.1)] == [True, False]


def test_bad_levels_are_user_errors() -> None:
    with pytest.raises(ConfigError, match="leave must be <= enter"):
        Hysteresis(enter=0.5, leave=0.8)
    with pytest.raises(ConfigError, match="min_rows must be >= 1"):
        Hysteresis(min_rows=0)
    with pytest.raises(ConfigError, match="unknown options \\['enterr'\\]"):
        Hysteresis.from_options({"enterr": 0.9})


def _rows(n: int, hosts: int = 2) -> pl.DataFrame:
    """Window rows of ``hosts`` hosts: noise, then host h0's cpu held high from row 150 to 250."""
    rng = np.random.default_rng(1)
    k = np.arange(n * hosts) // hosts
    host = [f"h{i % hosts}" for i in range(n * hosts)]
    cpu = (
        30 + rng.normal(0, 2, n * hosts) + np.where((k >= 150) & (k < 250) & (np.arange(n * hosts) % hosts == 0), 40, 0)
    )
    return pl.DataFrame({"host": host, "window_end": [T0 + timedelta(seconds=10 * int(i)) for i in k], "cpu_mean": cpu})


def test_scorer_episodes_per_entity_survive_a_checkpoint() -> None:
    rows = _rows(300)
    options = {"enter": 0.7, "leave": 0.3, "min_rows": 2, "min_gap": 5}

    def scorer() -> Scorer:
        return Scorer(RobustZScore(warm_up=10), features=["cpu_mean"], by="host", drift=(), episodes=options)

    whole = scorer().process(rows)[0]
    assert "in_episode" in whole.columns
    one = scorer()
    first = one.process(rows.head(320))[0]
    resumed = scorer()
    resumed.restore(one.snapshot())
    second = resumed.process(rows.tail(rows.height - 320))[0]
    assert pl.concat([first, second])["in_episode"].to_list() == whole["in_episode"].to_list()
    h0 = whole.filter(pl.col("host") == "h0")["in_episode"].to_list()
    assert any(h0[150:160]) and not any(whole.filter(pl.col("host") == "h1")["in_episode"].to_list()[20:])
    # fewer starts than rows flagged anomalous on their own: the episode holds across the wavering
    starts = sum(1 for a, b in zip(h0, h0[1:], strict=False) if b and not a)
    assert 1 <= starts < sum(whole.filter(pl.col("host") == "h0")["is_anomaly"].to_list())


def test_score_node_takes_the_episodes_option() -> None:
    head = Stream()
    node = ScoreNode(
        head, "robust_z", features=["cpu_mean"], by="host", drift=(), episodes={"enter": 0.7, "leave": 0.3}
    )
    out = node.sink_to_list()
    head.emit(_rows(300))
    assert out[0]["in_episode"].any()
    snap = node.snapshot()
    again = ScoreNode(
        Stream(), "robust_z", features=["cpu_mean"], by="host", drift=(), episodes={"enter": 0.7, "leave": 0.3}
    )
    again.restore(snap)
    assert again.scorer.state_size == 2
