"""Score nodes: test-then-train, bounded entity table, checkpoints, live retune, param bounds."""

from __future__ import annotations

import operator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamz import Stream

from workbench import CheckpointStore, Lake, Pipeline
from workbench.errors import CheckpointError, ConfigError
from workbench.models.detectors import Detector, RobustZScore, score_stream
from workbench.models.node import ScoreNode
from workbench.models.scoring import Scorer
from workbench.models.tuning import detector_params
from workbench.testing import FrameSource

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def window_rows(
    n: int, *, hosts: int = 3, seed: int = 0, every_s: int = 10, shift_at: int | None = None
) -> pl.DataFrame:
    """``n`` windows of ``hosts`` hosts (one row each), stationary noise; optionally a level shift."""
    rng = np.random.default_rng(seed)
    k = np.arange(n * hosts) // hosts
    cpu = 30 + rng.normal(0, 2, n * hosts)
    if shift_at is not None:
        cpu = cpu + np.where(k >= shift_at, 25.0, 0.0)
    return pl.DataFrame(
        {
            "host": [f"h{i % hosts}" for i in range(n * hosts)],
            "window_start": [T0 + timedelta(seconds=every_s * int(i)) for i in k],
            "window_end": [T0 + timedelta(seconds=every_s * (int(i) + 1)) for i in k],
            "count": rng.poisson(100, n * hosts),
            "cpu_mean": cpu,
        },
        schema_overrides={"window_start": pl.Datetime("ms", "UTC"), "window_end": pl.Datetime("ms", "UTC")},
    )


class Spy(Detector):
    """Records the order of calls; scores the number of rows learned so far (scaled).

    Parameters
    ----------
    scale
        Rows that make a score of 1.
    """

    calls: ClassVar[list[tuple[str, float]]] = []
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"scale": (1, 1000)}

    def __init__(self, scale: int = 100) -> None:
        super().__init__(scale=scale)
        self.scale = scale
        self.learned = 0

    def score_one(self, x: dict[str, float]) -> float:
        Spy.calls.append(("score", x["cpu_mean"]))
        return min(1.0, self.learned / self.scale)

    def learn_one(self, x: dict[str, float]) -> None:
        Spy.calls.append(("learn", x["cpu_mean"]))
        self.learned += 1


def test_each_row_is_scored_before_it_is_learned():
    Spy.calls.clear()
    rows = window_rows(5, hosts=1)
    scored, _ = Scorer(Spy(), features=["cpu_mean"], by="host", warm_up=0).process(rows)
    values = rows["cpu_mean"].to_list()
    assert Spy.calls == [(verb, v) for v in values for verb in ("score", "learn")]
    assert scored["anomaly_score"].to_list() == [0.0, 0.01, 0.02, 0.03, 0.04]  # state before the row


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 240), max_size=5), seed=st.integers(0, 10))
def test_scores_equal_an_offline_test_then_train_per_entity_for_any_batching(cuts, seed):
    rows = window_rows(80, hosts=3, seed=seed)
    scorer = Scorer(RobustZScore(warm_up=5), features=["cpu_mean", "count"], by="host", warm_up=4, drift=())
    bounds = [0, *sorted(set(cuts)), rows.height]
    out = pl.concat([scorer.process(rows[a:b])[0] for a, b in zip(bounds, bounds[1:], strict=False) if b > a])
    for host, part in out.group_by("host", maintain_order=True):
        xs = part.select("cpu_mean", pl.col("count").cast(pl.Float64)).to_dicts()
        expected = score_stream(RobustZScore(warm_up=5), xs)
        expected[:4] = [0.0] * 4
        assert part["anomaly_score"].to_list() == expected, host


