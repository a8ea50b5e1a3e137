"""Alert views headless: the table with feedback actions, the timeline, the detail, the dashboard tab."""

from __future__ import annotations

import pytest
from bokeh.document import Document

from workbench import Pipeline, Tumbling
from workbench.alerts.dispatch import Route
from workbench.alerts.rules import Threshold
from workbench.testing import FrameSource, server_metrics_frame


@pytest.fixture
def alerting(tmp_path):
    from workbench.alerts.store import DuckDBStore
    from workbench.feeds.feed import Feed

    frames = [server_metrics_frame(1200, hosts=4).slice(i, 300) for i in range(0, 1200, 300)]
    pipe = Pipeline(FrameSource(frames), name="alert-views-test")
    pipe.standard("server_metrics", Tumbling("10s"), lateness="0s")
    store = DuckDBStore(tmp_path / "a.duckdb")
    node = pipe.alerts(
        [Threshold("hot", metric="cpu_mean", value=0, severity="critical")],  # every host is "hot"
        routes=[Route(receivers=("ops",), group_wait=0)],
        store=store,
    )
    feed = Feed(pipe)
    pipe.run()
    yield node.manager, feed, store
    store.close()


def _render(view):
    layout = view.__panel__()
    layout.get_root(Document())
    view.refresh()
    return layout


def test_table_lists_active_alerts_and_records_feedback(alerting):
    from workbench.views import AlertsTable

    manager, feed, store = alerting
    table = AlertsTable(feed, redraw_every=0.25)
    _render(table)
    assert sorted(table.table.value["fingerprint"]) == ["hot/h0", "hot/h1", "hot/h2", "hot/h3"]
    assert set(table.table.value["state"]) == {"firing"}
    first = table.shown["fingerprint"][0]
    table.table.selection = [0]
    table.user, table.note = "ana", "checked"
    table.acknowledge(table)
    table.false_positive(table)
    assert store.feedback().select("fingerprint", "label", "by_whom").rows() == [
        (first, "acknowledged", "ana"),
        (first, "false_positive", "ana"),
    ]
    assert table.table.value.set_index("fingerprint").loc[first, "acknowledged_by"] == "ana"
    assert "0%" in table.precision.object
    table.min_severity = "page"
    assert len(table.table.value) == 0


def test_timeline_and_detail_show_episodes_and_evidence(alerting):
    from workbench.views import AlertDetail, AlertTimeline

    manager, feed, _ = alerting
    timeline = AlertTimeline(feed, manager)
    _render(timeline)
    assert timeline.drawn == 4
    detail = AlertDetail(feed, manager)
    _render(detail)
    assert detail.fingerprint in {"hot/h0", "hot/h1", "hot/h2", "hot/h3"}  # the first active alert, chosen
    detail.fingerprint = "hot/h0"
    assert "hot on h0" in detail.head.object and "critical" in detail.head.object
    ev = detail.evidence.value
    assert len(ev) > 0 and set(ev["host"]) == {"h0"} and "cpu_mean" in ev.columns
    assert list(detail.history.value["to_state"]) == ["firing"]


def test_dashboard_gets_an_alerts_tab_and_feeds_the_kpi(alerting):
    from workbench.views import Dashboard

    manager, feed, _ = alerting
    dash = Dashboard(feed)
    _render(dash)
    assert [t for t in dash.tabs._names] == ["Latest windows", "Dead letters", "Alerts"]
    assert feed.kpis().open_alerts == manager.open_alerts() == 4
    dash.tabs.active = 2
    dash.refresh()
    dash.close()


def test_detail_fetches_the_raw_events_behind_the_evidence_off_the_ui_loop(tmp_path):
    import time

    from workbench import Lake
    from workbench.feeds.feed import Feed
    from workbench.operators import aggregations as agg
    from workbench.views import AlertDetail

    frames = [server_metrics_frame(1200, hosts=4).slice(i, 300) for i in range(0, 1200, 300)]
    pipe = Pipeline(FrameSource(frames), name="alert-raw-test")
    valid = pipe.head.decode("server_metrics").validate("server_metrics").dedupe("event_id")
    pipe.output("events", valid)
    pipe.output("windows", valid.window(Tumbling("10s"), by="host", aggs=[agg.count(), agg.mean("cpu")], lateness="0s"))
    lake = Lake(tmp_path / "lake")
    pipe.to_lake(lake, outputs=["events", "windows"])
    node = pipe.alerts([Threshold("hot", metric="cpu_mean", value=0)])
    feed = Feed(pipe)
    pipe.run()
    detail = AlertDetail(feed, node.manager, lake=lake, redraw_every=0.25)
    _render(detail)
    detail.fingerprint = "hot/h1"
    deadline = time.time() + 20
    while (detail.raw.value is None or len(detail.raw.value) == 0) and time.time() < deadline:
        time.sleep(0.3)
        detail._redraw_now()
    raw = detail.raw.value
    assert len(raw) > 0 and set(raw["host"]) == {"h1"} and "event_id" in raw.columns
    ev = detail.evidence.value
    assert raw["ts"].min() >= ev["window_start"].min() and raw["ts"].max() < ev["window_end"].max()


