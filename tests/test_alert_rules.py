"""Rule tests in the style of ``promtool test rules``: series in, transitions and notifications out."""

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.alerts.dispatch import Inhibit, Route
from workbench.alerts.loader import load_config
from workbench.alerts.manager import AlertManager
from workbench.alerts.rules import Absence, AnomalyScore, Drift, ForecastDeviation, RateOfChange, Threshold
from workbench.errors import ConfigError

STEP = 10_000  # 10 s windows


def AM(*args, **kwargs):  # noqa: N802 - these tests evaluate once per 10 s window
    return AlertManager(*args, evaluation_interval="10s", **kwargs)


def series(**hosts: str) -> list[pl.DataFrame]:
    """``series(a="1 1 95 95", b="_ 3 3")``: one frame per 10 s window; ``_`` = no window for that host."""
    values = {h: s.split() for h, s in hosts.items()}
    n = max(len(v) for v in values.values())
    frames = []
    for i in range(n):
        rows = [(h, float(v[i])) for h, v in values.items() if i < len(v) and v[i] != "_"]
        frames.append(
            pl.DataFrame(
                {
                    "host": [r[0] for r in rows],
                    "window_end": [(i + 1) * STEP] * len(rows),
                    "cpu_mean": [r[1] for r in rows],
                },
                schema={"host": pl.String, "window_end": pl.Int64, "cpu_mean": pl.Float64},
            )
        )
    return frames


