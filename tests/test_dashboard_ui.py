"""The served dashboard as an SRE uses it, in Debian's chromium: time range, drill-down, silence, acknowledge.

One ``workbench serve`` with a rules file whose rule goes pending on every host at once
and fires 150 s later, notifying a real webhook receiver on loopback; the alert store is a
DuckDB file, read after the server stops.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from urllib.parse import urlparse

import pytest
from alert_servers import free_port, hook_server

from browser import ARTIFACTS, launch, until

pytestmark = [pytest.mark.ui, pytest.mark.slow]

HOSTS = 6
RULES = """
evaluation_interval: 5s
rules:
  - name: busy
    kind: threshold
    metric: cpu_mean
    op: ">"
    value: 0
    for: 150s
    severity: warning
    summary: "{{entity}}: cpu {{value:.0f}}%"
routes:
  - receivers: [hook]
    group_by: [alertname]
    group_wait: 2s
    group_interval: 5s
    repeat_interval: 1h
receivers:
  hook: {{kind: webhook, url: "{url}"}}
"""

# Screen position of a heatmap cell (the one ``back`` cells from the newest), and its entity and time.
CELL = """(back) => {
  let fig = null;
  for (const doc of Bokeh.documents) for (const m of doc.all_models) if (m.name === 'wb-heatmap') fig = m;
  if (fig === null) return null;
  function* walk(v, seen) { if (!v || seen.has(v)) return; seen.add(v); yield v;
    if (typeof v.children === 'function') for (const c of v.children()) yield* walk(c, seen); }
  let view = null; const seen = new Set();
  for (const root of Bokeh.index.roots) for (const v of walk(root, seen)) if (v.model === fig) view = v;
  const get = (d, k) => (d instanceof Map ? d.get(k) : d[k]);
  const data = fig.renderers[0].data_source.data;
  const xs = get(data, 'x'), ys = get(data, 'y'), ts = get(data, 't');
  if (view === null || !xs || xs.length <= back) return null;
  const i = xs.length - 1 - back;
  const box = view.canvas_view.el.getBoundingClientRect();
  return {entity: ys[i], t: Number(ts[i]),
          px: box.left + view.frame.x_scale.compute(xs[i]), py: box.top + view.frame.y_scale.compute(ys[i])};
}"""

# What the page sent for the last heatmap click: [entity, time, clicks] (null before any).
PICKED = """() => {
  for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.name === 'wb-heatmap') for (const tool of m.toolbar.tools)
      if (tool.constructor.__name__ === 'TapTool' && tool.tags.length === 3) return tool.tags.slice(0, 2);
  return null;
}"""

# The series figures' legends, x ranges and marker lines (Spans: the drill-down time).
SERIES_X = """() => {
  const out = [];
  for (const doc of Bokeh.documents) for (const m of doc.all_models) if (m.name === 'wb-series') {
    const panels = [...m.center, ...m.right, ...m.left, ...m.above, ...m.below];
    const legend = panels.filter(r => r.constructor.__name__ === 'Legend')
      .flatMap(l => l.items.map(i => i.label && (i.label.value ?? i.label)));
    const spans = [...m.center, ...m.renderers].filter(r => r.constructor.__name__ === 'Span')
      .map(r => Number(r.location));
    out.push({legend, spans, start: Number(m.x_range.start), end: Number(m.x_range.end)});
  }
  return out;
}"""


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """``workbench serve --rules`` on a free port with a webhook receiver; yields (url, hook, store path)."""
    tmp = tmp_path_factory.mktemp("dashboard")
    with hook_server() as hook:
        rules = tmp / "rules.yaml"
        rules.write_text(RULES.format(url=hook.url))
        port = free_port()
        env = {
            **os.environ,
            "WORKBENCH_HOSTS": str(HOSTS),
            "WORKBENCH_RATE": "120",
            "WORKBENCH_LAKE": str(tmp / "lake"),
            "WORKBENCH_ALERT_STORE": str(tmp / "alerts.duckdb"),
        }
        ARTIFACTS.mkdir(exist_ok=True)
        log = open(ARTIFACTS / "serve-dashboard.log", "wb")  # noqa: SIM115 - closed after the server stops
        cmd = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port), "--rules", str(rules)]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://localhost:{port}/monitor"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=30):
                    return True
            except OSError:
                return False

        assert until(answers, 90), (ARTIFACTS / "serve-dashboard.log").read_text()[-2000:]
        state = {"stopped": False}

        def stop() -> None:
            if not state["stopped"]:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
                log.close()
                state["stopped"] = True

        try:
            yield url, hook, tmp / "alerts.duckdb", stop
        finally:
            stop()


def _wait(page, predicate, timeout: float):
    return until(predicate, timeout, pause=lambda: page.wait_for_timeout(500))


def _range(page) -> str:
    return page.locator(".wb-range strong").first.inner_text()


def _range_seconds(page) -> float:
    """Length of the range the page says it shows (``12:00:05 – 12:05:05 UTC · live``)."""
    a, b = ([int(p) for p in t.split(":")] for t in re.findall(r"\d\d:\d\d:\d\d", _range(page))[:2])
    return ((b[0] - a[0]) * 3600 + (b[1] - a[1]) * 60 + (b[2] - a[2])) % 86_400


def _entity_lines(legend: list[str]) -> list[str]:
    return [x for x in legend if x not in ("fleet p5–p95", "fleet median") and not x.startswith("|fleet z|")]


def _notified(hook) -> set[str]:
    """Fingerprints of every alert the webhook was told about as firing."""
    with hook.lock:
        return {a["fingerprint"] for n in hook.received for a in n["alerts"] if a["status"] == "firing"}


def test_range_drill_down_silence_and_acknowledge(dashboard):
    from playwright.sync_api import sync_playwright

    url, hook, store_path, stop = dashboard
    errors, hosts = [], set()
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1440, "height": 2400}, timezone_id="Asia/Tokyo")
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: hosts.add(urlparse(r.url).hostname) if r.url.startswith("http") else None)
        page.goto(url)
        page.locator(".wb-kpi-card").first.wait_for(timeout=60_000)

        # -- alerts: every host pending; silence one from its row -------------------------------
        page.locator(".bk-tab", has_text="Alerts").click()
        pending = page.locator(".wb-alerts-table .tabulator-row:visible", has_text="busy/")
        if not _wait(page, lambda: pending.count() == HOSTS, 120):
            page.screenshot(path=str(ARTIFACTS / "dashboard-failed.png"))
            pytest.fail(f"{pending.count()} pending alerts shown, not {HOSTS}")
        silenced, acked = (
            pending.nth(i).locator(".tabulator-cell", has_text="busy/").inner_text().strip() for i in (0, 1)
        )
        assert _notified(hook) == set()  # nothing fired yet
        host = silenced.split("/", 1)[1].strip()
        matchers = page.get_by_placeholder('alertname="…", host="…"')
        cell = page.locator(".wb-alerts-table .tabulator-row:visible", has_text=silenced).locator(
            ".tabulator-cell", has_text="busy/"
        )

        def chosen() -> bool:  # a click while the table redraws can be lost: click until the form follows
            cell.click()
            page.wait_for_timeout(1000)
            return matchers.input_value() == f'alertname="busy", host="{host}"'

        if not _wait(page, chosen, 20):
            page.screenshot(path=str(ARTIFACTS / "dashboard-failed.png"))
            pytest.fail(f"choosing {silenced!r} did not fill the silence form: {matchers.input_value()!r}")
        page.locator("select", has=page.locator("option", has_text="4h")).select_option("4h")
        page.get_by_placeholder("why").fill("maintenance")
        page.get_by_placeholder("why").press("Enter")
        page.get_by_role("button", name="Create silence").click()
        silence_row = page.locator(".tabulator-row:visible", has_text="maintenance")
        silence_row.first.wait_for(timeout=15_000)
        assert "local" in silence_row.first.inner_text() and "active" in silence_row.first.inner_text()
        assert _notified(hook) == set(), "the alerts fired before the silence: the rule's `for` is too short here"

        # -- a range: the last 5 minutes, live -----------------------------------------------
        page.locator(".bk-tab", has_text="Latest windows").click()
        page.get_by_role("button", name="5 m", exact=True).click()
        assert _wait(page, lambda: _range_seconds(page) == 300, 15), _range(page)
        assert _range(page).endswith("UTC · live")

        # -- a heatmap cell → that entity's series at that time, its windows ------------------
        assert _wait(page, lambda: page.evaluate(CELL, 2), 60), "the heatmap drew no cells"
        clicked: dict = {}

        def tapped() -> bool:
            # The heatmap redraws as windows close: a cell can move between reading its place and
            # the click. The page then drills into the cell it showed under the pointer (and pauses,
            # so the cells stand still); click until the cell clicked is the cell read.
            cell = page.evaluate(CELL, 2)
            page.mouse.click(cell["px"], cell["py"])
            clicked.update(cell)
            return _wait(page, lambda: page.evaluate(PICKED) == [cell["entity"], cell["t"]], 5)

        assert _wait(page, tapped, 40), (clicked, page.evaluate(PICKED))
        entity, t = clicked["entity"], clicked["t"]

        def drilled():  # the series of that entity alone, with that time marked
            figures = page.evaluate(SERIES_X)
            return next(
                (
                    f
                    for f in figures
                    if _entity_lines(f["legend"]) == [entity] and any(abs(s - t) < 1 for s in f["spans"])
                ),
                None,
            )

        figure = _wait(page, drilled, 20)
        assert figure, (entity, t, page.evaluate(SERIES_X))
        assert figure["start"] <= t <= figure["end"], (t, figure)  # … within the series' (paused) range
        assert figure["end"] - figure["start"] == pytest.approx(300_000, abs=1)  # the range picked
        assert _wait(page, lambda: _range(page).endswith("UTC · paused"), 10), _range(page)
        shown = datetime.fromtimestamp(t / 1000, UTC).strftime("%H:%M:%S")
        head = page.locator("h3", has_text=f"{entity} around").first
        head.wait_for(timeout=15_000)
        assert shown in head.inner_text()
        selected = page.locator(".tabulator-row.tabulator-selected", has_text=entity)
        assert _wait(page, lambda: selected.count() == 1, 15)  # its window at that time, among its windows
        assert datetime.fromtimestamp(t / 1000, UTC).strftime("%H:%M") in selected.first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-overview-drill.png"))

        # -- times in the browser's zone ------------------------------------------------------
        page.get_by_role("button", name="Browser time").click()
        assert _wait(page, lambda: _range(page).endswith("Asia/Tokyo · paused"), 15), _range(page)
        page.get_by_role("button", name="UTC", exact=True).click()

        # -- tabs: latest windows, dead letters -----------------------------------------------
        page.locator(".tabulator-col-title", has_text="cpu_mean [%]").first.wait_for(timeout=30_000)
        page.locator(".bk-tab", has_text="Latest windows").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "dashboard-latest-windows.png"))
        page.locator(".bk-tab", has_text="Dead letters").click()
        try:
            page.locator(".tabulator-row:visible", has_text="event_id").first.wait_for(timeout=30_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "dashboard-failed.png"))
            raise
        page.screenshot(path=str(ARTIFACTS / "dashboard-dead-letters.png"))
        page.locator(".bk-tab", has_text="Alerts").click()

        # -- the rule fires: the others are notified, the silenced one is not, and shows so ------
        assert _wait(page, lambda: len(_notified(hook)) == HOSTS - 1, 180), _notified(hook)
        row = page.locator(".wb-alerts-table .tabulator-row:visible", has_text=silenced)
        assert _wait(page, lambda: "firing" in row.first.inner_text() and "silenced" in row.first.inner_text(), 20)

        # -- acknowledge another, with a note ---------------------------------------------------
        message = page.locator("text=/chosen: /")
        target = page.locator(".wb-alerts-table .tabulator-row:visible", has_text=acked).locator(
            ".tabulator-cell", has_text="busy/"
        )

        def picked() -> bool:
            target.click()
            page.wait_for_timeout(1000)
            return message.count() > 0 and acked in message.first.inner_text()

        assert _wait(page, picked, 20)
        note = page.get_by_placeholder("note (recorded with the action)")
        note.fill("on it, disk cleanup")
        note.press("Enter")
        page.get_by_role("button", name="Acknowledge").click()
        acked_row = page.locator(".wb-alerts-table .tabulator-row:visible", has_text=acked).first
        assert _wait(page, lambda: "on it, disk cleanup" in acked_row.inner_text(), 20), acked_row.inner_text()
        assert "local" in acked_row.inner_text()
        page.wait_for_timeout(6_000)  # another group interval: still no word of the silenced alert
        page.locator("text=Active alerts").first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(1_000)
        page.screenshot(path=str(ARTIFACTS / "dashboard-alerts.png"))
        context.close()
        browser.close()
    assert silenced not in _notified(hook)
    assert acked in _notified(hook)
    assert not errors, errors
    assert hosts <= {"localhost", "127.0.0.1"}, hosts

    # -- recorded on the server, with the user and the note -------------------------------------
    stop()
    from workbench.alerts.store import DuckDBStore

    store = DuckDBStore(store_path)
    try:
        feedback = store.feedback(fingerprint=acked).select("label", "by_whom", "note").rows()
        silences = store.silences().select("matchers", "created_by", "comment", "starts_at", "ends_at").rows()
    finally:
        store.close()
    assert feedback == [("acknowledged", "local", "on it, disk cleanup")]
    assert len(silences) == 1
    matchers_text, by, comment, starts, ends = silences[0]
    assert (matchers_text, by, comment) == (f'alertname="busy", host="{host}"', "local", "maintenance")
    assert (ends - starts).total_seconds() == 4 * 3600
