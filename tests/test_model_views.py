"""The score view and the leaderboard, headless: what they draw and what they release."""

from __future__ import annotations

import operator
from datetime import timedelta

import polars as pl
from bokeh.document import Document
from test_model_nodes import T0, window_rows

from workbench import Pipeline
from workbench.sources.simulator.incidents import Incident, incidents_frame
from workbench.testing import FrameSource


def _scored_pipeline():
    from workbench.views import Feed, ScoreBoard

    rows = window_rows(120, hosts=3, seed=2)
    hot = (pl.col("host") == "h1") & pl.col("window_start").is_between(
        T0 + timedelta(seconds=900), T0 + timedelta(seconds=930)
    )
    rows = rows.with_columns(cpu_mean=pl.when(hot).then(95.0).otherwise(pl.col("cpu_mean")))
    pipe = Pipeline(FrameSource([rows[i : i + 60] for i in range(0, rows.height, 60)]), name="model-views")
    frames = pipe.head.map(operator.attrgetter("frame"))
    for name, window in (("scores", 2000), ("scores_short", 40)):
        pipe.output(
            name, frames.score("robust_z", features=["cpu_mean"], by="host", params={"window": window}, name=name)
        )
    labels = incidents_frame(
        [
            Incident(
                "i1", "cpu_saturation", "server_metrics", "h1", T0 + timedelta(seconds=900), T0 + timedelta(seconds=940)
            )
        ]
    )
    feed = Feed(pipe, output="scores", by="host")
    board = ScoreBoard(pipe, {"window=2000": "scores", "window=40": "scores_short"}, labels=labels, min_interval=0)
    return pipe, feed, board


def test_score_view_draws_the_latest_alarm_with_threshold_and_detections():
    from workbench.views import ScoreView

    pipe, feed, _ = _scored_pipeline()
    view = ScoreView(feed)
    layout = view.__panel__()
    layout.get_root(Document())
    assert view.shown is None and view.points == 0
    pipe.run()
    view.refresh()
    assert view.shown == "h1" and view.points == 120 and view.detections >= 1
    assert list(view._buf.data.columns) == ["window_end", "anomaly_score", "threshold"]
    pane = view.pane
    view.entity = "h0"  # another entity: same pane, new data
    assert view.pane is pane and view.shown == "h0" and view.points == 120
    view.close()
    assert feed.subscriptions == 0


def test_leaderboard_compares_the_detectors_on_the_same_stream():
    from workbench.views import Leaderboard

    pipe, feed, board = _scored_pipeline()
    view = Leaderboard(feed, board)
    view.__panel__().get_root(Document())
    pipe.run()
    view.refresh()
    table = view.table.value
    assert sorted(table["detector"]) == ["window=2000", "window=40"] and view.rows == 2
    best = table.iloc[0]
    assert best["detected"] == 1 and best["incidents"] == 1 and best["recall"] == 1.0
    assert best["mean_ttd_s"] == 10.0  # the first hot window ends 10 s after the incident starts
    version = board.version
    view.refresh()
    assert board.version == version  # nothing new: nothing re-sent
    board.close()
    view.close()