def run(am: AlertManager, frames: list[pl.DataFrame]) -> list[tuple[int, str, str]]:
    """Feed windows one at a time; (window number, fingerprint, to_state) of every transition."""
    out = []
    for frame in frames:
        ev = am.process(frame)
        out += [
            (int(r["at"].timestamp() * 1000) // STEP, r["fingerprint"], r["to_state"]) for r in ev.iter_rows(named=True)
        ]
    return out


def notes(am: AlertManager) -> list[tuple[int, str, list[tuple[str, str]]]]:
    from datetime import datetime

    return [
        (
            int(datetime.fromisoformat(n["at"]).timestamp() * 1000) // STEP,
            n["status"],
            [(a["fingerprint"], a["status"]) for a in n["alerts"]],
        )
        for n in am.notifications
    ]


HOT = Threshold("hot", metric="cpu_mean", value=90)
NOW = Route(receivers=("ops",), group_wait=0, group_interval="10s", repeat_interval="1h")


def test_for_holds_pending_until_the_duration_passes():
    am = AM([HOT.with_(for_="30s")], routes=[NOW])
    assert run(am, series(a="95 95 95 95 95 10")) == [
        (1, "hot/a", "pending"),
        (4, "hot/a", "firing"),
        (6, "hot/a", "resolved"),
    ]


def test_pending_that_stops_matching_goes_back_to_inactive_without_a_notification():
    am = AM([HOT.with_(for_="30s")], routes=[NOW])
    assert run(am, series(a="95 95 10 95")) == [
        (1, "hot/a", "pending"),
        (3, "hot/a", "inactive"),
        (4, "hot/a", "pending"),
    ]
    assert am.notifications == deque_empty()


def deque_empty():
    from collections import deque

    return deque(maxlen=10_000)


def test_keep_firing_for_bridges_a_short_dip_and_resolves_after_a_long_one():
    am = AM([HOT.with_(keep_firing_for="20s")], routes=[NOW])
    # fires at 1; dips at 2 (kept: 0 s < 20 s since the first miss), matches at 3; misses from 4 on: kept
    # at 4 and 5, resolved at 6 (20 s after the first miss at 4, as Prometheus counts keep_firing_for)
    assert run(am, series(a="95 10 95 10 10 10")) == [(1, "hot/a", "firing"), (6, "hot/a", "resolved")]
    assert [n[1] for n in notes(am)] == ["firing", "resolved"]


def test_without_keep_firing_for_the_same_series_flaps():
    am = AM([HOT], routes=[NOW])
    assert [s for _, _, s in run(am, series(a="95 10 95 10"))] == ["firing", "resolved", "firing", "resolved"]


def test_grouping_one_notification_per_group_after_group_wait():
    route = Route(receivers=("ops",), group_wait="20s", group_interval="30s", repeat_interval="1h")
    am = AM([HOT], routes=[route])
    run(am, series(a="95 95 95 95 95 95 95 95", b="10 95 95 95 95 95 95 95", c="10 10 10 95 95 95 95 95"))
    # a fires at 1 → group waits until 3; b joined meanwhile; c fires at 4 → next flush at 3 + 3 = 6
    assert notes(am) == [
        (3, "firing", [("hot/a", "firing"), ("hot/b", "firing")]),
        (6, "firing", [("hot/a", "firing"), ("hot/b", "firing"), ("hot/c", "firing")]),
    ]


def test_group_by_entity_gives_one_group_per_host():
    route = Route(receivers=("ops",), group_by=("alertname", "host"), group_wait=0, repeat_interval="1h")
    am = AM([HOT], routes=[route])
    run(am, series(a="95", b="95"))
    assert sorted(n["group_labels"]["host"] for n in am.notifications) == ["a", "b"]


def test_one_notification_per_receiver():
    am = AM([HOT], routes=[Route(receivers=("ops", "log"), group_wait=0)])
    run(am, series(a="95"))
    assert [n["receiver"] for n in am.notifications] == ["ops", "log"]
    assert am.notifications[0]["id"] != am.notifications[1]["id"]


def test_repeat_interval_resends_while_firing_and_ack_stops_it():
    route = Route(receivers=("ops",), group_wait=0, group_interval="10s", repeat_interval="30s")
    am = AM([HOT], routes=[route])
    run(am, series(a="95 95 95 95 95 95 95"))
    assert [n[0] for n in notes(am)] == [1, 4, 7]
    am.acknowledge("hot/a", by="ana", note="looking")
    run(am, [f.with_columns(pl.col("window_end") + 7 * STEP) for f in series(a="95 95 95 95 95 95")])
    assert [n[0] for n in notes(am)] == [1, 4, 7]  # acknowledged: no repeat
    assert am.active()["acknowledged_by"].to_list() == ["ana"]


def test_resolved_is_sent_only_for_an_alert_whose_firing_was_sent():
    route = Route(receivers=("ops",), group_wait="30s", group_interval="10s")
    am = AM([HOT], routes=[route])
    run(am, series(a="95 10 10 10 10"))  # fires and resolves inside group_wait
    assert notes(am) == []


def test_inhibition_mutes_children_of_a_firing_parent_with_equal_labels():
    rules = [
        Threshold("host_down", metric="cpu_mean", op="<", value=1, severity="critical"),
        Threshold("cpu_low", metric="cpu_mean", op="<", value=5, severity="warning"),
    ]
    inhibit = [Inhibit(('severity="critical"',), ('severity="warning"',), ("host",))]
    am = AM(rules, routes=[Route(receivers=("ops",), group_by=("...",), group_wait=0)], inhibit=inhibit)
    run(am, series(a="0", b="3"))
    sent = sorted(a["fingerprint"] for n in am.notifications for a in n["alerts"])
    assert sent == ["cpu_low/b", "host_down/a"]  # cpu_low/a is inhibited by host_down/a
    assert am.active().filter(pl.col("fingerprint") == "cpu_low/a")["muted"].to_list() == ["inhibited"]


def test_silence_mutes_until_it_expires_then_the_alert_is_sent():
    am = AM([HOT], routes=[Route(receivers=("ops",), group_wait=0, group_interval="10s")])
    am.silence(['host="a"'], duration="25s", by="ana", comment="maintenance", starts_at=0)
    run(am, series(a="95 95 95 95", b="_ 95 95 95"))
    assert notes(am) == [
        (2, "firing", [("hot/b", "firing")]),
        (3, "firing", [("hot/a", "firing"), ("hot/b", "firing")]),
    ]


def test_absence_fires_for_a_silent_entity_in_event_time_and_resolves_when_it_returns():
    am = AM([Absence("silent", after="30s")], routes=[NOW])
    trans = run(am, series(a="1 1 1 1 1 1 1 1", b="1 1 _ _ _ _ 1 1"))
    assert trans == [(5, "silent/b", "firing"), (7, "silent/b", "resolved")]
    assert am.notifications[0]["alerts"][0]["summary"] == "silent: no data from b for 30 s"


def test_source_absence_is_a_dead_mans_switch_driven_by_advance():
    am = AM([Absence("no_data", after="1m", scope="source", severity="page")], routes=[NOW])
    run(am, series(a="1 1"))
    assert am.advance(50_000).height == 0
    ev = am.advance(80_000)
    assert ev.select("fingerprint", "to_state").rows() == [("no_data/*", "firing")]


def test_rate_of_change_between_consecutive_windows():
    am = AM([RateOfChange("jump", metric="cpu_mean", limit=2.0)], routes=[NOW])  # > 2 per second
    assert run(am, series(a="10 15 40 41 41")) == [(3, "jump/a", "firing"), (4, "jump/a", "resolved")]


def test_anomaly_score_uses_is_anomaly_or_min_score():
    frame = pl.DataFrame(
        {
            "host": ["a", "b", "c"],
            "window_end": [STEP] * 3,
            "anomaly_score": [0.9, 0.7, 0.1],
            "is_anomaly": [True, False, False],
        }
    )
    assert AM([AnomalyScore("anom")]).process(frame)["entity"].to_list() == ["a"]
    assert sorted(AM([AnomalyScore("anom", min_score=0.5)]).process(frame)["entity"]) == ["a", "b"]
    # a frame without scores (no score node): the rule is not evaluated, nothing resolves
    am = AM([AnomalyScore("anom")])
    am.process(frame)
    assert am.process(pl.DataFrame({"host": ["a"], "window_end": [2 * STEP]})).height == 0


def test_forecast_deviation_absolute_and_relative():
    frame = pl.DataFrame(
        {"host": ["a", "b"], "window_end": [STEP] * 2, "cpu_mean": [50.0, 12.0], "cpu_mean_forecast": [20.0, 10.0]}
    )
    assert AM([ForecastDeviation("fc", metric="cpu_mean", max_deviation=10)]).process(frame)["entity"].to_list() == [
        "a"
    ]
    rel = ForecastDeviation("fc", metric="cpu_mean", max_deviation=0.15, relative=True)
    assert sorted(AM([rel]).process(frame)["entity"]) == ["a", "b"]


def test_drift_event_fires_at_the_next_evaluation_and_resolves_after_keep_firing_for():
    am = AM([Drift("drift", feature="cpu_mean", keep_firing_for="20s")], routes=[NOW])
    am.process_drift(
        pl.DataFrame(
            {"host": ["a", "b"], "feature": ["cpu_mean", "mem"], "detector": ["adwin"] * 2, "ts": [15_000, 15_000]}
        )
    )
    # matches at 2 only; keep_firing_for counts from the first evaluation without it (3): resolved at 5
    assert run(am, series(a="1 1 1 1 1 1")) == [(2, "drift/a", "firing"), (5, "drift/a", "resolved")]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=12))