def test_idle_entities_expire_by_event_time_and_the_table_is_bounded():
    scorer = Scorer(RobustZScore(), features=["cpu_mean"], by="host", idle="5m", max_entities=50, drift=())
    old = window_rows(1, hosts=40)
    scorer.process(old)
    assert scorer.state_size == 40
    later = window_rows(1, hosts=3).with_columns(
        pl.col("window_start") + timedelta(minutes=10), pl.col("window_end") + timedelta(minutes=10)
    )
    scorer.process(later)
    assert scorer.state_size == 3 and scorer.expired == 40 - 3
    many = pl.DataFrame(
        {
            "host": [f"x{i}" for i in range(500)],
            "window_end": [T0 + timedelta(minutes=10)] * 500,
            "cpu_mean": [1.0] * 500,
        },
        schema_overrides={"window_end": pl.Datetime("ms", "UTC")},
    )
    scorer.process(many)
    assert scorer.state_size == 50 and scorer.evicted == 453
    assert list(scorer.entities)[-1] == "x499"  # the most recent are kept


def test_a_silent_entity_gets_filled_rows_and_scores_on_its_silence():
    rows = window_rows(60, hosts=2)
    silent = (pl.col("host") == "h1") & (pl.col("window_start") >= T0 + timedelta(seconds=500))
    rows = rows.filter(~silent)
    node_out = Scorer(RobustZScore(warm_up=10), features=["count"], by="host", fill={"count": 0}, drift=())
    scored, _ = node_out.process(rows.filter(pl.col("window_start") < T0 + timedelta(seconds=500)))
    scored, _ = node_out.process(rows.filter(pl.col("window_start") >= T0 + timedelta(seconds=500)))
    h1 = scored.filter(pl.col("host") == "h1")
    assert h1.height == 10 and h1["count"].to_list() == [0] * 10
    assert h1["is_anomaly"][0]


def _pipeline(tmp_path, name, batches, **kw):
    pipe = Pipeline(FrameSource(batches), name=name, **kw)
    scores = pipe.head.score("robust_z", features=["cpu_mean", "count"], by="host", params={"warm_up": 10})
    pipe.output("scores", scores)
    pipe.output("drift", scores.drift)
    return pipe, pipe.collect("scores")


def test_snapshot_and_restore_mid_stream_give_identical_output(tmp_path):
    rows = window_rows(120, hosts=4, shift_at=80)
    batches = [rows[i : i + 40] for i in range(0, rows.height, 40)]
    whole, out_whole = _pipeline(tmp_path, "ck-whole", batches)
    whole.run()
    store = CheckpointStore(tmp_path / "ck")
    first, out_first = _pipeline(tmp_path, "ck-first", batches, checkpoints=store, checkpoint_batches=1)
    first.run(max_batches=5)
    first.close()
    second, out_second = _pipeline(tmp_path, "ck-first", batches, checkpoints=store)
    second.run()
    assert pl.concat(out_first + out_second).equals(pl.concat(out_whole))
    node = next(op for op in second.operators() if isinstance(op, ScoreNode))
    assert node.state_size == 4 and node.drift_count > 0


def test_a_checkpoint_from_another_river_version_is_refused_naming_both(tmp_path, monkeypatch):
    import river

    from workbench.storage import checkpoints

    store = CheckpointStore(tmp_path / "ck")
    pipe, _ = _pipeline(tmp_path, "ck-river", [window_rows(30)], checkpoints=store)
    pipe.run()
    state = store.load()
    node_state = next(v for v in state["nodes"].values() if "scorer" in v)
    assert node_state["scorer"]["river"] == river.__version__
    real = checkpoints.library_versions
    with monkeypatch.context() as m:  # as if written by another river
        m.setattr(checkpoints, "library_versions", lambda: {**real(), "river": "0.19.0"})
        store.save(state)
    again, _ = _pipeline(tmp_path, "ck-river", [window_rows(30)], checkpoints=store)
    with pytest.raises(CheckpointError, match=rf"river 0\.19\.0, this is river {river.__version__}"):
        again.run()
    # the model state itself carries the version too (a snapshot used outside a checkpoint)
    node_state["scorer"]["river"] = "0.19.0"
    with pytest.raises(CheckpointError, match=rf"written with river 0\.19\.0, this is river {river.__version__}"):
        ScoreNode(Stream(), "robust_z", by="host").restore(node_state)