def test_an_alert_on_scores_shows_the_metric_that_drove_it():
    """The table and the detail name the metric behind the detections (``anomaly_metric``)."""
    from workbench.feeds.feed import Feed
    from workbench.models.detectors import Detector
    from workbench.views import AlertDetail, AlertsTable

    class Hot(Detector):
        """Scores 1 when a feature is above ``level``, and names the highest feature."""

        explains = True

        def __init__(self, level: float = 60.0) -> None:
            super().__init__(level=level)

        def score_one(self, x: dict[str, float]) -> float:
            self.evidence = max(sorted(x), key=lambda k: x[k])
            return 1.0 if x[self.evidence] > self.level else 0.0

        def learn_one(self, x: dict[str, float]) -> None:
            pass

    raw = server_metrics_frame(1200, hosts=4)  # h0's cpu runs near 70, the others' near 30, memory near 50
    pipe = Pipeline(FrameSource([raw.slice(i, 300) for i in range(0, 1200, 300)]), name="alert-drivers")
    windows = pipe.standard("server_metrics", Tumbling("10s"), lateness="0s")
    pipe.output("scores", windows.score(Hot, features=["cpu_mean", "mem_mean"], by="host", name="scores"))
    rule = Threshold("anomalous", metric="anomaly_score", value=0.5, severity="warning")
    node = pipe.alerts([rule], routes=[Route(receivers=("ops",), group_wait=0)], upstream="scores")
    feed = Feed(pipe)
    pipe.run()
    assert node.manager.drivers("anomalous/h0") == [("cpu_mean", 1)]
    table = AlertsTable(feed, node.manager, redraw_every=0.25)
    _render(table)
    shown = table.table.value.set_index("fingerprint")
    assert shown.loc["anomalous/h0", "driven_by"] == "cpu_mean" and table.table.hidden_columns == []
    detail = AlertDetail(feed, node.manager, fingerprint="anomalous/h0")
    _render(detail)
    assert "driven by cpu_mean (1 window)" in detail.head.object
    assert list(detail.evidence.value.columns[:3]) == ["is_anomaly", "anomaly_score", "anomaly_metric"]


def test_an_alert_on_windows_names_no_driver(alerting):
    from workbench.views import AlertsTable

    manager, feed, _ = alerting
    table = AlertsTable(feed, manager, redraw_every=0.25)
    _render(table)
    assert set(table.table.value["driven_by"]) == {""} and table.table.hidden_columns == ["driven_by"]
    assert manager.drivers("hot/h0") == [] and manager.drivers("gone/h0") == []


def test_the_timeline_says_which_span_it_shows_and_when_it_is_paused(alerting):
    from workbench.views import AlertTimeline
    from workbench.views.timerange import TimeRange

    manager, feed, _ = alerting
    timeline = AlertTimeline(feed, manager, timerange=TimeRange())
    _render(timeline)
    assert timeline.figure.title.text.startswith("Alert states ") and timeline.figure.title.text.endswith(" UTC")
    timeline.timerange.live = False  # a drill-down pauses the range
    assert timeline.figure.title.text.endswith(" UTC · paused")


def test_the_range_says_where_the_held_data_begins(alerting):
    from datetime import UTC, datetime

    from workbench.views import Dashboard

    _, feed, _ = alerting  # windows of 2024-01-01 00:00 to 00:02 UTC
    dash = Dashboard(feed)
    _render(dash)
    assert dash.range_text.object.endswith(" UTC · live**")
    assert dash.held_text.object == "*nothing held before 00:00:00*"
    dash.timerange.custom = (datetime(2023, 12, 31, 9, tzinfo=UTC), datetime(2023, 12, 31, 10, tzinfo=UTC))
    dash.timerange.span = "custom"
    assert dash.held_text.object == "*nothing held in this range (data from 2024-01-01 00:00:00)*"
    dash.timerange.custom = (datetime(2024, 1, 1, 0, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, 2, tzinfo=UTC))
    assert dash.held_text.object == ""
    dash.close()
