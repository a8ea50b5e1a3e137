"""The alerts node in a pipeline: live = backtest, restart mid-group, the CLI."""

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from alert_servers import hook_server

import workbench as wb
from workbench.alerts.backtest import backtest, compare
from workbench.alerts.dispatch import Route
from workbench.alerts.notifiers import WebhookNotifier
from workbench.alerts.rules import Absence, RateOfChange, Threshold

from conftest import cli

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOSTS = 8


RULES = [
    Threshold("cpu_high", metric="cpu_mean", value=85, for_="2m", keep_firing_for="2m", severity="critical"),
    Threshold("errors", metric="error_rate", value=0.2, for_="1m", severity="warning"),
    Threshold("slow", metric="latency_p95", op=">", value=800, for_="2m", severity="warning"),
    RateOfChange("mem_jump", metric="mem_max", limit=0.05),
    Absence("silent", after="10m", severity="critical"),
]
ROUTE = Route(receivers=("hook",), group_by=("alertname",), group_wait="5m", group_interval="10m", repeat_interval="1h")


def simulate(tmp_path, *, events, hosts=HOSTS, rate=2.0):
    path = tmp_path / "sim.jsonl"
    wb.write_simulation(path, events=events, seed=3, hosts=hosts, rate=rate)
    return path


def live(path, out, *, receivers=None, outbox=None, checkpoints=None, name="alerts-live", crash_after=None):
    pipe = wb.Pipeline(wb.FileSource(path, max_rows=2000), name=name, checkpoints=checkpoints, checkpoint_batches=3)
    pipe.standard("server_metrics", wb.Tumbling("5m"), lateness="10s")
    node = pipe.alerts(RULES, routes=[ROUTE], receivers=receivers, outbox=outbox)
    pipe.to_lake(wb.Lake(out), outputs=["windows", "alerts"])
    events = pipe.collect("alerts")
    if crash_after is not None:
        seen = []

        def crash(frame):
            seen.append(frame)
            if len(seen) == crash_after:
                raise RuntimeError("simulated crash")

        pipe.subscribe("windows", crash)
    return pipe, node, events