def test_drift_events_on_a_shift_and_none_on_a_stationary_stream():
    head = Stream()
    node = head.score("robust_z", features=["cpu_mean"], by="host", drift=("adwin", "page_hinkley"))
    events = node.drift.sink_to_list()
    for seed in range(5):
        head.emit(window_rows(300, hosts=2, seed=seed).with_columns(host=pl.col("host") + f"-s{seed}"))
    assert events == []
    head.emit(window_rows(300, hosts=2, seed=9, shift_at=150).with_columns(host=pl.col("host") + "-shift"))
    found = pl.concat(events)
    assert set(found["host"]) == {"h0-shift", "h1-shift"}
    metric = found.filter(pl.col("feature") == "cpu_mean")
    assert metric["time"].min() >= T0 + timedelta(seconds=1500)  # after the shift, never before
    assert metric.columns == ["host", "feature", "detector", "time", "value"]


def test_live_retune_rebuilds_between_batches_and_warms_from_the_lake(tmp_path):
    lake = Lake(tmp_path / "lake")
    rows = window_rows(90, hosts=3)
    pipe = Pipeline(FrameSource([rows[:150], rows[150:]]), name="retune", checkpoint_batches=1)
    frames = pipe.head.map(operator.attrgetter("frame"))
    scores = frames.score("robust_z", features=["cpu_mean"], by="host", lake=lake)
    pipe.output("windows", frames)
    pipe.output("scores", scores)
    pipe.to_lake(lake, outputs=["windows"])
    pipe.run(max_batches=1)
    assert lake.read("windows").height == 150
    scores.retune(window=60, warm_up=5)  # e.g. from a widget, on another thread
    assert scores.pending and scores.scorer.entities["h0"].model.window == 2000  # nothing changes mid-batch
    pipe.run()
    assert not scores.pending
    assert scores.retunes[-1]["values"]["window"] == 60 and scores.retunes[-1]["warmed"] == 150
    model = scores.scorer.entities["h0"].model
    assert model.window == 60 and model._row == 50 + 40  # warmed on h0's 50 rows, then 40 new ones


def test_param_bounds_reject_out_of_range_values_with_a_clear_error():
    node = ScoreNode(Stream(), "robust_z", by="host")
    with pytest.raises(ConfigError, match=r"detector 'robust_z': window must be within \[20, 100000\], not 5"):
        node.retune(window=5)
    with pytest.raises(ConfigError, match=r"no parameters \['windw'\]"):
        node.retune(windw=50)
    with pytest.raises(ValueError, match="window"):
        node.params.window = 5  # a widget's path: param refuses it as well
    assert not node.pending and node.params.window == 2000
    with pytest.raises(ConfigError, match="damp must be within"):
        ScoreNode(Stream(), "robust_z", by="host", params={"damp": 2.0})


def test_params_are_generated_for_any_detector_class():
    params = detector_params(Spy)(scale=7)
    assert params.param.scale.bounds == (1, 1000) and params.param.scale.doc == "Rows that make a score of 1."
    built: Any = params.build()
    assert isinstance(built, Spy) and built.scale == 7