def test_results_do_not_depend_on_how_windows_are_batched(cuts):
    rules = [
        HOT.with_(for_="20s", keep_firing_for="10s"),
        Absence("silent", after="30s"),
        RateOfChange("jump", metric="cpu_mean", limit=3),
    ]
    frames = series(a="95 95 10 95 95 95 10 10 10 95", b="10 95 _ _ _ _ 95 95 10 10", c="50 50 99 99 99 99 1 1 1 1")
    route = Route(receivers=("ops",), group_wait="10s", group_interval="20s", repeat_interval="40s")
    one = AM(rules, routes=[route])
    for f in frames:
        one.process(f)
    batched = AM(rules, routes=[route])
    i = 0
    for n in cuts * 10:
        if i >= len(frames):
            break
        batched.process(pl.concat(frames[i : i + n]))
        i += n
    assert batched.recent_events().equals(one.recent_events())
    assert list(batched.notifications) == list(one.notifications)


def test_snapshot_restore_mid_stream_gives_identical_output():
    rules = [HOT.with_(for_="20s"), Absence("silent", after="30s")]
    frames = series(a="95 95 95 95 10 95 95", b="1 1 _ _ _ _ 1")
    route = Route(receivers=("ops",), group_wait="10s", group_interval="20s")
    full = AM(rules, routes=[route])
    for f in frames:
        full.process(f)
    first = AM(rules, routes=[route])
    for f in frames[:3]:
        first.process(f)
    snap = first.snapshot()
    before = list(first.notifications)
    first.process(frames[3])  # the live object moves on; the snapshot must not alias it
    second = AM(rules, routes=[route])
    second.restore(snap)
    for f in frames[3:]:
        second.process(f)
    assert full.notifications and before + list(second.notifications) == list(full.notifications)
    assert first.recent_events().equals(full.recent_events().head(first.recent_events().height))


def test_feedback_precision_and_callback():
    am = AM([HOT], routes=[NOW])
    seen = []
    am.on_feedback(lambda alert, label: seen.append((alert["fingerprint"], label)))
    run(am, series(a="95", b="95", c="95"))
    am.mark("hot/a", "true_positive", by="ana")
    am.mark("hot/b", "false_positive", by="ana")
    am.mark("hot/c", "true_positive", by="bo")
    assert am.precision() == pytest.approx(2 / 3)
    assert seen == [("hot/a", "true_positive"), ("hot/b", "false_positive"), ("hot/c", "true_positive")]
    with pytest.raises(ConfigError, match="label must be true_positive or false_positive, not 'meh'"):
        am.mark("hot/a", "meh", by="ana")


