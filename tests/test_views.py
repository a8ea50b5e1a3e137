"""The live views, headless: what they draw, what they hold, what they release."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import polars as pl
import pytest
from bokeh.document import Document
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import Pipeline, Tumbling
from workbench.testing import FrameSource, server_metrics_frame


@pytest.fixture
def fed():
    """A pipeline over 2 minutes of 4 hosts (h0 runs hot), run to the end, and its feed."""
    from workbench.feeds.feed import Feed

    frames = [server_metrics_frame(1200, hosts=4).slice(i, 300) for i in range(0, 1200, 300)]
    pipe = Pipeline(FrameSource(frames), name="views-test")
    pipe.standard("server_metrics", Tumbling("10s"), lateness="0s")
    feed = Feed(pipe)
    pipe.run()
    pipe.flush()
    return pipe, feed


def _render(view):
    layout = view.__panel__()
    layout.get_root(Document())
    view.refresh()
    return layout


def test_feed_bands_entities_top_and_kpis(fed):
    _, feed = fed
    assert feed.entities() == ["h0", "h1", "h2", "h3"]
    assert feed.top("cpu_mean", 1) == ["h0"]  # the hot host
    _, bands = feed.bands.since(0)
    windows = feed.windows.latest()
    assert bands.height == windows["window_start"].n_unique()
    one = windows.filter(pl.col("window_start") == windows["window_start"].min())
    assert bands["cpu_mean__p50"][0] == pytest.approx(one["cpu_mean"].median())
    k = feed.kpis()
    assert k.ingested == 1200 and k.windows == windows.height and k.dead_letters == 0
    assert k.open_alerts is None  # no alerting configured: shown as "–", not as 0


def test_series_draws_top_n_then_chosen_entities_and_marks_outliers(fed):
    from workbench.views import MetricSeries

    _, feed = fed
    series = MetricSeries(feed, metric="cpu_mean", top_n=2, threshold=2.0)
    _render(series)
    assert series.drawn[0] == "h0" and len(series.drawn) == 2
    assert series.points == feed.windows.latest()["window_start"].n_unique()
    data = series._buf.data
    assert data["v0"].notna().all()  # the hot host's line has every window
    assert len(series._marks_buf.data) > 0  # h0 is far above the fleet: marked
    series.entities = ["h3"]
    assert series.drawn == ["h3"] and "chosen — h3" in series.caption.object
    series.metric = "latency_p95"
    assert series._buf.data.columns.tolist()[:4] == ["window_start", "low", "median", "high"]


def test_selectors_accept_a_metric_before_the_first_window():
    from workbench.feeds.feed import Feed
    from workbench.views import EntityHeatmap, MetricSeries

    pipe = Pipeline(FrameSource([]), name="views-empty")
    pipe.standard("server_metrics", Tumbling("10s"))
    feed = Feed(pipe)
    assert MetricSeries(feed, metric="error_rate").metric == "error_rate"
    assert EntityHeatmap(feed, metric="latency_p99").metric == "latency_p99"


def test_dashboard_renders_with_no_data_yet_then_fills(fed):
    from workbench.feeds.feed import Feed
    from workbench.views import Dashboard

    empty = Pipeline(FrameSource([]), name="views-empty-dash")
    empty.standard("server_metrics", Tumbling("10s"))
    _render(Dashboard(Feed(empty)))  # no window yet: nothing raises

    _, feed = fed
    dash = Dashboard(feed)
    _render(dash)
    assert dash.series.points > 0
    assert len(dash.latest.table.value) == 4  # one row per host in the latest window
    assert dash.heatmap.source.data["y"]  # cells drawn
    assert "dedupe" in dash.pipeline.svg.object
    assert dash.kpis.cards["events"].object.count("1,200") == 1

    # A heatmap click arrives as the cell the browser showed (label, time): that entity, paused there.
    label, t = dash.heatmap.source.data["y"][0], float(dash.heatmap.source.data["t"][0])
    dash.heatmap.tap.tags = [label, t, 1]
    at = datetime.fromtimestamp(t / 1000, UTC)
    assert dash.heatmap.picked == (label, at)
    assert dash.series.entities == [label] and dash.timerange.focus == at and not dash.timerange.live
    dash.heatmap.tap.tags = ["nonsense"]  # not a cell: nothing happens
    assert dash.heatmap.picked == (label, at)


def test_dead_letter_view_lists_reasons_and_raw_records():
    from workbench.feeds.feed import Feed
    from workbench.views import DeadLetters

    good = b'{"event_id":"a","ts":1700000000000,"host":"h","cpu":1,"mem":1,"latency_ms":1,"status":200}\n'
    bad = b'{"event_id":"b","ts":1700000000000,"host":"h","cpu":"12.5","mem":1,"latency_ms":1,"status":200}\n'
    pipe = Pipeline(FrameSource([good + bad + b"not json\n"]), name="views-dead")
    pipe.standard("server_metrics", Tumbling("10s"))
    feed = Feed(pipe)
    pipe.run()
    view = DeadLetters(feed)
    _render(view)
    table = view.table.value
    assert view.shown == 2
    assert table["raw"].str.contains('"12.5"').any()
    assert table["reason"].str.contains("cpu").any()
    assert view.kinds.value["count"].sum() == 2


def test_subscriptions_are_released_and_stores_are_bounded(fed):
    from workbench.feeds.live import LiveFrame
    from workbench.views import Dashboard

    _, feed = fed
    dash = Dashboard(feed)
    dash.attach()
    assert feed.subscriptions == 7  # the dashboard and its six views
    dash.close()
    dash.close()  # idempotent
    assert feed.subscriptions == 0

    store = LiveFrame(max_rows=10)
    for i in range(100):
        store.append(pl.DataFrame({"x": [i, i]}))
    assert store.rows == 10 and store.latest()["x"].to_list()[-2:] == [99, 99]


def test_health_route_counts_pipelines_and_views():
    code = (
        "from workbench.apps.routes import process_stats; from workbench.pipeline import Pipeline\n"
        "s = process_stats(); assert s['rss_mb'] > 0 and s['cpu_s'] > 0; print(Pipeline.instances())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


class _Quiet(FrameSource):
    """Delivers its frames, then stays connected and silent until stopped (a source that stopped sending)."""

    bulk = False  # type: ignore[assignment]

    def _batches(self):
        yield from super()._batches()
        while not self.stopped:
            time.sleep(0.02)


def test_stale_banner_says_since_when(fed):
    from workbench.clock import ManualClock
    from workbench.feeds.feed import Feed
    from workbench.views import Dashboard

    clock = ManualClock()
    pipe = Pipeline(_Quiet([server_metrics_frame(200)], clock=clock), name="views-stale")
    pipe.standard("server_metrics", Tumbling("10s"))
    feed = Feed(pipe, stale_after=10)
    dash = Dashboard(feed)
    _render(dash)
    pipe.start()
    deadline = time.time() + 10
    while pipe.batches == 0 and time.time() < deadline:
        time.sleep(0.02)
    dash.refresh()
    assert not dash.banner.visible
    clock.advance(30)  # 30 s without a batch
    time.sleep(0.3)  # the KPI snapshot is cached for 0.2 s
    dash.refresh()
    pipe.stop()
    assert dash.banner.visible
    assert "Data stale since" in dash.banner.object and "no batch from" in dash.banner.object


def test_sweep_frees_sessions_whose_connections_all_died():
    from types import SimpleNamespace

    from workbench.apps.routes import sweep

    class Connection:  # hashable, like Bokeh's
        def __init__(self, socket):
            self._socket = socket

    class Session:
        def __init__(self, *sockets):
            self._subscribed_connections = {Connection(s) for s in sockets}

        def unsubscribe(self, connection):
            self._subscribed_connections.discard(connection)

    open_, closed = SimpleNamespace(ws_connection=object()), SimpleNamespace(ws_connection=None)
    ghost, live, mixed = Session(closed), Session(open_), Session(open_, closed)
    assert sweep([ghost, live, mixed]) == 1
    assert not ghost._subscribed_connections  # Bokeh's cleanup can now discard it
    assert len(live._subscribed_connections) == 1 and len(mixed._subscribed_connections) == 2


def test_top_n_keeps_an_incident_within_the_range_after_it_ends():
    """The quietest host spikes for 30 s early on: it stays in the top N while the spike is in the range."""
    from datetime import timedelta

    from workbench.feeds.feed import Feed

    base = server_metrics_frame(3000, hosts=6)  # 5 minutes, h0 runs hot throughout
    quiet = base.group_by("host").agg(pl.col("cpu").mean()).sort("cpu")["host"][0]
    start = base["ts"].min()
    spike = (pl.col("host") == quiet) & pl.col("ts").is_between(
        start + timedelta(seconds=30), start + timedelta(seconds=60), closed="left"
    )
    frame = base.with_columns(pl.when(spike).then(99.0).otherwise(pl.col("cpu")).alias("cpu"))
    pipe = Pipeline(FrameSource([frame.slice(i, 500) for i in range(0, 3000, 500)]), name="views-top-recent")
    pipe.standard("server_metrics", Tumbling("10s"), lateness="0s")
    feed = Feed(pipe)
    pipe.run()
    newest = feed.newest
    assert quiet not in feed.top("cpu_mean", 2)  # the latest window alone forgets the incident …
    assert quiet in feed.top_recent("cpu_mean", 2, newest - timedelta(minutes=5), newest)  # … the range keeps it
    assert quiet not in feed.top_recent("cpu_mean", 2, newest - timedelta(seconds=60), newest)  # until it leaves


def test_units_and_labels_come_from_the_schema(fed):
    _, feed = fed
    assert feed.column("cpu_mean").title() == "cpu_mean [%]"
    assert feed.column("latency_p99").unit == "ms" and feed.column("error_rate").unit == "ratio"
    assert feed.column("rate_mean", "node_network_receive_bytes_total").unit == "B/s"
    assert feed.default_metric() == "cpu_mean"


@settings(max_examples=200, deadline=None)
@given(
    max_rows=st.integers(1, 3_000),
    sizes=st.lists(st.integers(0, 40), max_size=200),
    seen=st.integers(0, 250),
    last=st.integers(0, 30),
)
def test_a_live_frame_merging_small_frames_answers_every_version_exactly(max_rows, sizes, seen, last):
    """Old frames are merged into chunks; ``since``, ``tail`` and the bound are as if they were not."""
    from workbench.feeds.live import LiveFrame

    store, appended, n = LiveFrame(max_rows=max_rows), [], 0
    for h in sizes:
        store.append(pl.DataFrame({"x": list(range(n, n + h))}))
        appended += [(store.version, x) for x in range(n, n + h)]
        n += h
    held = appended[-max_rows:]
    assert store.rows == len(held)
    version, rows = store.since(seen)
    assert version == store.version
    assert (rows["x"].to_list() if rows.height else []) == [x for v, x in held if v > seen]
    _, rows = store.tail(last)
    assert (rows["x"].to_list() if rows.height else []) == [x for v, x in held if v > store.version - last]
    assert len(store._chunks) <= 2 * 16 + max(1, len(held) // store._chunk_rows + 2)  # merged, not one per batch