def test_anomalous_rows_are_not_learned_until_a_change_lasts():
    rows = window_rows(100, hosts=1, shift_at=60)  # +25 from window 60 on, for good
    scorer = Scorer(RobustZScore(warm_up=10, holdoff=0), features=["cpu_mean"], by="host", skip_anomalies=5, drift=())
    scored, _ = scorer.process(rows)
    flags = scored["is_anomaly"].to_list()
    assert not any(flags[:60]) and all(flags[60:66])  # the shift, and 5 rows not learned after it
    run, learned = 0, 0
    for flag in flags:  # the 6th anomalous row in a row and the next are learned: the change lasts
        run = run + 1 if flag else 0
        learned += run == 0 or run > 5
    assert scorer.entities["h0"].model._row == learned and 60 + 30 <= learned < 100
    plain = Scorer(RobustZScore(warm_up=10, holdoff=0), features=["cpu_mean"], by="host", drift=())
    plain.process(rows)
    assert plain.entities["h0"].model._row == 100


def test_a_catalogue_factory_gives_the_defaults_of_its_parameters(monkeypatch):
    from workbench.models import detect

    monkeypatch.setitem(detect.DETECTORS, "spy_preset", lambda: Spy(scale=7))
    params = detector_params("spy_preset")()
    assert params.scale == 7 and params.detector_name == "spy_preset"
    node = ScoreNode(Stream(), "spy_preset", by="host")
    assert node.name == "score_spy_preset" and node.scorer.prototype.scale == 7


def test_raw_events_can_be_scored_where_a_user_asks():
    from workbench.testing import server_metrics_frame

    events = server_metrics_frame(400, hosts=2).with_columns(
        cpu=pl.when(pl.col("event_id") == "e399").then(100.0).otherwise(pl.col("cpu"))
    )
    pipe = Pipeline(FrameSource([events]), name="raw-scores")
    scored = (
        pipe.head.decode("server_metrics")
        .validate("server_metrics")
        .score("robust_z", features=["cpu"], by="host", time="ts", params={"holdoff": 0})
    )
    out = pipe.collect(scored)
    pipe.run()
    rows = pl.concat(out)
    assert rows.height == 400 and rows.filter("is_anomaly")["event_id"].to_list() == ["e399"]


def test_a_retune_from_another_thread_is_applied_on_the_pipeline_thread_between_batches(tmp_path):
    import threading
    import time

    from workbench import Simulator, Tumbling

    sim = Simulator("server_metrics", hosts=4, rate=200, realtime=True, speed=300, max_delay=0.05, seed=1)
    pipe = Pipeline(sim, name="retune-live", checkpoint_every="0.2s")
    lake = Lake(tmp_path / "lake")
    windows = pipe.standard("server_metrics", Tumbling("10s"), lateness="1s")
    scores = windows.score("robust_z", features=["cpu_mean", "count"], by="host", lake=lake)
    pipe.output("scores", scores)
    pipe.to_lake(lake, outputs=["windows"])
    rebuilt_on: list[str] = []
    rebuild = scores.scorer.rebuild
    scores.scorer.rebuild = lambda d: (rebuilt_on.append(threading.current_thread().name), rebuild(d))[1]
    out = pipe.collect("scores")
    pipe.start()
    try:
        deadline = time.monotonic() + 30
        while lake.last_epoch("windows") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        scores.params.window = 100  # as a widget does, from this (the UI's) thread
        while not scores.retunes and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = len(out)
        while len(out) < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pipe.stop()
    assert rebuilt_on == [f"workbench-{pipe.name}"]
    assert scores.retunes[0]["warmed"] > 0 and pipe.error is None
    assert all(e.model.window == 100 for e in scores.scorer.entities.values())


@settings(max_examples=30, deadline=None)
@given(
    hosts=st.lists(st.integers(0, 30), min_size=1, max_size=200),
    gaps=st.lists(st.integers(0, 400), min_size=1, max_size=200),
    bound=st.integers(1, 12),
)
def test_the_entity_table_never_exceeds_its_bound_and_only_idle_entities_expire(hosts, gaps, bound):
    scorer = Scorer(RobustZScore(), features=["cpu_mean"], by="host", idle="10m", max_entities=bound, drift=())
    t = 0
    for host, gap in zip(hosts, gaps, strict=False):
        t += gap
        row = pl.DataFrame(
            {"host": [f"h{host}"], "window_end": [T0 + timedelta(seconds=t)], "cpu_mean": [1.0]},
            schema_overrides={"window_end": pl.Datetime("ms", "UTC")},
        )
        scorer.process(row)
        assert scorer.state_size <= bound
        assert f"h{host}" in scorer.entities  # the row just seen is always held
        newest = max(e.last_seen for e in scorer.entities.values())
        assert all(newest - e.last_seen <= 600_000 for e in scorer.entities.values())


