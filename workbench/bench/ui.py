"""``workbench bench ui``: event-to-screen latency of the served monitor in a real browser.

The monitor is served with its live simulator at ``rate`` events/s (1 s windows, no
allowed lateness, source batches every 0.1 s). Event time at the simulator is the
wall clock at which an event is due, so a window's end is the source stamp of the
freshest events it holds. In each browser session a script watches the time
series' data and notes the wall clock at the first animation frame in which a new
window is in the page; latency = that moment − the window's end.

The baseline, measured in the same run, is the server side alone: window end →
window row at the shared feed (what no browser can beat). Server CPU and RSS are
measured with no session open, then with ``sessions`` sessions, and reported per
session. Needs Playwright and Debian's chromium (``make test`` installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import numpy as np

from workbench.errors import ConfigError

__all__ = ["bench_ui"]

# Runs in the page: record (window_start, wall ms) at the first frame each new window is in the series.
_OBSERVER = """
window.__wb = {seen: new Set(), samples: [], cds: null};
(function tick() {
  try {
    const wb = window.__wb;
    if (!wb.cds || !wb.cds.document) {
      wb.cds = null;
      for (const doc of (window.Bokeh && window.Bokeh.documents) || []) for (const m of doc.all_models) {
        if (m.constructor.__name__ !== 'ColumnDataSource') continue;
        const d = m.data, get = k => (d instanceof Map ? d.get(k) : d[k]);
        if (get('median') !== undefined && get('window_start') !== undefined) wb.cds = m;
      }
    }
    if (wb.cds) {
      const d = wb.cds.data, ws = d instanceof Map ? d.get('window_start') : d.window_start;
      const now = Date.now();
      for (let i = (ws ? ws.length : 0) - 1; i >= 0; i--) {  // every window new in this frame
        const start = Number(ws[i]);
        if (wb.seen.has(start)) break;
        wb.seen.add(start); wb.samples.push([start, now]);
      }
    }
  } catch (e) {}
  requestAnimationFrame(tick);
})();
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(base: str, since: float = 0.0) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{base}/workbench/health?since={since}", timeout=30) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        return dict(json.loads(e.read()))


def _usage(base: str, seconds: float) -> dict[str, float]:
    """Server CPU (% of one core) and RSS over ``seconds``, plus the ingest rate."""
    h0, t0 = _health(base), time.monotonic()
    time.sleep(seconds)
    h1, t1 = _health(base), time.monotonic()
    dt = t1 - t0
    return {
        "cpu_pct": 100 * (h1["process"]["cpu_s"] - h0["process"]["cpu_s"]) / dt,
        "rss_mb": h1["process"]["rss_mb"],
        "events_per_s": (h1["counts"]["ingested"] - h0["counts"]["ingested"]) / dt,
    }


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bench_ui(
    *,
    rate: float = 100_000,
    seconds: float = 60,
    sessions: int = 3,
    hosts: int = 120,
    refresh_hz: float = 4.0,
    browser: str | None = None,
) -> dict[str, Any]:
    """Serve the monitor at ``rate`` events/s and measure event-to-screen latency in ``sessions`` pages."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # a dev dependency
        raise ConfigError("bench ui: Playwright is not installed (it comes with the dev dependencies)") from exc
    chromium = browser or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        raise ConfigError(f"bench ui: no chromium at {chromium!r} (apt-get install chromium)")
    if sessions < 1:
        raise ConfigError(f"bench ui: sessions must be >= 1, not {sessions}")

    port = _free_port()
    base = f"http://localhost:{port}"
    env = dict(
        os.environ,
        WORKBENCH_RATE=str(rate),
        WORKBENCH_HOSTS=str(hosts),
        WORKBENCH_WINDOW="1s",
        WORKBENCH_LATENESS="0s",
        WORKBENCH_MAX_DELAY="0.1",
        # dedupe's per-batch cost grows with the keys it remembers (docs/BENCHMARKS.md)
        WORKBENCH_DEDUPE_TTL="10s",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if _health(base).get("pipeline", {}).get("batches", 0) > 0:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise ConfigError("bench ui: the server did not start within 90 s")
        time.sleep(5)  # the pipeline reaches its pace
        idle = _usage(base, 10)

        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            pages = []
            for _ in range(sessions):
                page = b.new_context(viewport={"width": 1400, "height": 900}).new_page()
                page.add_init_script(_OBSERVER)
                page.goto(f"{base}/monitor?refresh={refresh_hz:g}")
                pages.append(page)
            for page in pages:
                page.wait_for_function("window.__wb && window.__wb.samples.length > 0", timeout=60_000)
            time.sleep(3)  # the sessions settle
            opened = time.time() * 1000
            busy = _usage(base, seconds)
            server_side = _health(base, since=opened / 1000).get("emit_delay_s")
            latencies: list[float] = []
            for page in pages:
                for start, seen in page.evaluate("window.__wb.samples"):
                    end = start + 1000  # 1 s windows
                    if end > opened:  # only windows that closed while we measured
                        latencies.append((seen - end) / 1000)
            b.close()
        late = _health(base)["counts"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    return {
        "rate_target": rate,
        "events_per_s": round(busy["events_per_s"]),
        "sessions": sessions,
        "refresh_hz": refresh_hz,
        "windows_seen": len(latencies),
        "latency_s": {
            "p50": round(_pct(latencies, 50), 3),
            "p95": round(_pct(latencies, 95), 3),
            "p99": round(_pct(latencies, 99), 3),
            "max": round(max(latencies), 3) if latencies else None,
        },
        "baseline_server_s": server_side,
        "p99_vs_server_p99": (
            round(_pct(latencies, 99) / server_side["p99"], 2) if server_side and server_side["p99"] > 0 else None
        ),
        "server_cpu_pct": {"idle": round(idle["cpu_pct"], 1), "with_sessions": round(busy["cpu_pct"], 1)},
        "cpu_pct_per_session": round((busy["cpu_pct"] - idle["cpu_pct"]) / sessions, 1),
        "server_rss_mb": {"idle": idle["rss_mb"], "with_sessions": busy["rss_mb"]},
        "rss_mb_per_session": round((busy["rss_mb"] - idle["rss_mb"]) / sessions, 1),
        "late_share": round(late["late"] / max(late["ingested"], 1), 4),
        "p99_ok": bool(latencies) and _pct(latencies, 99) <= 1.0,
    }
