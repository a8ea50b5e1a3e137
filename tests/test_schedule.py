"""The scheduler on an injected clock: cron times, no overlap, one catch-up after downtime, history, notices."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest
import yaml
from alert_servers import hook_server
from nbformat.v4 import new_code_cell, new_notebook

from workbench.cli import main
from workbench.clock import ManualClock
from workbench.errors import ConfigError
from workbench.schedule import Job, Notify, RunHistory, Scheduler, load_schedule

T0 = datetime(2024, 1, 1, 5, 0, tzinfo=UTC)


@pytest.fixture
def notebook(tmp_path):
    path = tmp_path / "nb.ipynb"
    cells = [new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell("y = 1 / (x - 1)")]
    nbformat.write(
        new_notebook(
            cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "py", "language": "python"}}
        ),
        path,
    )
    return path


def job(tmp_path, notebook, **over):
    spec = {"name": "j", "notebook": notebook, "cron": "0 * * * *", "output": tmp_path / "out"}
    return Job(**{**spec, **over})


class Recorder:
    """A runner that records what it was asked to run and when (optionally blocking until released)."""

    def __init__(self, clock, *, block=False, fail=None):
        self.clock, self.calls, self.fail = clock, [], fail
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, job, scheduled, previous):
        self.calls.append({"scheduled": scheduled, "previous": previous, "at": self.clock.now()})
        self.release.wait(10)
        if self.fail:
            raise self.fail
        return f"{job.output_for(scheduled)}"


def test_schedule_file(tmp_path, notebook, monkeypatch):
    text = f"""
jobs:
  - name: daily
    notebook: {notebook.name}
    cron: "30 6 * * 1-5"
    timezone: Europe/Paris
    parameters: {{start: "{{previous}}", end: "{{scheduled}}", lake_path: data/lake, events: 1000}}
    output: reports
    notify_on_failure: {{url_env: WB_TEST_HOOK, secret_env: WB_TEST_SECRET}}