def test_a_snapshot_never_aliases_live_state():
    scorer = Scorer(RobustZScore(warm_up=5), features=["cpu_mean"], by="host", drift=("adwin",))
    rows = window_rows(40, hosts=2)
    scorer.process(rows[:40])
    snap = scorer.snapshot()
    expected, _ = Scorer(RobustZScore(warm_up=5), features=["cpu_mean"], by="host", drift=("adwin",)).process(rows)
    scorer.process(rows[40:60])  # mutate the live state after the snapshot
    again = Scorer(RobustZScore(), features=["cpu_mean"], by="host")
    again.restore(snap)
    tail, _ = again.process(rows[40:])
    assert tail.equals(expected[40:])


def test_a_detection_names_the_metric_that_drove_it():
    """A detector that explains its score (the default ``context``) gives each detection its metric."""
    from workbench.models.context import ContextDetector

    rows = window_rows(400, hosts=2, seed=4)
    cpu = rows["cpu_mean"].to_numpy().copy()
    cpu[rows.height - 20] = 500.0  # one host's cpu far beyond anything seen: a detection on cpu
    rows = rows.with_columns(pl.Series("cpu_mean", cpu))
    scored, _ = Scorer(ContextDetector(), features=["cpu_mean", "count"], by="host", drift=()).process(rows)
    hits = scored.filter("is_anomaly")
    assert hits.height > 0 and scored["anomaly_metric"].dtype == pl.String
    assert hits.row(by_predicate=pl.col("cpu_mean") == 500.0, named=True)["anomaly_metric"] == "cpu_mean"
    assert hits["anomaly_metric"].null_count() == 0  # every detection names one
    assert scored.filter(~pl.col("is_anomaly"))["anomaly_metric"].null_count() == scored.height - hits.height
    plain, _ = Scorer(RobustZScore(), features=["cpu_mean"], by="host", drift=()).process(rows)
    assert "anomaly_metric" not in plain.columns  # a detector that does not explain adds no column


@pytest.mark.parametrize("detector", ["robust_z", "context"])
def test_a_level_held_500_rows_stays_anomalous_until_it_recovers(detector):
    """With ``sustain`` a held fault stays flagged throughout; without it the detector learns it as normal."""
    from workbench.models.catalog import DETECTORS

    rows = window_rows(1000, hosts=1, seed=2)
    k = np.arange(rows.height)
    fault = (k >= 300) & (k < 800)  # a level 25 above normal, held for 500 rows, then recovered
    rows = rows.with_columns(pl.Series("cpu_mean", rows["cpu_mean"].to_numpy() + np.where(fault, 25.0, 0.0)))

    def flags(**options) -> np.ndarray:
        scorer = Scorer(DETECTORS[detector](), features=["cpu_mean"], by="host", drift=(), **options)
        return scorer.process(rows)[0]["is_anomaly"].to_numpy()

    held, plain = flags(sustain=1000), flags()
    onset = int(np.flatnonzero(held & fault)[0])
    assert onset <= 305  # found at its start
    assert held[onset:800].all()  # and flagged on every row it lasts
    assert held[820:].mean() < 0.05  # recovered: the state closed (a stray detection of noise aside)
    assert plain[300:800].mean() < 0.5  # without it the new level soon passes for normal
    with pytest.raises(ConfigError, match="sustain must be >= 0 rows, not -1"):
        Scorer(RobustZScore(), sustain=-1)
