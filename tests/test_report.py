"""The daily report notebook, run with parameters on a small simulated lake, rendered to offline HTML without code."""

from __future__ import annotations

import html as htmllib
import re
from pathlib import Path

import pytest
from alert_servers import hook_server

from workbench.cli import main
from workbench.reports.offline import network_references, unpack_scripts

from browser import ARTIFACTS, launch

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "reports" / "daily-report.ipynb"
RANGE = ["-p", "start", "2024-01-01T00:00:00+00:00", "-p", "end", "2024-01-02T00:00:00+00:00"]


def _visible(page: str) -> str:
    """The page's text outside scripts, styles and the frozen views' iframes."""
    page = re.sub(r'srcdoc="[^"]*"', "", page)
    page = re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S)
    return re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", page)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report run once, as a user would: simulate a lake, then render the report of a day."""
    tmp = tmp_path_factory.mktemp("report")
    args = [
        "-p",
        "source",
        "simulate",
        "-p",
        "lake_path",
        str(tmp / "lake"),
        "-p",
        "events",
        "6000",
        "-p",
        "hosts",
        "8",
    ]
    code = main(["report", str(NOTEBOOK), *args, *RANGE, "--out", str(tmp / "out" / "daily.html")])
    assert code == 0
    return tmp


@pytest.mark.slow
def test_report_html_is_offline_without_code_with_tables_and_plots(report):
    page = (report / "out" / "daily.html").read_text()
    assert network_references(page) == []
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?:", page)
    text = _visible(page)
    # no code cells, no prompts, no tracebacks, no stderr
    for code in ("import ", "DailyReport(", "simulate_lake(", "display(", "In&nbsp;[", "In ["):
        assert code not in text, code
    # the markup outside styles, scripts and the frozen views (their CSS names tracebacks and prompts)
    body = re.sub(r"<(script|style)\b.*?</\1>", "", re.sub(r'srcdoc="[^"]*"', "", page), flags=re.S)
    assert "Traceback" not in body and 'data-mime-type="application/vnd.jupyter.stderr"' not in body
    assert "hl-ipython3" not in body and 'class="jp-InputPrompt' not in body  # no highlighted code, no In [n]
    assert body.count('class="jp-Cell jp-CodeCell') == 9  # the code cells ran, only their outputs are shown
    # the tables: summary, incidents (the simulator's labels), detector quality, worst hosts
    assert "8 hosts" in text and "dead letters" in text
    assert re.search(r"inc-000-0 \w+ \S+ 2024-01-01 00:0", text), "the incidents table"
    assert "fleet |z| ≥ 3.5" in text and "precision" in text and "recall" in text
    assert "No alerts recorded in this lake" in text  # no alerts output: said, not failed
    assert body.count('<table class="dataframe wb-table">') == 4
    # the frozen views: two self-contained pages, data embedded
    frames = [
        unpack_scripts(htmllib.unescape(f))
        for f in re.findall(r'<iframe class="wb-frozen-view"[^>]*srcdoc="([^"]*)"', page)
    ]
    assert len(frames) == 2
    for frame in frames:
        assert network_references(frame) == [] and "Bokeh" in frame
    assert "window_start" in frames[0] and "HoverTool" in frames[0]
    assert (report / "out" / "daily.html").exists() and not (report / "out" / "daily.ipynb").exists()


@pytest.mark.slow
@pytest.mark.ui
def test_report_views_render_offline(report):
    from playwright.sync_api import sync_playwright

    asked: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_offline(True)

        def route(r):
            if r.request.url.startswith(("file:", "data:", "about:", "blob:")):
                r.continue_()
            else:
                asked.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.goto((report / "out" / "daily.html").as_uri())
        painted = []
        for frame in page.frames[1:]:
            frame.wait_for_function("() => window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].is_idle")
        page.wait_for_timeout(500)
        for frame in page.frames[1:]:
            painted += [
                c.evaluate(
                    """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                       for (let i = 0; i < d.length; i += 16) if (d[i+3] > 0 && d[i] + d[i+1] + d[i+2] < 720) n++;
                       return n; }"""
                )
                for c in frame.locator("canvas").all()
            ]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-daily.png"), full_page=True)
        browser.close()
    assert asked == []
    assert len(page.frames) == 3 and sum(1 for n in painted if n > 500) >= 2, painted


@pytest.mark.slow
def test_a_failing_cell_exits_non_zero_names_the_error_and_notifies(report, capsys):
    out = report / "out" / "broken.html"
    with hook_server() as hook:
        code = main(
            [
                "report",
                str(NOTEBOOK),
                *["-p", "lake_path", str(report / "lake"), "-p", "metric", "no_such_metric"],
                "--out",
                str(out),
                "--notify-on-failure",
                hook.url,
            ]
        )
    err = capsys.readouterr().err
    assert code == 1
    assert "daily-report.ipynb: cell 7 raised ConfigError: report: no metric 'no_such_metric' in the windows" in err
    assert not out.exists() and (report / "out" / "broken.failed.ipynb").exists()
    [message] = hook.received
    assert message["status"] == "failed" and message["job"] == "daily-report"
    assert "cell 7 raised ConfigError" in message["error"] and message["parameters"]["metric"] == "no_such_metric"