@pytest.mark.slow
def test_backtest_over_a_simulated_day_reproduces_the_live_alerts_exactly(tmp_path):
    path = simulate(tmp_path, events=HOSTS * 86_400 // 4, rate=HOSTS / 4)  # one day, each host every 4 s
    pipe, node, events = live(path, tmp_path / "lake")
    pipe.run()
    live_events = pl.concat(events)
    assert live_events.height > 10 and set(live_events["rule"]) >= {"cpu_high", "silent"}
    result = backtest(RULES, tmp_path / "lake", routes=[ROUTE], labels=path.with_name("sim.labels.json"))
    assert result.events.equals(live_events)
    assert result.notifications == list(node.manager.notifications)
    overall = result.overall()
    assert overall["incidents"] > 0 and 0 < overall["recall"] <= 1 and 0 < overall["precision"] <= 1
    assert overall["mean_ttd_s"] >= 0
    # a changed rule, side by side: a longer `for` gives fewer or equal episodes
    changed = [r.with_(for_="20m") if r.name == "cpu_high" else r for r in RULES]
    other = backtest(changed, tmp_path / "lake", routes=[ROUTE], name="for20m")
    table = compare(result, other)
    row = dict(table.filter(pl.col("measure") == "cpu_high.episodes").row(0, named=True))
    assert int(row["for20m"]) <= int(row["rules"])


def test_restart_mid_group_sends_no_duplicate_and_loses_nothing(tmp_path):
    path = simulate(tmp_path, events=40_000, rate=HOSTS / 4)
    with hook_server() as hook:
        # reference: one uninterrupted run
        pipe, node, _ = live(
            path,
            tmp_path / "ref",
            receivers={"hook": WebhookNotifier(hook.url)},
            outbox=tmp_path / "ref.jsonl",
            name="alerts-ref",
        )
        sent_before, groups, done, after_batches = [], [], [], []

        def watch(frame):  # at each window batch: notifications sent, open groups, source batches done
            sent_before.append(len(node.manager.notifications))
            groups.append(len(node.manager.dispatcher.groups))
            done.append(pipe.batches)

        pipe.subscribe("windows", watch)
        pipe.subscribe_raw(lambda batch: after_batches.append(len(node.manager.notifications)))
        pipe.run()
        node.manager.outbox.drain(20)
        node.manager.close()
        reference = [m["id"] for m in hook.received]
        hook.received.clear()
        assert len(reference) >= 3

        # crash where a group is open and notifications went out since the last checkpoint (every 3 batches)
        def since_checkpoint(i):
            return sent_before[i] - after_batches[(done[i] // 3) * 3]

        crash_at = next(
            i + 1
            for i in range(len(groups))
            if groups[i] and since_checkpoint(i) > 0 and sent_before[i] < len(reference)
        )
        # a run that crashes part-way (after some checkpoints, with notifications sent since the last one)
        ck = tmp_path / "ck"
        pipe, node, _ = live(
            path,
            tmp_path / "lake",
            receivers={"hook": WebhookNotifier(hook.url)},
            outbox=tmp_path / "outbox.jsonl",
            checkpoints=str(ck),
            name="alerts-crash",
            crash_after=crash_at,
        )
        with pytest.raises(RuntimeError, match="simulated crash"):
            pipe.run()
        node.manager.outbox.drain(20)
        node.manager.close()
        before = len(hook.received)
        assert 0 < before < len(reference)
        assert node.manager.dispatcher.groups  # it stopped mid-group

        # restart from the checkpoint with the same notification log
        pipe, node, _ = live(
            path,
            tmp_path / "lake",
            receivers={"hook": WebhookNotifier(hook.url)},
            outbox=tmp_path / "outbox.jsonl",
            checkpoints=str(ck),
            name="alerts-crash",
        )
        pipe.run()
        node.manager.outbox.drain(20)
        node.manager.close()
        got = [m["id"] for m in hook.received]
    assert sorted(got) == sorted(reference)  # nothing lost, nothing twice
    assert len(got) == len(set(got))
    assert node.manager.outbox.stats()["duplicates"] > 0  # the replayed batches regenerated ids already sent


@pytest.mark.slow
def test_cli_alerts_backtest_and_compare(tmp_path):
    path = simulate(tmp_path, events=20_000, rate=HOSTS / 4)
    pipe, _, _ = live(path, tmp_path / "lake", name="alerts-cli")
    pipe.run()
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {name: cpu_high, kind: threshold, metric: cpu_mean, value: 85, for: 2m}\n"
        "  - {name: silent, kind: absence, after: 3m}\n"
    )
    other = tmp_path / "other.yaml"
    other.write_text("rules:\n  - {name: cpu_high, kind: threshold, metric: cpu_mean, value: 50}\n")
    frm, to = T0.isoformat(), (T0 + timedelta(days=2)).isoformat()
    out = cli(
        "alerts",
        "backtest",
        rules,
        "--compare",
        other,
        "--lake",
        tmp_path / "lake",
        "--from",
        frm,
        "--to",
        to,
        "--labels",
        path.with_name("sim.labels.json"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["rules"]["overall"]["windows"] > 0
    assert report["other"]["overall"]["episodes"] >= report["rules"]["summary"][0]["episodes"]
    assert any(r["measure"] == "cpu_high.episodes" for r in report["compare"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: x, kind: threshold, metric: cpu_mean, value: 1, for: soon}\n")
    out = cli("alerts", "backtest", bad, "--lake", tmp_path / "lake")
    assert out.returncode == 2 and "rule 'x': field 'for'" in out.stderr
    out = cli("alerts", "check", rules)
    assert out.returncode == 0 and "2 rules" in out.stdout


def test_model_nodes_with_on_feedback_are_offered_the_labels(tmp_path):
    from workbench.operators.nodes import Operator
    from workbench.testing import FrameSource, server_metrics_frame

    class Model(Operator):
        def __init__(self, upstream):
            super().__init__(upstream, name="model")
            self.labels = []

        def on_feedback(self, alert, label):
            self.labels.append((alert["fingerprint"], label))

    pipe = wb.Pipeline(FrameSource([server_metrics_frame(600, hosts=2)]), name="alerts-feedback")
    windows = pipe.standard("server_metrics", wb.Tumbling("10s"), lateness="0s")
    model = Model(windows)
    pipe.output("scored", model)
    node = pipe.alerts([Threshold("any", metric="count", value=0)], upstream="scored")
    pipe.run()
    node.manager.mark("any/h0", "true_positive", by="ana")
    assert model.labels == [("any/h0", "true_positive")]


def test_drift_side_streams_of_model_nodes_feed_drift_rules():
    from streamz import Stream

    from workbench.alerts.rules import Drift
    from workbench.operators.nodes import Operator
    from workbench.testing import FrameSource, server_metrics_frame

    class Scorer(Operator):  # shaped like the models' score node: window rows through, drift on a side stream
        def __init__(self, upstream):
            super().__init__(upstream, name="score")
            self.drift = Stream(stream_name="score.drift")

        def process(self, x, metadata):
            first = x.sort("window_end").head(1)
            self.drift.emit(
                first.select("host", pl.lit("cpu_mean").alias("feature"), pl.col("window_end").alias("time"))
            )
            return x, metadata

    pipe = wb.Pipeline(FrameSource([server_metrics_frame(600, hosts=2)]), name="alerts-drift")
    windows = pipe.standard("server_metrics", wb.Tumbling("10s"), lateness="0s")
    pipe.output("scored", Scorer(windows))
    node = pipe.alerts([Drift("drift", feature="cpu_mean")], upstream="scored")
    events = pipe.collect("alerts")
    pipe.run()
    assert pl.concat(events)["fingerprint"].unique().to_list() == ["drift/h0"]
    assert node.manager.open_alerts() == 1


def test_replacing_the_pipeline_stops_its_outbox_threads(tmp_path):
    import threading

    from workbench.alerts.notifiers import JsonlNotifier
    from workbench.testing import FrameSource

    def build():
        pipe = wb.Pipeline(FrameSource([]), name="alerts-replaced")
        pipe.standard("server_metrics", wb.Tumbling("10s"))
        pipe.alerts(RULES, receivers={"log": JsonlNotifier(tmp_path / "a.jsonl")}, outbox=tmp_path / "o.jsonl")
        return pipe

    pipe = build()
    pipe = build()  # re-running the notebook cell replaces the first pipeline
    alive = [t for t in threading.enumerate() if t.name == "wb-outbox-log"]
    assert len(alive) == 1
    pipe.close()
    assert not [t for t in threading.enumerate() if t.name == "wb-outbox-log"]
