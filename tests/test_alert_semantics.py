"""The engine's Prometheus semantics through ``AlertManager``: the clock, lookback, staleness, identity."""

import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.alerts.dispatch import Route
from workbench.alerts.manager import AlertManager
from workbench.alerts.rules import Threshold
from workbench.alerts.series import STALE

M = 60_000
HOT = Threshold("hot", metric="cpu", value=90)
NOW = Route(receivers=("ops",), group_wait=0)


def rows(t_ms, **cpu):
    return pl.DataFrame({"host": list(cpu), "window_end": [t_ms] * len(cpu), "cpu": list(cpu.values())})


def states(events):
    return [
        (int(r["at"].timestamp() * 1000) // 1000, r["fingerprint"], r["to_state"]) for r in events.iter_rows(named=True)
    ]


def test_rules_run_on_the_evaluation_interval_not_at_every_window():
    # 30 s samples, true for one minute; a 1 m interval with for: 1m never fires (as in Prometheus)
    am = AlertManager([HOT.with_(for_="1m")], routes=[NOW])
    events = [am.process(rows(t * 30_000, a=v)) for t, v in enumerate([50, 95, 95, 95, 50, 50])]
    assert [s for e in events for s in states(e)] == [(60, "hot/a", "pending"), (120, "hot/a", "inactive")]


def test_advance_runs_every_rule_and_a_silent_series_leaves_after_the_lookback():
    am = AlertManager([HOT], routes=[NOW])
    assert states(am.process(rows(0, a=95.0))) == [(0, "hot/a", "firing")]
    assert am.advance(5 * M).height == 0  # the sample at 0 is still within [t - 5m, t]
    assert states(am.advance(6 * M)) == [(360, "hot/a", "resolved")]


def test_a_stale_marker_ends_the_series_at_once():
    am = AlertManager([HOT], routes=[NOW])
    am.process(rows(0, a=95.0))
    marker = pl.DataFrame(
        {"host": ["a"], "window_end": [M], "cpu": [None], STALE: ["cpu"]}, schema_overrides={"cpu": pl.Float64}
    )
    assert states(am.process(marker)) == [(60, "hot/a", "resolved")]


def test_a_gap_of_one_host_does_not_depend_on_other_hosts():
    alone, crowd = AlertManager([HOT.with_(for_="2m")]), AlertManager([HOT.with_(for_="2m")])
    for t, v in [(0, 95.0), (M, None), (2 * M, 95.0)]:
        if v is not None:
            alone.process(rows(t, a=v))
        crowd.process(rows(t, a=v, b=10.0) if v is not None else rows(t, b=10.0))
    assert alone.advance(2 * M).height == crowd.advance(2 * M).height == 0
    assert alone.active()["state"].to_list() == crowd.active()["state"].to_list() == ["firing"]


def test_an_alert_is_identified_by_every_label_of_its_series():
    am = AlertManager([HOT.with_(labels={"team": "infra"})], by=("host", "job"), routes=[NOW])
    frame = pl.DataFrame({"host": ["a", "a"], "job": ["api", "web"], "window_end": [0, 0], "cpu": [95.0, 99.0]})
    events = am.process(frame)
    labels = sorted(json.loads(x)["job"] for x in events["labels"])
    assert labels == ["api", "web"] and events.height == 2
    assert json.loads(events["labels"][0]) == {
        "alertname": "hot",
        "host": "a",
        "job": "api",
        "severity": "warning",
        "team": "infra",
    }
    assert am.evidence_for(events["fingerprint"][0]).height == 2  # the host's rows


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=12), st.sampled_from(["30s", "1m", "2m"]))
def test_results_do_not_depend_on_batching_or_the_interval_alignment(cuts, interval):
    rules = [HOT.with_(for_="1m", keep_firing_for="1m")]
    values = [95, 95, None, 95, 10, 95, None, None, None, None, None, None, None, None, 95, 95, 10, 10]
    frames = [rows(i * 20_000, a=v, b=100 - v) for i, v in enumerate(values) if v is not None]
    one = AlertManager(rules, routes=[NOW], evaluation_interval=interval)
    for f in frames:
        one.process(f)
    batched = AlertManager(rules, routes=[NOW], evaluation_interval=interval)
    i = 0
    for n in cuts * 10:
        if i >= len(frames):
            break
        batched.process(pl.concat(frames[i : i + n]))
        i += n
    assert batched.recent_events().equals(one.recent_events())
    assert batched.advance(20 * M).equals(one.advance(20 * M))


def test_a_late_sample_never_hides_a_newer_one():
    am = AlertManager([HOT], routes=[NOW])
    am.process(rows(M, a=95.0))
    assert am.active()["state"].to_list() == ["firing"]
    am.process(rows(30_000, a=10.0))  # late: older than the last evaluation and than the newest sample
    assert am.advance(2 * M).height == 0
    assert am.active()["state"].to_list() == ["firing"]