def test_secret_looking_parameters_are_refused_before_running(tmp_path, capsys):
    for name in ("db_password", "API_TOKEN", "signing_secret", "aws_access_key"):
        code = main(["report", str(NOTEBOOK), "-p", name, "x", "--out", str(tmp_path / "r.html")])
        assert code == 2
        err = capsys.readouterr().err
        assert f"report parameter {name!r} looks like a secret" in err and "environment" in err
    assert not any(tmp_path.iterdir())


def test_unknown_parameters_are_refused_before_running(tmp_path, capsys):
    assert main(["report", str(NOTEBOOK), "-p", "lake", "x", "--out", str(tmp_path / "r.html")]) == 2
    assert (
        "unknown parameter(s) ['lake']; its parameters: ['end', 'events', 'hosts', 'lake_path'"
        in capsys.readouterr().err
    )


def _lake(tmp_path, *, alerts: bool):
    from datetime import UTC, datetime, timedelta

    import polars as pl

    from workbench import Lake

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        {
            "host": f"h{h}",
            "window_start": t0 + timedelta(minutes=w),
            "window_end": t0 + timedelta(minutes=w + 1),
            "count": 60,
            "cpu_mean": 99.0 if (h, w) == (3, 2) else 20.0 + h + 0.1 * w,
            "error_rate": 0.01,
        }
        for h in range(6)
        for w in range(4)
    ]
    lake = Lake(tmp_path / "lake", partition=False)
    lake.write("windows", pl.DataFrame(rows), epoch=1)
    labels = pl.DataFrame(
        {
            "incident_id": ["i1", "i2"],
            "kind": ["cpu_saturation", "memory_leak"],
            "entity": ["h3", "h5"],
            "start": [t0 + timedelta(minutes=2, seconds=10), t0 + timedelta(hours=5)],
            "end": [t0 + timedelta(minutes=2, seconds=50), t0 + timedelta(hours=6)],
            "detail": ["cpu 95-100%", "outside the range"],
        }
    )
    lake.write("labels", labels, epoch=1, time="start")
    if alerts:
        # the alert evaluator's output: one row per transition (fired at 00:02, resolved at 00:03, and again days later)
        at = [t0 + timedelta(minutes=2), t0 + timedelta(minutes=3), t0 + timedelta(days=3)]
        lake.write(
            "alerts",
            pl.DataFrame(
                {
                    "rule": ["cpu_high"] * 3,
                    "entity": ["h3"] * 3,
                    "from_state": ["pending", "firing", "pending"],
                    "to_state": ["firing", "inactive", "firing"],
                    "at": at,
                    "severity": ["page"] * 3,
                }
            ),
            epoch=1,
            time="at",
        )
    return lake.root


def test_daily_report_numbers_on_a_hand_made_lake(tmp_path):
    from datetime import UTC, datetime

    from workbench.reports.daily import DailyReport

    report = DailyReport(_lake(tmp_path, alerts=True), start="2024-01-01T00:00:00+00:00", end="2024-01-02T00:00:00Z")
    assert report.summary().row(0, named=True) | {"error_rate": None} == {
        "windows": 24,
        "hosts": 6,
        "events": 1440,
        "error_rate": None,
        "latency_p95_ms": None,
        "dead_letters": 0,
        "late": 0,
    }
    incidents = report.incidents()
    assert incidents["incident_id"].to_list() == ["i1"] and incidents["host_windows"].to_list() == [1]
    quality = report.detector_quality().row(1, named=True)  # fleet |z| >= 3.5
    assert (quality["flagged"], quality["true_positives"], quality["precision"], quality["recall"]) == (1, 1, 1.0, 1.0)
    assert quality["incidents_caught"] == "1 of 1"
    # fired once and resolved in the range; the firing three days later is out of it
    assert report.alerts().rows() == [("cpu_high", "page", "h3", 1, 1, datetime(2024, 1, 1, 0, 2, tzinfo=UTC))]
    assert report.worst_hosts("cpu_mean", 1)["host"].to_list() == ["h3"]


def test_daily_report_says_what_is_absent(tmp_path):
    from workbench.errors import ConfigError
    from workbench.reports.daily import DailyReport

    report = DailyReport(_lake(tmp_path, alerts=False))
    assert report.alerts() is None
    with pytest.raises(ConfigError, match="no windows in .* between 2025-01-01"):
        DailyReport(tmp_path / "lake", start="2025-01-01T00:00:00+00:00")
    with pytest.raises(ConfigError, match="start must be before end"):
        DailyReport(tmp_path / "lake", start="2024-01-02T00:00:00+00:00", end="2024-01-01T00:00:00+00:00")
