"""Prometheus scrapes: the text format parser, a real scrape of Debian's node exporter on
127.0.0.1:9100, and ``workbench serve --source prometheus://…`` rendering a node CPU series."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import polars as pl
import pytest

from workbench import Pipeline, SourceError, Tumbling
from workbench.sources import from_url
from workbench.sources.prometheus import PrometheusSource, parse_exposition

from browser import ARTIFACTS, PLOT_STATE, launch, until

NODE = "prometheus://127.0.0.1:9100/metrics"


def test_parse_exposition_reads_values_labels_timestamps_and_types():
    text = (
        b"# HELP x_total things\n# TYPE x_total counter\n"
        b'x_total{a="1",b="two words"} 3\n'
        b"g NaN\n"
        b"h +Inf\n"
        b"k -1.5e-3 1700000000123\n"
        b"\n"
        b"broken line without value\n"
    )
    f = parse_exposition(text, instance="i:1", ts_ms=1_700_000_000_000)
    assert f["metric"].to_list() == ["x_total", "g", "h", "k"]
    assert f["series"][0] == 'x_total{a="1",b="two words"}'
    v = f["value"].to_list()
    assert v[0] == 3.0 and v[1] != v[1] and v[2] == float("inf") and v[3] == -0.0015
    assert f["ts"].to_list() == [1_700_000_000_000] * 3 + [1_700_000_000_123]
    assert f["counter"].to_list() == [True, False, False, False]
    assert f["event_id"].n_unique() == 4
    assert parse_exposition(text, instance="i:1", ts_ms=0, match="x_.*|k")["metric"].to_list() == ["x_total", "k"]


def test_refused_scrape_is_one_clear_error():
    port = _free_port()
    with pytest.raises(SourceError, match=rf"127\.0\.0\.1:{port}/metrics.*cannot connect.*refused"):
        list(from_url(f"prometheus://127.0.0.1:{port}/metrics").batches())


@pytest.mark.services
def test_node_exporter_scrape_gives_cpu_rates_and_memory_per_window():
    src = from_url(NODE, interval=0.3, match="node_cpu_seconds_total|node_memory_MemAvailable_bytes")
    assert isinstance(src, PrometheusSource)
    pipe = Pipeline(src, name="prom-node", checkpoint_batches=1)
    pipe.standard("prom_samples", Tumbling("1s"), lateness="0s")
    got = pipe.collect("windows")
    pipe.start()
    until(lambda: sum(f.height for f in got) >= 20, 20)
    health = pipe.health()
    pipe.stop()
    windows = pl.concat(got)
    cpu = windows.filter(pl.col("series").str.starts_with("node_cpu_seconds_total{"))
    rates = cpu["rate_mean"].drop_nulls()
    assert rates.len() > 0 and rates.min() >= 0 and rates.max() < 2  # CPU seconds per second, per CPU and mode
    mem = windows.filter(pl.col("series") == "node_memory_MemAvailable_bytes")["value_mean"]
    assert mem.len() > 0 and mem.min() > 0
    assert health["source"]["connected"] and health["source"]["last_message_age_s"] < 5
    assert pipe.counts()["dead_lettered"] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served_node_monitor():
    port = _free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "serve-prometheus.log", "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--source", NODE],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "WORKBENCH_WINDOW": "2s", "WORKBENCH_LATENESS": "1s", "WORKBENCH_INTERVAL": "0.5"},
    )
    url = f"http://localhost:{port}/monitor"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=30):
                break
        except OSError:
            time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)
    log.close()


@pytest.mark.ui
@pytest.mark.slow
@pytest.mark.services
def test_served_app_on_the_node_exporter_draws_a_node_cpu_series(served_node_monitor):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(served_node_monitor)

        def cpu_lines() -> list[str]:
            # one metric name at a time: the chart shows node_cpu_seconds_total's series by their labels
            legends = page.evaluate(PLOT_STATE)["legends"]
            return [x for legend in legends for x in legend if x and re.fullmatch(r'cpu="\d+",mode="\w+"', x)]

        lines = until(cpu_lines, 60, pause=lambda: page.wait_for_timeout(500))
        assert lines, page.evaluate(PLOT_STATE)
        points = until(lambda: page.evaluate(PLOT_STATE)["band_points"] >= 3, 30, lambda: page.wait_for_timeout(500))
        assert points
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "monitor-node-exporter.png"), full_page=True)
        browser.close()