def test_rules_validate_fields_with_names_and_values():
    with pytest.raises(ConfigError, match="rule 'x': field 'severity' must be one of .* not 'urgent'"):
        Threshold("x", metric="cpu_mean", value=1, severity="urgent")
    with pytest.raises(ConfigError, match="rule 'x': field 'for': expected a duration .* not 'soon'"):
        Threshold("x", metric="cpu_mean", value=1, for_="soon")
    with pytest.raises(ConfigError, match="rule 'x': field 'op' must be one of"):
        Threshold("x", metric="cpu_mean", value=1, op="~")
    with pytest.raises(ConfigError, match="rule 'x': field 'summary' is not a valid template"):
        Threshold("x", metric="cpu_mean", value=1, summary="{nope}")


def test_yaml_config_round_trip_and_errors(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        """
defaults: {by: host}
rules:
  - {name: hot, kind: threshold, metric: cpu_mean, op: ">", value: 90, for: 30s, keep_firing_for: 1m,
     severity: critical, labels: {team: infra}, summary: "cpu {value:.0f}% on {entity}"}
  - {name: silent, kind: absence, after: 2m}
routes:
  - {receivers: [ops], matchers: ['severity="critical"'], group_by: [alertname, host], group_wait: 10s}
inhibit:
  - {source: ['severity="critical"'], target: ['severity="warning"'], equal: [host]}
receivers:
  ops: {kind: webhook, url: "http://127.0.0.1:1/hook"}
"""
    )
    cfg = load_config(path)
    assert cfg.rules[0] == Threshold(
        "hot",
        by="host",
        metric="cpu_mean",
        value=90,
        for_="30s",
        keep_firing_for="1m",
        severity="critical",
        labels={"team": "infra"},
        summary="cpu {value:.0f}% on {entity}",
    )
    assert cfg.routes[0].group_by == ("alertname", "host") and cfg.inhibit[0].equal == ("host",)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: hot, kind: threshold, metric: cpu_mean, value: 1, for: soon}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: rule 'hot': field 'for': expected a duration .* not 'soon'"):
        load_config(bad)
    bad.write_text("rules:\n  - {name: hot, kind: thresh}\n")
    with pytest.raises(ConfigError, match=r"rule 'hot': field 'kind' must be one of .* not 'thresh'"):
        load_config(bad)
    bad.write_text("rules:\n  - {name: hot, kind: threshold, metric: cpu_mean, value: 1, colour: red}\n")
    with pytest.raises(ConfigError, match="rule 'hot': unknown field 'colour'"):
        load_config(bad)
    bad.write_text("rules:\n  - {name: hot, kind: threshold, value: 1}\n")
    with pytest.raises(ConfigError, match="rule 'hot': missing field.*metric"):
        load_config(bad)
    bad.write_text(
        "rules:\n  - {name: a, kind: absence}\nroutes:\n  - {receivers: [nobody]}\n"
        "receivers: {ops: {kind: jsonl, path: x}}\n"
    )
    with pytest.raises(ConfigError, match="route receiver 'nobody' is not defined"):
        load_config(bad)


def test_expire_silence_lets_the_alert_through_at_the_next_flush():
    am = AM([HOT], routes=[Route(receivers=("ops",), group_wait=0, group_interval="10s")])
    s = am.silence('host="a"', duration="1h", starts_at=0)
    run(am, series(a="95 95"))
    assert notes(am) == []
    am.expire_silence(s.silence_id)
    assert not am.silences()[0].active(am.now_ms)
    run(am, [f.with_columns(pl.col("window_end") + 2 * STEP) for f in series(a="95")])
    assert notes(am) == [(3, "firing", [("hot/a", "firing")])]


def test_an_alert_never_inhibits_itself():
    inhibit = [Inhibit(('alertname="hot"',), ('alertname=~".*"',), ("host",))]
    am = AM([HOT], routes=[Route(receivers=("ops",), group_wait=0)], inhibit=inhibit)
    run(am, series(a="95"))
    assert [a["fingerprint"] for n in am.notifications for a in n["alerts"]] == ["hot/a"]


def test_drift_events_with_a_generic_entity_column():
    am = AM([Drift("drift")], routes=[NOW])
    am.process_drift(pl.DataFrame({"entity": ["b"], "feature": ["mem"], "detector": ["adwin"], "event_time": [5_000]}))
    assert run(am, series(b="1")) == [(1, "drift/b", "firing")]


def test_every_rule_kind_round_trips_through_its_dict():
    rules = [
        HOT.with_(for_="30s", labels={"team": "infra"}),
        AnomalyScore("anom", min_score=0.8),
        ForecastDeviation("fc", metric="cpu_mean", max_deviation=0.2, relative=True),
        RateOfChange("jump", metric="latency_p95", limit=50, absolute=False),
        Drift("drift", feature="cpu_mean"),
        Absence("silent", after="2m", scope="source", severity="page"),
    ]
    assert load_config({"rules": [r.to_dict() for r in rules]}).rules == tuple(rules)