"""
    (tmp_path / "s.yml").write_text(text)
    schedule = load_schedule(tmp_path / "s.yml")
    daily = schedule.job("daily")
    assert schedule.history == tmp_path / "s.runs.duckdb"
    assert daily.output == tmp_path / "reports" and daily.notebook == notebook
    at = datetime(2024, 1, 8, 5, 30, tzinfo=UTC)  # 06:30 in Paris, a Monday
    assert daily.parameters_for(at, at - timedelta(days=3)) == {
        "start": "2024-01-05T05:30:00+00:00",
        "end": "2024-01-08T05:30:00+00:00",
        "lake_path": "data/lake",
        "events": 1000,
    }
    assert daily.next_fire(datetime(2024, 1, 5, 6, tzinfo=UTC)) == at  # Friday after 06:30 → Monday
    monkeypatch.setenv("WB_TEST_HOOK", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("WB_TEST_SECRET", "s3")
    assert (daily.notify.target(), daily.notify.secret()) == ("http://127.0.0.1:9/hook", "s3")

    base = {"name": "d", "notebook": notebook.name, "cron": "0 6 * * *", "output": "r"}
    bad = [
        ({"cron": "61 * * * *"}, r"cron must be a 5-field cron expression, not '61 \* \* \* \*'"),
        ({"timezone": "Mars/Olympus"}, "timezone must be an IANA name"),
        ({"parameters": {"api_token": "x"}}, "'api_token' looks like a secret"),
        ({"retries": 3}, r"unknown key\(s\) \['retries'\]"),
        ({"notify_on_failure": {"url": "http://x", "secret": "s"}}, "secrets come from the environment"),
        ({"notebook": "missing.ipynb"}, "no notebook at"),
    ]
    for over, message in bad:
        (tmp_path / "bad.yml").write_text(yaml.safe_dump({"jobs": [{**base, **over}]}))
        with pytest.raises(ConfigError, match=message):
            load_schedule(tmp_path / "bad.yml")


def test_fires_at_the_cron_times_in_the_job_time_zone(tmp_path, notebook):
    clock = ManualClock(datetime(2024, 3, 29, 12, tzinfo=UTC))
    paris = job(tmp_path, notebook, cron="30 6 * * *", timezone="Europe/Paris")
    runner = Recorder(clock)
    s = Scheduler([paris], RunHistory(tmp_path / "runs.duckdb"), clock=clock, runner=runner)
    assert s.tick() == []
    for _ in range(3):  # jump to each next fire time, as run() does by sleeping on the clock
        clock.advance((s.next_fire() - clock.now()).total_seconds())
        s.tick()
        s.wait(10)
    s.close()
    # 06:30 in Paris: 05:30 UTC in winter time, 04:30 UTC from Sunday 31 March (summer time)
    assert [c["scheduled"].isoformat() for c in runner.calls] == [
        "2024-03-30T05:30:00+00:00",
        "2024-03-31T04:30:00+00:00",
        "2024-04-01T04:30:00+00:00",
    ]
    assert [c["previous"] for c in runner.calls][1:] == [c["scheduled"] for c in runner.calls][:-1]
    runs = s.history.runs().sort("scheduled")
    assert runs["status"].to_list() == ["ok"] * 3 and runs["coalesced"].to_list() == [1, 1, 1]
    assert runs["started"].to_list() == [c["scheduled"] for c in runner.calls]  # started on time, not late


def test_run_sleeps_on_the_clock_until_the_next_fire_time(tmp_path, notebook):
    clock = ManualClock(T0 + timedelta(minutes=20))
    runner = Recorder(clock)
    s = Scheduler([job(tmp_path, notebook)], RunHistory(tmp_path / "r.duckdb"), clock=clock, runner=runner)
    s.run(max_ticks=2, max_sleep=7200)
    s.wait(10)
    s.close()
    assert [c["scheduled"] for c in runner.calls] == [T0 + timedelta(hours=1)]
    assert s.history.runs()["started"].to_list() == [T0 + timedelta(hours=1)]


def test_a_run_still_going_at_the_next_fire_time_is_skipped_and_recorded(tmp_path, notebook):
    clock = ManualClock(T0 + timedelta(seconds=30))
    runner = Recorder(clock, block=True)
    s = Scheduler(
        [job(tmp_path, notebook, cron="* * * * *")], RunHistory(tmp_path / "r.duckdb"), clock=clock, runner=runner
    )
    assert s.tick() == []
    clock.advance(30)
    assert [e["event"] for e in s.tick()] == ["started"]
    clock.advance(60)
    assert [e["event"] for e in s.tick()] == ["skipped"]
    assert s.running == ["j"]
    runner.release.set()
    s.wait(10)
    clock.advance(60)
    assert [e["event"] for e in s.tick()] == ["started"]
    s.wait(10)
    s.close()
    assert len(runner.calls) == 2
    runs = s.history.runs().sort("scheduled")
    assert runs["status"].to_list() == ["ok", "skipped", "ok"]
    skipped = runs.row(1, named=True)
    assert skipped["scheduled"] == T0 + timedelta(minutes=2)
    assert skipped["error"] == f"previous run (scheduled {(T0 + timedelta(minutes=1)).isoformat()}) still running"


def test_missed_fire_times_after_downtime_run_once(tmp_path, notebook):
    history = RunHistory(tmp_path / "r.duckdb")
    clock = ManualClock(T0 + timedelta(minutes=59))
    hourly = job(tmp_path, notebook)
    first = Scheduler([hourly], history, clock=clock, runner=Recorder(clock))
    assert first.tick() == []
    clock.advance(60)
    assert [e["event"] for e in first.tick()] == ["started"]
    first.close()  # the scheduler goes down after the 06:00 run …
    clock.advance(5.5 * 3600)  # … and comes back at 11:30: 07:00 … 11:00 were missed
    runner = Recorder(clock)
    second = Scheduler([hourly], history, clock=clock, runner=runner)
    events = second.tick()
    second.wait(10)
    assert [(e["event"], e["scheduled"].hour, e["coalesced"]) for e in events] == [("started", 11, 5)]
    assert second.tick() == [] and second.next_fire() == T0 + timedelta(hours=7)
    assert runner.calls[0]["previous"] == T0 + timedelta(hours=1)  # the report covers the whole gap
    clock.advance(1800)
    assert [e["scheduled"].hour for e in second.tick()] == [12]
    second.close()
    assert history.runs()["coalesced"].to_list() == [1, 5, 1]


def test_a_job_without_history_starts_at_its_next_fire_time(tmp_path, notebook):
    clock = ManualClock(T0 + timedelta(minutes=10))
    s = Scheduler([job(tmp_path, notebook)], RunHistory(tmp_path / "r.duckdb"), clock=clock, runner=Recorder(clock))
    assert s.tick() == [] and s.next_fire() == T0 + timedelta(hours=1)
    s.close()


def test_runs_left_running_by_a_dead_scheduler_are_marked_interrupted(tmp_path, notebook):
    history = RunHistory(tmp_path / "r.duckdb")
    history.start("j", scheduled=T0, started=T0)
    clock = ManualClock(T0 + timedelta(minutes=5))
    Scheduler([job(tmp_path, notebook)], history, clock=clock, runner=Recorder(clock)).tick()
    row = history.runs().row(0, named=True)
    assert row["status"] == "interrupted" and row["ended"] == clock.now()


@pytest.mark.slow
def test_a_failed_scheduled_report_notifies_the_webhook(tmp_path, notebook):
    clock = ManualClock(T0 - timedelta(seconds=1))
    with hook_server() as hook:
        failing = job(tmp_path, notebook, notify=Notify(url=hook.url), parameters={"x": 1})
        s = Scheduler([failing], RunHistory(tmp_path / "r.duckdb"), clock=clock)  # the real runner: papermill
        assert s.tick() == []
        clock.advance(1)
        s.tick()
        s.wait(120)
        s.close()
    row = s.history.runs().row(0, named=True)
    assert row["status"] == "failed"
    assert row["error"] == "nb.ipynb: cell 2 raised ZeroDivisionError: division by zero"
    assert row["output"].endswith("j-20240101T050000Z.failed.ipynb")
    [message] = hook.received
    assert message["job"] == "j" and message["status"] == "failed" and message["scheduled"] == T0.isoformat()
    assert message["error"] == row["error"] and message["parameters"] == {"x": 1}
    assert hook.headers[0]["Idempotency-Key"] == message["id"]


def test_an_undeliverable_failure_notice_is_added_to_the_run_error(tmp_path, notebook):
    from workbench.alerts.notifiers import WebhookNotifier

    clock = ManualClock(T0 - timedelta(seconds=1))
    s = Scheduler(
        [job(tmp_path, notebook)],
        RunHistory(tmp_path / "r.duckdb"),
        clock=clock,
        runner=Recorder(clock, fail=RuntimeError("lake missing")),
        notifier=lambda _job: WebhookNotifier("http://127.0.0.1:9/hook", retries=0),
    )
    assert s.tick() == []
    clock.advance(1)
    s.tick()
    s.wait(10)
    s.close()
    error = s.history.runs()["error"][0]
    assert error.startswith("RuntimeError: lake missing (failure notification failed: NotifyError: webhook")


def test_schedule_list_shows_the_history(tmp_path, notebook, capsys):
    (tmp_path / "s.yml").write_text(
        f"jobs:\n  - {{name: j, notebook: {notebook.name}, cron: '0 * * * *', output: o}}\n"
    )
    history = RunHistory(load_schedule(tmp_path / "s.yml").history)
    run = history.start("j", scheduled=T0, started=T0 + timedelta(seconds=1))
    history.finish(run, ended=T0 + timedelta(seconds=9), status="failed", error="cell 2 raised KeyError: 'x'")
    history.skip(
        "j", scheduled=T0 + timedelta(hours=1), at=T0 + timedelta(hours=1), reason="previous run still running"
    )
    assert main(["schedule", "list", str(tmp_path / "s.yml"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["status"], r["seconds"]) for r in rows] == [("skipped", 0.0), ("failed", 8.0)]
    assert main(["schedule", "list", str(tmp_path / "s.yml")]) == 0
    table = capsys.readouterr().out
    assert "cell 2 raised KeyError: 'x'" in table and "2024-01-01 05:00:00" in table


def test_run_history_view(tmp_path):
    from workbench.views import RunHistoryView

    history = RunHistory(tmp_path / "r.duckdb")
    for i, status in enumerate(["ok", "failed", "ok"]):
        run = history.start(f"job{i % 2}", scheduled=T0 + timedelta(hours=i), started=T0 + timedelta(hours=i))
        history.finish(run, ended=T0 + timedelta(hours=i, minutes=1), status=status)
    view = RunHistoryView(history)
    view.refresh()
    assert list(view.param["job"].objects) == ["", "job0", "job1"]
    assert view.table.value["status"].tolist() == ["ok", "failed", "ok"]
    view.job = "job1"
    assert view.table.value["job"].tolist() == ["job1"] and "<b" in view.counts.object


@pytest.mark.slow
def test_schedule_run_now_runs_a_job_end_to_end(tmp_path, notebook, capsys):
    good = tmp_path / "good.ipynb"
    cells = [new_code_cell("n = 1", metadata={"tags": ["parameters"]}), new_code_cell("print(f'{n} runs')")]
    meta = {"kernelspec": {"name": "python3", "display_name": "py", "language": "python"}}
    nbformat.write(new_notebook(cells=cells, metadata=meta), good)
    (tmp_path / "s.yml").write_text(
        "jobs:\n"
        "  - {name: good, notebook: good.ipynb, cron: '0 6 * * *', output: out, parameters: {n: 3}}\n"
        "  - {name: bad, notebook: nb.ipynb, cron: '0 6 * * *', output: out, parameters: {x: 1}}\n"
    )
    assert main(["schedule", "run", str(tmp_path / "s.yml"), "--now", "good"]) == 0
    [run] = json.loads(capsys.readouterr().out)
    assert run["status"] == "ok" and run["output"].endswith(".html")
    page = Path(run["output"]).read_text()
    assert "3 runs" in page and "print(" not in page
    assert main(["schedule", "run", str(tmp_path / "s.yml"), "--now", "bad"]) == 1
    [run] = json.loads(capsys.readouterr().out)
    assert run["status"] == "failed" and "cell 2 raised ZeroDivisionError" in run["error"]
    assert main(["schedule", "list", str(tmp_path / "s.yml"), "--format", "json"]) == 0
    assert [r["job"] for r in json.loads(capsys.readouterr().out)] == ["bad", "good"]


def test_the_scheduler_and_the_commands_do_not_import_panel():
    import subprocess
    import sys

    code = (
        "import sys, workbench.schedule, workbench.reports.notebook, workbench.reports.frozen, workbench.cli\n"
        "workbench.cli.build_parser()\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('panel', 'bokeh', 'holoviews'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
